"""The typed readers of the job's output, with Kafka and Redis replaced by fakes: records come back as
their classes, and every one is decoded by ``consumer.parse`` (where the integration tests check each
against its published JSON Schema)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from pydantic import ValidationError

from vad import consumer
from vad.config import load_config
from vad.detect import event_id
from vad.records import DeadLetter, Event, ScoreLine
from vad.schema import N_CHANNELS, FrameFeatures


def _event(seq: int, phase: str) -> Event:
    return Event(
        event_id=event_id("c", 1_000, 3),
        camera_id="c",
        phase=phase,
        seq=seq,
        start_frame=3,
        end_frame=3 + seq,
        start_ts_ms=1_000,
        ts_ms=1_000 + seq,
        peak_score=1.5,
        peak_frame=4,
        threshold=1.0,
        heatmap=[[0.5]],
        model_version="v",
        close_reason="idle" if phase == "close" else None,
    )


class _Kafka:
    def __init__(self, topic: str, values: list[str]):
        self.topic, self.values = topic, values

    def poll(self, timeout_ms, max_records):
        out, self.values = self.values, []
        return {"tp": [SimpleNamespace(value=v.encode()) for v in out]} if out else {}

    def close(self):
        pass


@pytest.fixture
def wire(monkeypatch):
    cfg = load_config(env={})
    frame = FrameFeatures("c", 7, 1_800_000_000_000, 360, 240, np.zeros((1, 1, N_CHANNELS), np.float32))
    dead = DeadLetter(reason="truncated", detail="3 bytes", camera_id=None, size=3, payload_b64="", seen_ms=1)
    topics = {
        cfg.kafka.topics.events: [_event(1, "open").to_json(), _event(2, "close").to_json()],
        cfg.kafka.topics.scores: [ScoreLine.join_frames([frame], [0.25])],
        cfg.kafka.topics.dead_letter: [dead.to_json()],
    }
    monkeypatch.setattr(consumer, "make_consumer", lambda _k, topic, **_: _Kafka(topic, list(topics[topic])))

    class Store:
        def __init__(self, _cfg):
            pass

        def cameras(self):
            return ["c"]

        def events(self, _cam):
            return [_event(1, "open").to_json()]

        def close(self):
            pass

    monkeypatch.setattr(consumer, "RedisEventStore", Store)
    seen = []
    parse = consumer.parse
    monkeypatch.setattr(consumer, "parse", lambda kind, text: seen.append(kind) or parse(kind, text))
    return cfg, topics, seen


def test_reads_are_typed_and_each_record_goes_through_parse(wire):
    cfg, _topics, seen = wire
    events = consumer.read_kafka_events(cfg, timeout_s=5)
    assert events == [_event(1, "open"), _event(2, "close")]
    assert consumer.read_redis_events(cfg) == [_event(1, "open")]
    assert [(s.camera_id, s.frame_index, s.score) for s in consumer.read_kafka_scores(cfg, timeout_s=5)] == [
        ("c", 7, 0.25)
    ]
    (dead,) = consumer.read_kafka_dead_letters(cfg, timeout_s=5)
    assert dead.reason == "truncated" and dead.schema_ == "vad.dead-letter/v1"
    assert seen == [Event, Event, Event, ScoreLine, DeadLetter]
    got = consumer.read_events(cfg, timeout_s=5)
    assert consumer.summarise(got) == {
        "kafka": {"events": 2, "episodes": 1, "by_phase": {"open": 1, "close": 1}, "cameras": ["c"]},
        "redis": {"events": 1, "episodes": 1, "by_phase": {"open": 1}, "cameras": ["c"]},
    }


def test_a_record_that_is_not_its_kind_fails_the_read(wire):
    cfg, topics, _seen = wire
    topics[cfg.kafka.topics.events].append(topics[cfg.kafka.topics.scores][0])
    with pytest.raises(ValidationError):
        consumer.read_kafka_events(cfg, timeout_s=5)
