"""Downstream reader of anomaly events, from the Kafka events topic and from Redis."""

from __future__ import annotations

import json
import time
from collections import Counter

from vad.config import Config
from vad.kafka_clients import make_consumer
from vad.redis_store import RedisEventStore


def read_kafka_events(cfg: Config, timeout_s: float, expect: int | None = None, topic: str | None = None) -> list[dict]:
    """All events in the topic (read committed), waiting up to timeout_s for more to arrive."""
    consumer = make_consumer(cfg.kafka, topic or cfg.kafka.topics.events, consumer_timeout_ms=1000)
    out: list[dict] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=500, max_records=1000)
            for records in batch.values():
                out.extend(json.loads(r.value) for r in records)
            if expect is not None and len(out) >= expect:
                break
            if not batch and out and expect is None:
                break  # drained what is there
    finally:
        consumer.close()
    return out


def read_redis_events(cfg: Config) -> list[dict]:
    store = RedisEventStore(cfg.redis)
    try:
        return [json.loads(e) for cam in store.cameras() for e in store.events(cam)]
    finally:
        store.close()


def read_events(cfg: Config, timeout_s: float = 10.0, expect: int | None = None) -> dict[str, list[dict]]:
    return {"kafka": read_kafka_events(cfg, timeout_s, expect), "redis": read_redis_events(cfg)}


def summarise(got: dict[str, list[dict]]) -> dict:
    def summary(events: list[dict]) -> dict:
        return {
            "events": len(events),
            "episodes": len({e["event_id"] for e in events}),
            "by_phase": dict(Counter(e["phase"] for e in events)),
            "cameras": sorted({e["camera_id"] for e in events}),
        }

    return {src: summary(ev) for src, ev in got.items()}
