"""Redis layout for events, shared by the job's writer and the `vad events` reader.

Keys (prefix from config, default ``vad``):
- ``{p}:events:{camera}``   stream of event JSON (field ``event``), trimmed to ``stream_maxlen``;
- ``{p}:camera:{camera}``   hash with the camera's latest state (``state`` = anomaly | normal, the
  last event id, phase, timestamp and JSON);
- ``{p}:events:recent``     sorted set of event ids by timestamp, trimmed by age (``event_ttl_s``);
- ``{p}:seen:{id}:{seq}``   dedup keys with a TTL, so replays do not append twice.
"""

from __future__ import annotations

import redis

from vad.config import RedisConfig
from vad.records import Event

_WRITE = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'event', ARGV[3])
  redis.call('HSET', KEYS[3], 'state', ARGV[7], 'last_event_id', ARGV[4], 'last_phase', ARGV[6],
             'last_ts_ms', ARGV[5], 'last_event', ARGV[3])
  redis.call('ZADD', KEYS[4], ARGV[5], ARGV[4])
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', tonumber(ARGV[5]) - 1000 * tonumber(ARGV[1]))
  return 1
end
return 0
"""


def connect(cfg: RedisConfig) -> redis.Redis:
    return redis.Redis(
        host=cfg.host,
        port=cfg.port,
        db=cfg.db,
        password=cfg.password.get_secret_value() if cfg.password else None,
        ssl=cfg.tls,
        socket_timeout=cfg.timeout_s,
        socket_connect_timeout=cfg.timeout_s,
        decode_responses=True,
    )


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

    def stream_key(self, camera: str) -> str:
        return f"{self.cfg.key_prefix}:events:{camera}"

    def camera_key(self, camera: str) -> str:
        return f"{self.cfg.key_prefix}:camera:{camera}"

    @property
    def recent_key(self) -> str:
        return f"{self.cfg.key_prefix}:events:recent"

    def write_events(self, events: list[tuple[Event, str]]) -> list[bool]:
        """Writes (event, its JSON: ``Event.to_json``) pairs in one round trip (a pipeline of the idempotent script,
        in order; not a transaction: each event is atomic on its own, and a retry of the whole
        list skips what was written). True where written, False where already there."""
        try:
            return self._send(events)
        except redis.exceptions.NoScriptError:
            # Nothing was written (every call of the batch failed the same way): load, send again.
            self.r.script_load(_WRITE)
            return self._send(events)

    def _send(self, events: list[tuple[Event, str]]) -> list[bool]:
        pipe = self.r.pipeline(transaction=False)
        for event, raw in events:
            keys = self._keys(event)
            pipe.evalsha(self._write.sha, len(keys), *keys, *self._args(event, raw))
        return [bool(x) for x in pipe.execute()]

    def _keys(self, event: Event) -> list[str]:
        cam, eid = event.camera_id, event.event_id
        return [
            f"{self.cfg.key_prefix}:seen:{eid}:{event.seq}",
            self.stream_key(cam),
            self.camera_key(cam),
            self.recent_key,
        ]

    def _args(self, event: Event, raw: str) -> list:
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
        pre = f"{self.cfg.key_prefix}:camera:"
        return sorted(k[len(pre) :] for k in self.r.scan_iter(match=pre + "*", count=500))

    def events(self, camera: str, count: int = 10_000) -> list[str]:
        """The camera's events, oldest first, as stored: JSON (``Event.parse`` reads one)."""
        return [fields["event"] for _id, fields in self.r.xrange(self.stream_key(camera), count=count)]

    def camera_state(self, camera: str) -> dict:
        return self.r.hgetall(self.camera_key(camera))
