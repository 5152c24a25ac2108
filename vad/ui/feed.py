"""What the review page reads from and writes to Redis, on the layout of vad/redis_store.py.

The page lists one row per episode (its latest event: open, update or close share an event_id) and
follows the cameras' streams for new ones. A cursor is where a reader is in every camera's stream:
``camera=stream-id`` pairs joined by commas (a legal camera id has neither character). A camera
missing from a cursor is one that had no keys when the cursor was made, so all its stream is new.

Acknowledgements are keys ``<prefix>:ack:<event id>`` with the events' lifetime (``event_ttl_s``).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field

import redis

from vad.config import RedisConfig
from vad.records import Event
from vad.redis_store import RedisEventStore
from vad.schema import camera_id_ok

EVENT_ID = re.compile(r"^[0-9a-f]{32}$")
STREAM_ID = re.compile(r"^[0-9]{1,20}-[0-9]{1,20}$")
# Events written before events had a kind were all motion events.
KIND_DEFAULT = Event.model_fields["kind"].default
# The fields of an event the page shows; the heatmap only for the event selected.
_ROW_FIELDS = ("event_id", "camera_id", "phase", "seq", "start_ts_ms", "ts_ms", "peak_score", "model_version")


class BadRequest(ValueError):
    """A parameter the page (or a caller) sent is not legal; the message names it."""


def check_event_id(event_id: str) -> str:
    if not isinstance(event_id, str) or not EVENT_ID.match(event_id):
        raise BadRequest("event id: 32 lowercase hex digits expected")
    return event_id


def check_camera(camera: str) -> str:
    if not camera_id_ok(camera):
        raise BadRequest("camera: not a legal camera id")
    return camera


def encode_cursor(cursor: dict[str, str]) -> str:
    return ",".join(f"{cam}={sid}" for cam, sid in sorted(cursor.items()))


def decode_cursor(text: str | None) -> dict[str, str]:
    """The cursor's camera -> stream id map; a malformed cursor is refused, not half read."""
    out: dict[str, str] = {}
    for part in (text or "").split(","):
        if not part:
            continue
        cam, sep, sid = part.rpartition("=")
        if not sep or not camera_id_ok(cam) or not STREAM_ID.match(sid):
            raise BadRequest(f"cursor: bad entry {part[:80]!r}")
        out[cam] = sid
    return out


def row(event: dict, entry_id: str | None = None) -> dict:
    """The page's row of one event: its shown fields, its kind (motion when absent), duration."""
    out = {k: event.get(k) for k in _ROW_FIELDS}
    out["kind"] = event.get("kind") or KIND_DEFAULT
    start, end = event.get("start_ts_ms"), event.get("ts_ms")
    out["duration_ms"] = end - start if isinstance(start, int) and isinstance(end, int) else None
    out["heatmap"] = event.get("heatmap") or []
    out["entry_id"] = entry_id
    return out


def latest_per_episode(rows: list[dict]) -> list[dict]:
    """One row per event_id, the highest seq's, newest episode first (by its latest event time)."""
    best: dict[str, dict] = {}
    for r in rows:
        cur = best.get(r["event_id"])
        if cur is None or (r.get("seq") or 0) >= (cur.get("seq") or 0):
            best[r["event_id"]] = r
    return sorted(best.values(), key=lambda r: (r.get("ts_ms") or 0, r["event_id"]), reverse=True)


def matches(r: dict, camera: str | None, kind: str | None) -> bool:
    return (not camera or r["camera_id"] == camera) and (not kind or r["kind"] == kind)


def parse_entry(fields: dict) -> dict | None:
    """The event JSON of a stream entry, or None when it is not an event object (written by
    something else): the page skips it rather than failing for every reader."""
    try:
        event = json.loads(fields.get("event", ""))
    except (TypeError, ValueError):
        return None
    ok = isinstance(event, dict) and isinstance(event.get("event_id"), str) and EVENT_ID.match(event["event_id"])
    return event if ok and isinstance(event.get("camera_id"), str) else None


@dataclass
class Follow:
    """One reader's place in every camera's stream, and when it last looked for new cameras."""

    cursor: dict[str, str]
    scanned_at: float = field(default_factory=time.monotonic)
    recent_count: int | None = None


