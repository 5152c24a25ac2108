"""The Redis writer's handling around the store (the store itself runs against a real Redis in the
integration tests): one pipelined write per batch of events, bounded retries, events passed on."""

from __future__ import annotations

import json

import pytest
import redis

from udfs import redis_sink
from vad.config import RedisConfig


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
    def __init__(self):
        self.group = _Group()

    def get_metrics_group(self):
        return self.group


class _Store:
    transient_errors = (redis.ConnectionError, redis.TimeoutError)

    def __init__(self, cfg, failures=0):
        self.calls, self.failures, self.seen = [], failures, set()

    def write_events(self, events):
        self.calls.append([raw for _e, raw in events])
        if self.failures:
            self.failures -= 1
            raise redis.ConnectionError("down")
        out = []
        for e, _raw in events:
            out.append((e["event_id"], e["seq"]) not in self.seen)
            self.seen.add((e["event_id"], e["seq"]))
        return out

    def close(self):
        pass


def _writer(monkeypatch, failures=0, attempts=3):
    store = _Store(None, failures)
    monkeypatch.setattr(redis_sink, "RedisEventStore", lambda cfg: store)
    w = redis_sink.WriteEventsToRedis(RedisConfig(retry_attempts=attempts, retry_backoff_ms=1))
    rt = _Runtime()
    w.open(rt)
    return w, store, rt.group.counters


def _batch(*ids):
    events = [{"event_id": i, "seq": 1, "camera_id": "c", "phase": "open", "ts_ms": 1} for i in ids]
    return [(e, json.dumps(e)) for e in events]


def test_a_batch_of_events_is_one_write_and_leaves_as_one_record_each(monkeypatch):
    w, store, counters = _writer(monkeypatch)
    out = list(w.flat_map(_batch("a", "b", "c")))
    assert [json.loads(o)["event_id"] for o in out] == ["a", "b", "c"]
    assert len(store.calls) == 1 and len(store.calls[0]) == 3
    list(w.flat_map(_batch("c", "d")))  # a replayed event is counted as a duplicate, still passed on
    assert counters["redis_events_written"].n == 4 and counters["redis_events_duplicate"].n == 1


def test_transient_errors_are_retried_then_fail_the_job(monkeypatch):
    w, store, _ = _writer(monkeypatch, failures=2, attempts=3)
    assert len(list(w.flat_map(_batch("a")))) == 1 and len(store.calls) == 3
    w, store, _ = _writer(monkeypatch, failures=5, attempts=3)
    with pytest.raises(redis.ConnectionError):
        list(w.flat_map(_batch("a")))
    assert len(store.calls) == 3
