"""Downstream reader of the job's output, typed (``vad.records``): anomaly events from the Kafka
events topic and from Redis, score lines and dead letters from their topics."""

from __future__ import annotations

import time
from collections import Counter
from typing import TypeVar

from vad.config import Config
from vad.kafka_clients import make_consumer
from vad.records import DeadLetter, Event, ScoreLine
from vad.redis_store import RedisEventStore

R = TypeVar("R", Event, DeadLetter, ScoreLine)


def parse(kind: type[R], text: str | bytes) -> R:
    """One record's JSON, validated: every record read here is decoded by this function (a test
    session wraps it to check each one against the published JSON Schema too)."""
    return kind.parse(text)


def topic_of(cfg: Config, kind: type[R]) -> str:
    t = cfg.kafka.topics
    return {Event: t.events, DeadLetter: t.dead_letter, ScoreLine: t.scores}[kind]


def read_kafka(
    cfg: Config, kind: type[R], timeout_s: float, expect: int | None = None, topic: str | None = None
) -> list[R]:
    """All records in the topic of ``kind`` (or ``topic``), read committed, waiting up to timeout_s for
    more to arrive (or until ``expect`` records are there)."""
    consumer = make_consumer(cfg.kafka, topic or topic_of(cfg, kind), consumer_timeout_ms=1000)
    out: list[R] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=500, max_records=1000)
            for records in batch.values():
                out.extend(parse(kind, r.value) for r in records)
            if expect is not None and len(out) >= expect:
                break
            if not batch and out and expect is None:
                break  # drained what is there
    finally:
        consumer.close()
    return out


def read_kafka_events(cfg: Config, timeout_s: float, expect: int | None = None) -> list[Event]:
    return read_kafka(cfg, Event, timeout_s, expect)


def read_kafka_scores(cfg: Config, timeout_s: float, expect: int | None = None) -> list[ScoreLine]:
    return read_kafka(cfg, ScoreLine, timeout_s, expect)


def read_kafka_dead_letters(cfg: Config, timeout_s: float, expect: int | None = None) -> list[DeadLetter]:
    return read_kafka(cfg, DeadLetter, timeout_s, expect)


def read_redis_events(cfg: Config) -> list[Event]:
    store = RedisEventStore(cfg.redis)
    try:
        return [parse(Event, e) for cam in store.cameras() for e in store.events(cam)]
    finally:
        store.close()


def read_events(cfg: Config, timeout_s: float = 10.0, expect: int | None = None) -> dict[str, list[Event]]:
    return {"kafka": read_kafka_events(cfg, timeout_s, expect), "redis": read_redis_events(cfg)}


def summarise(got: dict[str, list[Event]]) -> dict:
    def summary(events: list[Event]) -> dict:
        return {
            "events": len(events),
            "episodes": len({e.event_id for e in events}),
            "by_phase": dict(Counter(e.phase for e in events)),
            "cameras": sorted({e.camera_id for e in events}),
        }

    return {src: summary(ev) for src, ev in got.items()}
