"""Writes the job's events to Redis, a view beside the Kafka events topic, without ever holding
Kafka back.

The events reach Kafka straight from score-detect; this writer is a branch of its own: a task of its
own (not chained, so not on score-detect's task thread; in the Python worker process its bundles run
on a thread of their own, beside score-detect's), keyed by the same scoring shard as score-detect (so
each camera's events reach it in order), emitting nothing. Whatever Redis does,
it takes its input as fast as it comes, so neither backpressure nor a stuck checkpoint barrier
reaches score-detect and the Kafka sinks through it:

- Redis answering: a batch's events are written in one pipelined round trip (a synchronous write per
  event held the Python worker for a tenth of its time at 3,500 frames/s, profiled). One Lua script
  per event makes each write atomic and idempotent: a dedup key per (event id, seq) guards the
  stream append, the camera's state hash and the recent-events index, so a replay after a restart
  writes nothing twice.
- Redis cannot take writes (``AWAY``: unreachable, timed out, read-only replica, out of memory,
  ...): the batch's events are held back in the shard's keyed state (checkpointed, so a restart
  keeps them), and so is every later batch of the shard until the held-back ones are written, which
  keeps each camera's events in order (the camera's state hash is that of its last event written).
  The subtask tries Redis again after a delay doubling from ``redis.retry_backoff_ms`` to 5 s, one
  try at a time whatever the number of shards, so an unreachable Redis costs the task at most one
  ``redis.timeout_s`` per delay; a processing-time timer per shard retries without waiting for the
  shard's next events.
- Held back beyond ``redis.pending_max_events`` events in a shard, the oldest are dropped, down to
  nine tenths of it (counted in ``redis_events_dropped``): Redis then misses them in the cameras'
  streams, while each camera's state is still that of its last event, and Kafka has them all.
- Redis refuses an event on its own (a key of another type, an id the store does not take): that
  event is dropped from Redis (counted, logged), the batch's others are written.
- When the input ends (a bounded run, a stop with ``--drain``), events still held back get
  ``redis.retry_attempts`` more tries, then are dropped (counted): the job finishes.
"""

from __future__ import annotations

import logging
import time

import redis
from pyflink.common import Types
from pyflink.datastream import KeyedProcessFunction, RuntimeContext, TimeDomain
from pyflink.datastream.state import ListStateDescriptor, ValueStateDescriptor

from udfs.beam_sampler import disable_sampling_thread
from udfs.metrics import Announcement, vad_metrics
from vad.config import RedisConfig
from vad.redis_store import EventKeys, RedisEventStore

log = logging.getLogger(__name__)

MAX_BACKOFF_MS = 5000
# Errors that say Redis cannot take writes for now (unreachable, read-only replica, out of memory,
# ...), whatever the event: its writes are held back. Any other refusal concerns an event.
AWAY = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.NoPermissionError,
    redis.exceptions.ClusterError,
    redis.exceptions.TryAgainError,
)
# Held-back events go out in round trips of at most this many.
FLUSH_CHUNK = 500
# The end of the input: the final watermark fires event-time timers at this time.
END_OF_INPUT = 2**63 - 1


