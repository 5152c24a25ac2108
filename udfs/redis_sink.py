"""Writes events to Redis idempotently and passes them on, one record each, to the Kafka sink.

Events arrive as one element per scored batch (a list of (event, its JSON) pairs from score-detect,
chained before this operator in the same Python worker, so the list is passed as it is, not
serialized, and the JSON is not parsed again here) and are written in one pipelined round trip: a
synchronous write per event holds the Python worker for a tenth of its time at 3,500 frames/s
(profiled). One Lua script per event makes each write atomic and
idempotent: a dedup key per (event id, seq) guards the stream append, the camera's state hash and
the recent-events index, so a replay after a failure writes nothing twice. Connection errors are
retried with backoff a bounded number of times; then the job fails and restarts from its last
checkpoint (nothing lost, nothing blocked forever).
"""

from __future__ import annotations

import logging
import time

from pyflink.datastream import FlatMapFunction, RuntimeContext

from udfs.metrics import Announcement, vad_metrics
from vad.config import RedisConfig
from vad.records import Event
from vad.redis_store import RedisEventStore

log = logging.getLogger(__name__)


class WriteEventsToRedis(FlatMapFunction):
    """[(Event, its JSON)] -> the events' JSON, one string each, after they are in Redis."""

    def __init__(self, cfg: RedisConfig):
        self.cfg = cfg

    def open(self, runtime_context: RuntimeContext):
        self.store = RedisEventStore(self.cfg)
        g = vad_metrics(runtime_context)
        self.written = g.counter("redis_events_written")
        self.duplicates = g.counter("redis_events_duplicate")
        self.retries = g.counter("redis_retries")
        self.announce = Announcement(self.duplicates, self.retries)

    def close(self):
        if getattr(self, "store", None) is not None:
            self.store.close()

    def flat_map(self, value: list[tuple[Event, str]]):
        self.announce()
        events = value
        delay = self.cfg.retry_backoff_ms / 1000
        for attempt in range(1, self.cfg.retry_attempts + 1):
            try:
                done = self.store.write_events(events)
                break
            except self.store.transient_errors as e:
                if attempt == self.cfg.retry_attempts:
                    raise
                self.retries.inc()
                log.warning("redis write failed (%s), retry %d in %.2fs", e, attempt, delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        n = sum(done)
        self.written.inc(n)
        self.duplicates.inc(len(done) - n)
        for _event, line in events:
            yield line
