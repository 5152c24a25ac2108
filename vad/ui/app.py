"""The review page's ASGI app: one static page and a small JSON API over Redis (vad/ui/feed.py).

GET /                          the page (vad/ui/static: plain HTML, JS, CSS; nothing from the internet)
GET /api/cameras               cameras with their state, and whether a background snapshot is allowed
GET /api/events                newest episodes (?camera= &kind= &limit=) and the cursor to follow from
GET /api/stream                server-sent events: each new event as JSON with the cursor after it as the
                               message id, so a reconnect (Last-Event-ID, or ?cursor=) resumes there
GET /api/snapshot?camera=      the camera's background image, only where cameras.<id>.snapshot_allowed
POST /api/events/{id}/ack      acknowledge (DELETE: take the acknowledgement back)
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from pathlib import Path

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from vad.config import Config
from vad.follow import KINDS
from vad.ui.feed import BadRequest, Feed, Follow, check_camera, check_event_id, decode_cursor

STATIC = Path(__file__).parent / "static"
_SNAPSHOT_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}


def _limit(text: str | None, default: int, most: int) -> int:
    if text is None or text == "":
        return default
    if not text.isdigit() or not 1 <= int(text) <= most:
        raise BadRequest(f"limit: a whole number from 1 to {most}")
    return int(text)


def _kind(text: str | None) -> str | None:
    if text and text not in KINDS:
        raise BadRequest(f"kind: one of {', '.join(KINDS)}")
    return text or None


def snapshot_file(cfg: Config, camera: str) -> Path | None:
    """The camera's background image, when its config allows showing one and names a usable file."""
    cam = cfg.camera(camera)
    if cam is None or not cam.snapshot_allowed or not cam.snapshot_path:
        return None
    path = cfg.resolve(Path(cam.snapshot_path))
    return path if path.suffix.lower() in _SNAPSHOT_TYPES and path.is_file() else None


def create_app(cfg: Config, stopping: threading.Event | None = None) -> Starlette:
    """The app; set `stopping` and every open event stream ends within ui.stream_block_ms."""
    ui = cfg.ui
    stopping = stopping or threading.Event()
    feed = Feed(cfg.redis, block_ms=ui.stream_block_ms)
    # anyio's default pool (40 threads) serves the API calls; the streams' XREADs, blocked up to
    # stream_block_ms each, would fill it with a few dozen open pages and make every API call wait.
    streams = anyio.CapacityLimiter(ui.stream_threads)

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    async def cameras(request: Request) -> Response:
        cams = await anyio.to_thread.run_sync(feed.cameras)
        known = {c["camera_id"] for c in cams}
        # A camera configured with a snapshot is listed before its first event too.
        cams += [{"camera_id": cid, "state": None} for cid in cfg.cameras if cid not in known]
        for c in cams:
            c["snapshot"] = snapshot_file(cfg, c["camera_id"]) is not None
        return JSONResponse({"cameras": sorted(cams, key=lambda c: c["camera_id"])})

    async def events(request: Request) -> Response:
        q = request.query_params
        camera = q.get("camera") or None
        if camera:
            check_camera(camera)
        kind, limit = _kind(q.get("kind")), _limit(q.get("limit"), ui.events_limit, 5000)
        rows, cursor = await anyio.to_thread.run_sync(feed.events, camera, kind, limit)
        return JSONResponse({"events": rows, "cursor": cursor})

    async def ack(request: Request) -> Response:
        event_id = check_event_id(request.path_params["event_id"])
        if request.method == "DELETE":
            await anyio.to_thread.run_sync(feed.unack, event_id)
            return JSONResponse({"event_id": event_id, "acked": None})
        mark = await anyio.to_thread.run_sync(feed.ack, event_id, request.query_params.get("by"))
        return JSONResponse({"event_id": event_id, "acked": mark})

    async def snapshot(request: Request) -> Response:
        path = snapshot_file(cfg, check_camera(request.query_params.get("camera", "")))
        if path is None:
            return JSONResponse({"error": "no snapshot allowed for this camera"}, status_code=404)
        return FileResponse(path, media_type=_SNAPSHOT_TYPES[path.suffix.lower()])

    async def stream(request: Request) -> Response:
        # A reconnecting EventSource sends the id of the last message it got: that beats the URL's.
        text = request.headers.get("last-event-id") or request.query_params.get("cursor")
        if text is None:  # no place to resume from: start at the streams' ends now
            _rows, text = await anyio.to_thread.run_sync(feed.events, None, None, 1)
        follow = Follow(decode_cursor(text))

        async def messages():
            yield "retry: 1000\n\n"
            quiet_since = time.monotonic()
            while not stopping.is_set() and not await request.is_disconnected():
                rows = await anyio.to_thread.run_sync(
                    feed.follow, follow, ui.stream_block_ms, ui.camera_scan_s, limiter=streams
                )
                for r in rows:
                    yield f"id: {r.pop('cursor')}\nevent: event\ndata: {json.dumps(r)}\n\n"
                if rows:
                    quiet_since = time.monotonic()
                elif time.monotonic() - quiet_since >= ui.heartbeat_s:
                    quiet_since = time.monotonic()
                    yield ": idle\n\n"

        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(messages(), media_type="text/event-stream", headers=headers)

    async def bad_request(request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": str(exc)}, status_code=400)

    routes = [
        Route("/", page),
        Route("/api/cameras", cameras),
        Route("/api/events", events),
        Route("/api/stream", stream),
        Route("/api/snapshot", snapshot),
        Route("/api/events/{event_id}/ack", ack, methods=["POST", "DELETE"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        try:
            yield
        finally:
            feed.close()

    app = Starlette(routes=routes, exception_handlers={BadRequest: bad_request}, lifespan=lifespan)
    app.state.feed = feed
    return app