class WriteEventsToRedis(KeyedProcessFunction):
    """Row(shard, newline-joined event JSON), keyed by shard -> Redis; no output."""

    def __init__(self, cfg: RedisConfig, beam_sampling_thread: bool = True):
        self.cfg = cfg
        self.beam_sampling_thread = beam_sampling_thread

    def open(self, runtime_context: RuntimeContext):
        if not self.beam_sampling_thread:
            # For the worker process, as score-detect does: whichever opens first applies it, and
            # the two need not share a process.
            disable_sampling_thread()
        self.store = RedisEventStore(self.cfg)
        # The shard's held-back batches (each its events' JSON, newline-joined), oldest first, and
        # how many events they hold.
        self.held = runtime_context.get_list_state(ListStateDescriptor("held", Types.STRING()))
        self.held_n = runtime_context.get_state(ValueStateDescriptor("held_events", Types.INT()))
        # The subtask's view of Redis, shared by its shards: no try before retry_at (processing
        # time, ms); the delay after the next failure.
        self.retry_at = 0
        self.backoff_ms = self.cfg.retry_backoff_ms
        self.down_since: int | None = None
        g = vad_metrics(runtime_context)
        self.written = g.counter("redis_events_written")
        self.duplicates = g.counter("redis_events_duplicate")
        self.retries = g.counter("redis_retries")
        self.held_back = g.counter("redis_events_held")
        self.dropped = g.counter("redis_events_dropped")
        self.announce = Announcement(self.duplicates, self.retries, self.held_back, self.dropped)

    def close(self):
        if getattr(self, "store", None) is not None:
            self.store.close()

    # Both return an empty iterable: the writer emits nothing, and PyFlink iterates what a timer
    # returns.
    def process_element(self, value: str, ctx: KeyedProcessFunction.Context):
        self.announce()
        now = ctx.timer_service().current_processing_time()
        held = self.held_n.value() or 0
        if not held and now >= self.retry_at and self._write(value.split("\n"), now):
            return ()
        self._hold(value, held, ctx, now)
        if held and now >= self.retry_at:
            self._flush(now)
        return ()

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext):
        if not self.held_n.value():
            return ()
        now = ctx.timer_service().current_processing_time()
        if ctx.time_domain() == TimeDomain.EVENT_TIME:  # the end of the input
            self._last_flush(now)
        elif now < self.retry_at or not self._flush(now):
            ctx.timer_service().register_processing_time_timer(max(self.retry_at, now + 1))
        return ()

    def _write(self, lines: list[str], now: int) -> bool:
        """One round trip; False, and Redis marked away, if it failed."""
        pairs = [(EventKeys.parse(line), line) for line in lines]
        try:
            done = self.store.write_events(pairs)
        except AWAY as e:
            self._away(e, now)
            return False
        except (redis.RedisError, ValueError) as e:
            # Redis answers but refuses an event (a key of another type, an id the store does not
            # take): the others must not wait behind it.
            log.error("redis refused a write (%s: %s): writing the batch's events one by one", type(e).__name__, e)
            return self._write_each(pairs, now)
        self._answered(now, done)
        return True

    def _write_each(self, pairs: list[tuple[EventKeys, str]], now: int) -> bool:
        for event, line in pairs:
            try:
                done = self.store.write_events([(event, line)])
            except AWAY as e:
                self._away(e, now)
                return False
            except (redis.RedisError, ValueError) as e:
                self.dropped.inc()
                log.error(
                    "redis refused event %s seq %d of camera %r (%s: %s): it is in Kafka only",
                    event.event_id,
                    event.seq,
                    event.camera_id,
                    type(e).__name__,
                    e,
                )
                continue
            self._answered(now, done)
        return True

    def _away(self, e: Exception, now: int) -> None:
        self.retries.inc()
        if self.down_since is None:
            self.down_since = now
            log.warning("redis write failed (%s: %s): holding events back, Kafka unaffected", type(e).__name__, e)
        self.retry_at = now + self.backoff_ms
        self.backoff_ms = min(self.backoff_ms * 2, MAX_BACKOFF_MS)

    def _answered(self, now: int, done: list[bool]) -> None:
        if self.down_since is not None:
            log.warning("redis answers again after %.1f s", (now - self.down_since) / 1000)
            self.down_since = None
        self.retry_at, self.backoff_ms = 0, self.cfg.retry_backoff_ms
        n = sum(done)
        self.written.inc(n)
        self.duplicates.inc(len(done) - n)

    def _hold(self, joined: str, held: int, ctx, now: int) -> None:
        n = joined.count("\n") + 1
        self.held_back.inc(n)
        self.held.add(joined)
        first = not held
        held += n
        if held > self.cfg.pending_max_events:
            held = self._drop_oldest()
        self.held_n.update(held)
        if first:  # nothing retries the shard yet
            ctx.timer_service().register_processing_time_timer(max(self.retry_at, now + 1))
            ctx.timer_service().register_event_time_timer(END_OF_INPUT)

    def _drop_oldest(self) -> int:
        # Down to nine tenths of the bound: the list is read and rewritten once per tenth of it, not
        # once per batch, through an outage that outlasts it.
        lines = [line for joined in self.held.get() for line in joined.split("\n")]
        cap = self.cfg.pending_max_events
        drop = len(lines) - (cap - cap // 10)
        self.dropped.inc(drop)
        log.warning("redis away: %d events held back in a shard, the oldest %d dropped from Redis", len(lines), drop)
        self.held.update(["\n".join(lines[drop:])])
        return len(lines) - drop

    def _flush(self, now: int) -> bool:
        """Writes the shard's held-back events, oldest first; True when none is left."""
        lines = [line for joined in self.held.get() for line in joined.split("\n")]
        for start in range(0, len(lines), FLUSH_CHUNK):
            if not self._write(lines[start : start + FLUSH_CHUNK], now):
                if start:
                    self.held.update(["\n".join(lines[start:])])
                    self.held_n.update(len(lines) - start)
                return False
        self.held.clear()
        self.held_n.clear()
        log.info("wrote %d held-back events to redis", len(lines))
        return True

    def _last_flush(self, now: int) -> None:
        delay = self.cfg.retry_backoff_ms / 1000
        for attempt in range(1, self.cfg.retry_attempts + 1):
            self.retry_at = 0
            if self._flush(now):
                return
            if attempt < self.cfg.retry_attempts:
                time.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF_MS / 1000)
        n = self.held_n.value() or 0
        self.dropped.inc(n)
        log.error("redis away at the end of the input: %d held-back events dropped from Redis", n)
        self.held.clear()
        self.held_n.clear()
