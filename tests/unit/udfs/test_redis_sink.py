"""The Redis writer around the store, with the Flink runtime and the store replaced by in-memory
fakes (the store runs against a real Redis in the integration tests, the writer in the job there
too): one pipelined write per batch of events; while Redis is away, batches are held back in the
shard's state, in order, without a Redis call per batch, and written once it answers; the held-back
events are bounded; an event Redis refuses does not hold back the others."""

from __future__ import annotations

import hashlib
import json

import pytest
import redis
from flink_fakes import ListState, Timers, ValueState
from pyflink.datastream import TimeDomain

from udfs import redis_sink
from vad.config import RedisConfig
from vad.records import Event

BASE = {
    "camera_id": "c",
    "start_frame": 0,
    "end_frame": 1,
    "start_ts_ms": 1_800_000_000_000,
    "ts_ms": 1_800_000_000_100,
    "peak_score": 2.0,
    "peak_frame": 1,
    "heatmap": [[1.0]],
    "threshold": 1.0,
    "model_version": "m",
}


NAMES: dict[str, str] = {}  # event id -> the short name a test gives it


def _id(name: str) -> str:
    eid = hashlib.md5(name.encode()).hexdigest()
    NAMES[eid] = name
    return eid


def _line(name: str, seq: int = 1, phase: str = "open", camera: str = "c") -> str:
    extra = {"close_reason": "score"} if phase == "close" else {}
    e = {**BASE, "event_id": _id(name), "seq": seq, "phase": phase, "camera_id": camera, **extra}
    return Event.model_validate({"schema": "vad.event/v1", **e}).to_json()


def _batch(*ids: str) -> str:
    return "\n".join(_line(i) for i in ids)


class _Counter:
    def __init__(self):
        self.n = 0

    def inc(self, n=1):
        self.n += n


class _Group:
    def __init__(self):
        self.counters = {}

    def add_group(self, _name):
        return self

    def counter(self, name):
        return self.counters.setdefault(name, _Counter())


class _Runtime:
    """One shard's state (the tests drive one key)."""

    def __init__(self):
        self.group = _Group()
        self.list, self.value = ListState(), ValueState()

    def get_metrics_group(self):
        return self.group

    def get_list_state(self, _d):
        return self.list

    def get_state(self, _d):
        return self.value


class _Ctx:
    def __init__(self, timers, domain=TimeDomain.PROCESSING_TIME):
        self.timers, self.domain = timers, domain

    def timer_service(self):
        return self.timers

    def time_domain(self):
        return self.domain


class _Store:
    """Redis as the writer sees it: written (event id, seq) in order; `down` raises on every call;
    `refuse` ids make the call raise after writing the others, as a non-transactional pipeline
    does."""

    transient_errors = (redis.ConnectionError, redis.TimeoutError)

    def __init__(self):
        self.calls, self.written, self.down, self.refuse = 0, [], None, set()

    def write_events(self, pairs):
        self.calls += 1
        if self.down is not None:
            raise self.down
        out, refused = [], None
        for e, raw in pairs:
            ev = Event.parse(raw)  # the writer hands the store what it reads of the event's JSON
            assert (ev.event_id, ev.seq, ev.camera_id, ev.ts_ms, ev.phase) == tuple(e)
            if NAMES[e.event_id] in self.refuse:
                refused = redis.ResponseError(f"WRONGTYPE key of {e.event_id}")
                continue
            key = (NAMES[e.event_id], e.seq)
            out.append(key not in self.written)
            if key not in self.written:
                self.written.append(key)
        if refused is not None:
            raise refused
        return out

    def close(self):
        pass


class Harness:
    def __init__(self, monkeypatch, **cfg):
        self.store = _Store()
        monkeypatch.setattr(redis_sink, "RedisEventStore", lambda _cfg: self.store)
        self.sleeps = []
        monkeypatch.setattr(redis_sink.time, "sleep", self.sleeps.append)
        self.w = redis_sink.WriteEventsToRedis(RedisConfig(**{"retry_backoff_ms": 100, **cfg}))
        self.rt = _Runtime()
        self.w.open(self.rt)
        self.clock = [1_000_000]
        self.timers = Timers(self.clock)

    @property
    def counters(self):
        return {k: c.n for k, c in self.rt.group.counters.items()}

    def element(self, joined: str):
        assert list(self.w.process_element(joined, _Ctx(self.timers))) == []  # no output, ever

    def fire_due_timers(self):
        due = [t for t in self.timers.processing if t <= self.clock[0]]
        self.timers.processing = [t for t in self.timers.processing if t > self.clock[0]]
        for _ in due:
            assert list(self.w.on_timer(self.clock[0], _Ctx(self.timers))) == []

    def end_of_input(self):
        assert list(self.w.on_timer(redis_sink.END_OF_INPUT, _Ctx(self.timers, TimeDomain.EVENT_TIME))) == []

    @property
    def held(self) -> list[str]:
        return [NAMES[json.loads(line)["event_id"]] for joined in self.rt.list.items for line in joined.split("\n")]


def test_a_batch_of_events_is_one_write_and_nothing_is_held(monkeypatch):
    h = Harness(monkeypatch)
    h.element(_batch("a", "b", "c"))
    assert h.store.calls == 1 and [k for k, _ in h.store.written] == ["a", "b", "c"]
    h.element(_batch("c", "d"))  # a replayed event: counted as a duplicate
    c = h.counters
    assert c["redis_events_written"] == 4 and c["redis_events_duplicate"] == 1
    assert h.held == [] and h.timers.processing == [] and h.timers.event == []


