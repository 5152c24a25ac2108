"""Writes events to Redis idempotently and passes them on to the Kafka sink.

One Lua script per event makes the write atomic and idempotent: a dedup key per (event id, seq)
guards the stream append, the camera's state hash and the recent-events index, so a replay after a
failure writes nothing twice. Connection errors are retried with backoff a bounded number of times;
then the job fails and restarts from its last checkpoint (nothing lost, nothing blocked forever).
"""

from __future__ import annotations

import json
import logging
import time

from pyflink.datastream import MapFunction, RuntimeContext

from vad.config import RedisConfig
from vad.redis_store import RedisEventStore

log = logging.getLogger(__name__)


class WriteEventsToRedis(MapFunction):
    def __init__(self, cfg: RedisConfig):
        self.cfg = cfg

    def open(self, runtime_context: RuntimeContext):
        self.store = RedisEventStore(self.cfg)
        g = runtime_context.get_metrics_group().add_group("vad")
        self.written = g.counter("redis_events_written")
        self.duplicates = g.counter("redis_events_duplicate")
        self.retries = g.counter("redis_retries")

    def close(self):
        if getattr(self, "store", None) is not None:
            self.store.close()

    def map(self, value: str) -> str:
        event = json.loads(value)
        delay = self.cfg.retry_backoff_ms / 1000
        for attempt in range(1, self.cfg.retry_attempts + 1):
            try:
                if self.store.write_event(event, value):
                    self.written.inc()
                else:
                    self.duplicates.inc()
                return value
            except self.store.transient_errors as e:
                if attempt == self.cfg.retry_attempts:
                    raise
                self.retries.inc()
                log.warning("redis write failed (%s), retry %d in %.2fs", e, attempt, delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        return value