class Feed:
    def __init__(self, cfg: RedisConfig, block_ms: int = 0):
        # A blocked XREAD holds the socket silent for block_ms: the read timeout must outlast it.
        self.store = RedisEventStore(cfg.model_copy(update={"timeout_s": cfg.timeout_s + block_ms / 1000}))
        self.r: redis.Redis = self.store.r
        self.ttl_s = cfg.event_ttl_s
        self.prefix = cfg.key_prefix

    def close(self) -> None:
        self.store.close()

    def ack_key(self, event_id: str) -> str:
        return f"{self.prefix}:ack:{check_event_id(event_id)}"

    def cameras(self) -> list[dict]:
        """Every camera with its state hash (state, last event id, phase, time), without the JSON."""
        cams = self.store.cameras()
        pipe = self.r.pipeline(transaction=False)
        for cam in cams:
            pipe.hmget(self.store.camera_key(cam), "state", "last_event_id", "last_phase", "last_ts_ms")
        out = []
        for cam, (state, last_id, phase, ts) in zip(cams, pipe.execute(), strict=True):
            ts_ms = int(ts) if ts and ts.isdigit() else None
            out.append(
                {"camera_id": cam, "state": state, "last_event_id": last_id, "last_phase": phase, "ts_ms": ts_ms}
            )
        return out

    def events(self, camera: str | None, kind: str | None, limit: int) -> tuple[list[dict], str]:
        """The newest episodes (one row each, ack state included) and the cursor to follow from: each
        camera's newest entry read, so an event landing just after is the follower's first."""
        cams = [check_camera(camera)] if camera else self.store.cameras()
        pipe = self.r.pipeline(transaction=False)
        # Each episode is at least an open and a close: read enough entries for `limit` episodes.
        for cam in cams:
            pipe.xrevrange(self.store.stream_key(cam), count=max(4 * limit, 50))
        cursor, rows = {}, []
        for cam, entries in zip(cams, pipe.execute(), strict=True):
            cursor[cam] = entries[0][0] if entries else "0-0"
            for entry_id, fields in entries:
                event = parse_entry(fields)
                if event is not None:
                    rows.append(row(event, entry_id))
        rows = [r for r in latest_per_episode(rows) if matches(r, camera, kind)][:limit]
        self.add_acks(rows)
        return rows, encode_cursor(cursor)

    def add_acks(self, rows: list[dict]) -> None:
        pipe = self.r.pipeline(transaction=False)
        for r in rows:
            pipe.get(self.ack_key(r["event_id"]))
        for r, got in zip(rows, pipe.execute() if rows else [], strict=True):
            r["acked"] = json.loads(got) if got else None

    def ack(self, event_id: str, by: str | None = None) -> dict:
        mark = {"ts_ms": int(time.time() * 1000), **({"by": by[:64]} if by else {})}
        self.r.set(self.ack_key(event_id), json.dumps(mark), ex=self.ttl_s)
        return mark

    def unack(self, event_id: str) -> None:
        self.r.delete(self.ack_key(event_id))

    def follow(self, f: Follow, block_ms: int, scan_s: float) -> list[dict]:
        """New events since the follower's cursor (each row with its cursor after it), waiting up to
        block_ms for one. Cameras new in Redis join the cursor from the start of their stream."""
        # A new camera's first event is a new episode, so the recent index grows: a scan of the
        # keyspace (costly with many keys) happens then, and every scan_s in case that was missed.
        # The index shrinking (old entries trimmed) brings no camera.
        count = self.r.zcard(self.store.recent_key)
        grew = f.recent_count is None or count > f.recent_count
        f.recent_count = count
        if grew or time.monotonic() - f.scanned_at >= scan_s or not f.cursor:
            f.scanned_at = time.monotonic()
            for cam in self.store.cameras():
                f.cursor.setdefault(cam, "0-0")
        if not f.cursor:
            time.sleep(block_ms / 1000)
            return []
        streams = {self.store.stream_key(cam): sid for cam, sid in f.cursor.items()}
        cam_of = {self.store.stream_key(cam): cam for cam in f.cursor}
        got = self.r.xread(streams, count=500, block=block_ms) or []
        out = []
        for key, entries in got:
            cam = cam_of[key]
            for entry_id, fields in entries:
                f.cursor[cam] = entry_id
                event = parse_entry(fields)
                if event is not None:
                    r = row(event, entry_id)
                    r["cursor"] = encode_cursor(f.cursor)
                    out.append(r)
        self.add_acks(out)
        return out
