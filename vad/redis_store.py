"""Redis layout for events, shared by the job's writer and the `vad events` reader.

Keys (``<p>`` the prefix from config, default ``vad``; ``<id>`` a legal camera id, ``vad.schema``,
between literal braces):
- ``<p>:cam:{<id>}:events``          stream of event JSON (field ``event``), trimmed to ``stream_maxlen``;
- ``<p>:cam:{<id>}:state``           hash with the camera's latest state (``state`` = anomaly | normal,
  the last event id, phase, timestamp and JSON);
- ``<p>:recent``                     sorted set of event ids by timestamp, trimmed by age (``event_ttl_s``);
- ``<p>:written:<event id>:<seq>``   dedup marks with a TTL, so replays do not append twice.

Every per-camera key is under ``<p>:cam:`` with the id between braces, and no global key is: a
legal id has no brace, so no camera's keys can be another camera's or a global key, whatever the id
(``recent``, ``a:events``, ``x/y``). The braces are also a Redis Cluster hash tag: a camera's two
keys share a slot. A key is built only from a legal id (``validate_camera_id``); anything else is
refused before it reaches Redis.
"""

from __future__ import annotations

from typing import NamedTuple

import pydantic_core
import redis

from vad.config import RedisConfig
from vad.records import Event
from vad.schema import camera_id_ok, validate_camera_id

# KEYS: dedup mark, camera stream, camera state, recent index. ARGV: ttl s, stream maxlen, event
# JSON, event id, ts ms, phase, state.
# Every key's type is checked before the first write: Redis does not roll a script back, so a
# WRONGTYPE error after a write would leave half an event. The dedup mark is set last, after every
# write succeeded: set first, a failed write would leave it behind and the replay after a restart
# would skip an event that was never written.
_WRITE = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
local want = {[2] = 'stream', [3] = 'hash', [4] = 'zset'}
for i, t in pairs(want) do
  local got = redis.call('TYPE', KEYS[i])['ok']
  if got ~= 'none' and got ~= t then
    return redis.error_reply('WRONGTYPE key ' .. KEYS[i] .. ' is a ' .. got .. ', not a ' .. t)
  end
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'event', ARGV[3])
redis.call('HSET', KEYS[3], 'state', ARGV[7], 'last_event_id', ARGV[4], 'last_phase', ARGV[6],
           'last_ts_ms', ARGV[5], 'last_event', ARGV[3])
redis.call('ZADD', KEYS[4], ARGV[5], ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', tonumber(ARGV[5]) - 1000 * tonumber(ARGV[1]))
redis.call('SET', KEYS[1], '1', 'EX', ARGV[1])
return 1
"""


def connect(cfg: RedisConfig) -> redis.Redis:
    return redis.Redis(
        host=cfg.host,
        port=cfg.port,
        db=cfg.db,
        username=cfg.username,
        password=cfg.password.get_secret_value() if cfg.password else None,
        ssl=cfg.tls,
        ssl_ca_certs=cfg.tls_cafile,
        socket_timeout=cfg.timeout_s,
        socket_connect_timeout=cfg.timeout_s,
        decode_responses=True,
    )


class EventKeys(NamedTuple):
    """What the store reads of an event to write it (its keys and the camera's state), as
    ``parse`` takes it from the event's JSON without validating the rest: for events the job built
    and validated itself (the job's Redis writer), where ``Event.parse`` spent 60-75 µs an event."""

    event_id: str
    seq: int
    camera_id: str
    ts_ms: int
    phase: str

    @classmethod
    def parse(cls, raw: str) -> EventKeys:
        d = pydantic_core.from_json(raw)
        return cls(d["event_id"], d["seq"], d["camera_id"], d["ts_ms"], d["phase"])


class RedisEventStore:
    transient_errors = (redis.ConnectionError, redis.TimeoutError)

    def __init__(self, cfg: RedisConfig):
        self.cfg = cfg
        self.r = connect(cfg)
        # The script is called by its SHA. redis-py's Script object in a pipeline asks SCRIPT EXISTS
        # before every execute, a second round trip per batch of events; here the server says
        # NOSCRIPT once (new or flushed server), the script is loaded and the batch sent again.
        self._write = self.r.register_script(_WRITE)

    def close(self) -> None:
        self.r.close()

    def _camera_prefix(self, camera: str) -> str:
        # An illegal id could make one camera's key another's or a global key: refused, not escaped.
        if type(camera) is not str or not camera_id_ok(camera):
            validate_camera_id(camera)  # raises SchemaError bad_camera_id
        return f"{self.cfg.key_prefix}:cam:{{{camera}}}"

    def stream_key(self, camera: str) -> str:
        return self._camera_prefix(camera) + ":events"

    def camera_key(self, camera: str) -> str:
        return self._camera_prefix(camera) + ":state"

    @property
    def recent_key(self) -> str:
        return f"{self.cfg.key_prefix}:recent"

    def dedup_key(self, event_id: str, seq: int) -> str:
        return f"{self.cfg.key_prefix}:written:{event_id}:{seq}"

    def write_events(self, events: list[tuple[Event | EventKeys, str]]) -> list[bool]:
        """Writes (event or its ``EventKeys``, its JSON: ``Event.to_json``) pairs in one round trip
        (a pipeline of the idempotent script, in order; not a transaction: each event is atomic on
        its own, and a retry of the whole list skips what was written). True where written, False
        where already there."""
        try:
            return self._send(events)
        except redis.exceptions.NoScriptError:
            # Nothing was written (every call of the batch failed the same way): load, send again.
            self.r.script_load(_WRITE)
            return self._send(events)

    def _send(self, events: list[tuple[Event | EventKeys, str]]) -> list[bool]:
        pipe = self.r.pipeline(transaction=False)
        for event, raw in events:
            keys = self._keys(event)
            pipe.evalsha(self._write.sha, len(keys), *keys, *self._args(event, raw))
        return [bool(x) for x in pipe.execute()]

    def _keys(self, event: Event | EventKeys) -> list[str]:
        cam = event.camera_id
        return [
            self.dedup_key(event.event_id, event.seq),
            self.stream_key(cam),
            self.camera_key(cam),
            self.recent_key,
        ]

    def _args(self, event: Event | EventKeys, raw: str) -> list:
        state = "normal" if event.phase == "close" else "anomaly"
        return [
            self.cfg.event_ttl_s,
            self.cfg.stream_maxlen,
            raw,
            event.event_id,
            event.ts_ms,
            event.phase,
            state,
        ]

    def cameras(self) -> list[str]:
        """The cameras with a state hash. A key of that shape whose id is not legal (written by
        something else) is not a camera's and is left out."""
        pre, suf = f"{self.cfg.key_prefix}:cam:{{", "}:state"
        ids = (k[len(pre) : -len(suf)] for k in self.r.scan_iter(match=f"{pre}*{suf}", count=500))
        return sorted(i for i in ids if camera_id_ok(i))

    def events(self, camera: str, count: int = 10_000) -> list[str]:
        """The camera's events, oldest first, as stored: JSON (``Event.parse`` reads one)."""
        return [fields["event"] for _id, fields in self.r.xrange(self.stream_key(camera), count=count)]

    def camera_state(self, camera: str) -> dict:
        return self.r.hgetall(self.camera_key(camera))
