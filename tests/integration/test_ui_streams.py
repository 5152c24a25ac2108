"""The review page's API stays answerable however many pages are open (vad/ui/app.py against a real
Redis): each open page's event stream waits in a blocked XREAD on a thread of the streams' own pool,
so more open pages than anyio's default 40 threads neither starve the API nor each other, and a new
event still reaches them."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request

import pytest
import uvicorn
from loopback import free_port

from vad.config import load_config
from vad.detect import event_id
from vad.records import Event
from vad.redis_store import RedisEventStore
from vad.ui.app import create_app
from vad.ui.feed import encode_cursor

PREFIX, CAMERA = "ui-streams", "ui-streams-cam"
PAGES = 45  # more than anyio's default thread pool (40)
BLOCK_MS = 10_000  # each stream's XREAD: far longer than an API call may take
_http = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _event(seq: int) -> tuple[Event, str]:
    e = Event(
        event_id=event_id(CAMERA, 1_800_000_000_000 + seq, seq),
        camera_id=CAMERA,
        phase="open",
        seq=1,
        start_frame=seq,
        end_frame=seq,
        start_ts_ms=1_800_000_000_000 + seq,
        ts_ms=1_800_000_000_000 + seq,
        peak_score=2.5,
        peak_frame=seq,
        threshold=1.0,
        heatmap=[],
        model_version="test",
    )
    return e, e.to_json()


def _blocked_reads(store: RedisEventStore) -> int:
    return sum(1 for c in store.r.client_list() if c.get("cmd") == "xread" and "b" in c.get("flags", ""))


@pytest.fixture
def app_server(stack_env):
    cfg = load_config(env={**stack_env, "VAD_REDIS__KEY_PREFIX": PREFIX, "VAD_UI__STREAM_BLOCK_MS": str(BLOCK_MS)})
    store = RedisEventStore(cfg.redis)
    for key in store.r.scan_iter(match=f"{PREFIX}:*"):
        store.r.delete(key)
    store.write_events([_event(1)])
    stopping, port = threading.Event(), free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(cfg, stopping), host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the review page did not start within 10 s"
    try:
        yield port, store
    finally:
        stopping.set()
        server.should_exit = True
        thread.join(timeout=BLOCK_MS / 1000 + 10)
        store.close()
    assert not thread.is_alive(), "the review page did not stop"


def _open_stream(port: int, cursor: str) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=BLOCK_MS / 1000 + 10)
    s.sendall(f"GET /api/stream?cursor={cursor} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    got = b""
    while b"retry: 1000" not in got and len(got) < 10_000:
        chunk = s.recv(4096)
        assert chunk, "the event stream closed before its first message"
        got += chunk
    return s


def test_many_open_pages_leave_the_api_answering_and_still_get_new_events(app_server):
    port, store = app_server
    tip = store.r.xrevrange(store.stream_key(CAMERA), count=1)[0][0]
    pages = []
    try:
        for _ in range(PAGES):
            pages.append(_open_stream(port, encode_cursor({CAMERA: tip})))
        # Every page waits in Redis at once: none queues behind another's thread.
        deadline = time.monotonic() + 10
        while _blocked_reads(store) < PAGES and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _blocked_reads(store) >= PAGES

        # The API answers at once, not after a stream's XREAD gives its thread back.
        answers = {}
        for path in ("/api/cameras", "/api/events?limit=5"):
            t0 = time.monotonic()
            with _http.open(f"http://127.0.0.1:{port}{path}", timeout=BLOCK_MS / 2000) as r:
                answers[path] = json.loads(r.read())
            assert time.monotonic() - t0 < BLOCK_MS / 2000, f"{path} waited behind the open streams"
        assert [c["camera_id"] for c in answers["/api/cameras"]["cameras"]] == [CAMERA]
        assert [e["camera_id"] for e in answers["/api/events?limit=5"]["events"]] == [CAMERA]
        assert answers["/api/events?limit=5"]["cursor"] == encode_cursor({CAMERA: tip})  # follow from the newest

        new = _event(2)
        store.write_events([new])
        new_id = new[0].event_id.encode()
        for page in (pages[0], pages[-1]):
            got, deadline = b"", time.monotonic() + BLOCK_MS / 1000
            while new_id not in got and time.monotonic() < deadline:
                got += page.recv(65536)
            assert new_id in got, "a new event did not reach an open page"
    finally:
        for page in pages:
            page.close()