def test_while_redis_is_away_batches_are_held_in_order_and_written_when_it_answers(monkeypatch):
    h = Harness(monkeypatch)
    h.store.down = redis.ConnectionError("refused")
    h.element(_batch("a", "b"))
    assert h.store.calls == 1 and h.held == ["a", "b"]
    # One retry timer and one end-of-input timer for the shard, not one per batch.
    assert h.timers.processing == [h.clock[0] + 100] and h.timers.event == [redis_sink.END_OF_INPUT]
    for i in range(20):  # within the backoff: held without a call to Redis
        h.element(_batch(f"x{i}"))
    assert h.store.calls == 1 and len(h.held) == 22 and len(h.timers.processing) == 1
    h.clock[0] += 100
    h.fire_due_timers()  # still away: the next try waits twice as long
    assert h.store.calls == 2 and h.timers.processing == [h.clock[0] + 200]
    h.store.down = None
    h.clock[0] += 200
    h.element(_batch("y"))  # the shard's new events go after the held ones
    assert [k for k, _ in h.store.written] == ["a", "b", *(f"x{i}" for i in range(20)), "y"]
    assert h.held == [] and h.rt.value.value() is None
    c = h.counters
    assert c["redis_events_held"] == 23 and c["redis_retries"] == 2 and c["redis_events_dropped"] == 0
    h.fire_due_timers()  # the retry timer finds nothing left
    assert h.store.calls == 3
    h.element(_batch("z"))  # answering again: straight through, the backoff back at its start
    assert h.store.written[-1] == ("z", 1) and h.held == [] and h.w.backoff_ms == 100


def test_a_timer_writes_the_held_events_without_new_ones_arriving(monkeypatch):
    h = Harness(monkeypatch)
    h.store.down = redis.TimeoutError("timed out")
    h.element(_batch("a"))
    h.store.down = None
    h.clock[0] += 100
    h.fire_due_timers()
    assert [k for k, _ in h.store.written] == ["a"] and h.held == []


@pytest.mark.parametrize(
    "error",
    [redis.ConnectionError("refused"), redis.exceptions.ReadOnlyError("replica"), redis.exceptions.OutOfMemoryError()],
)
def test_redis_unable_to_take_writes_holds_them_back(monkeypatch, error):
    h = Harness(monkeypatch)
    h.store.down = error
    h.element(_batch("a"))
    assert h.held == ["a"] and h.counters["redis_events_dropped"] == 0


def test_the_subtask_tries_redis_once_per_delay_whatever_its_shards(monkeypatch):
    h = Harness(monkeypatch)
    h.store.down = redis.TimeoutError("timed out")
    h.element(_batch("a"))
    other = _Runtime()  # a second shard of the same subtask: its own state, the same view of Redis
    h.w.held, h.w.held_n = other.list, other.value
    h.element(_batch("b"))
    assert h.store.calls == 1 and other.list.items == [_batch("b")]


def test_held_back_events_are_bounded_the_oldest_dropped(monkeypatch):
    h = Harness(monkeypatch, pending_max_events=5)
    h.store.down = redis.ConnectionError("refused")
    for i in range(4):
        h.element(_batch(f"{i}a", f"{i}b"))
    assert h.held == ["1b", "2a", "2b", "3a", "3b"] and h.rt.value.value() == 5
    assert h.counters["redis_events_dropped"] == 3
    h.store.down = None
    h.clock[0] += 10_000
    h.fire_due_timers()
    assert [k for k, _ in h.store.written] == ["1b", "2a", "2b", "3a", "3b"]

    # Over a larger bound, down to nine tenths of it at once: not a rewrite of the list per batch.
    h = Harness(monkeypatch, pending_max_events=20)
    h.store.down = redis.ConnectionError("refused")
    for i in range(21):
        h.element(_batch(f"e{i}"))
    assert h.held == [f"e{i}" for i in range(3, 21)] and h.counters["redis_events_dropped"] == 3
    h.element(_batch("e21"))
    assert len(h.rt.list.items) == 2 and h.rt.value.value() == 19


def test_at_the_end_of_the_input_held_events_get_the_last_tries_then_are_dropped(monkeypatch):
    h = Harness(monkeypatch, retry_attempts=3)
    h.store.down = redis.ConnectionError("refused")
    h.element(_batch("a", "b"))
    h.end_of_input()
    assert h.store.calls == 1 + 3 and h.sleeps == [0.1, 0.2]
    assert h.held == [] and h.counters["redis_events_dropped"] == 2
    h.end_of_input()  # nothing held: nothing tried
    assert h.store.calls == 4

    h = Harness(monkeypatch, retry_attempts=3)
    h.store.down = redis.ConnectionError("refused")
    h.element(_batch("a"))
    h.store.down = None
    h.end_of_input()
    assert [k for k, _ in h.store.written] == ["a"] and h.counters["redis_events_dropped"] == 0


@pytest.mark.parametrize("error", ["response", "refused id"])
def test_an_event_redis_refuses_is_dropped_and_does_not_hold_back_the_others(monkeypatch, error):
    h = Harness(monkeypatch)
    if error == "response":
        h.store.refuse = {"b"}
    else:  # the store refuses to build keys for an id it does not take
        write = h.store.write_events

        def refusing(pairs):
            if any(NAMES[e.event_id] == "b" for e, _ in pairs):
                raise ValueError("bad_camera_id: ...")
            return write(pairs)

        h.store.write_events = refusing
    h.element(_batch("a", "b", "c"))
    assert [k for k, _ in h.store.written] == ["a", "c"] and h.held == []
    assert h.counters["redis_events_dropped"] == 1
