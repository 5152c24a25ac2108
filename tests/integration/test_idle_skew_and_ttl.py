"""Idle closes on the real stack, decided by each camera's own stream:

- a camera whose event time trails its partition's (the watermark, which another camera on that
  partition drives) by more than job.idle_timeout_ms keeps its episode open while it streams, and
  has it closed as idle once it stops;
- when every camera falls silent (no record, so the watermark stalls), an open episode still gets
  its close event, in Kafka and in Redis, within a state TTL as short as the config allows.

Records are written straight to Kafka (vad.schema FrameFeatures, the Kafka timestamp set to the
frame's time as the edge does), so each camera's event time is the test's to choose."""

from __future__ import annotations

import time

import numpy as np
from kafka import KafkaProducer
from synthetic_grids import grid_features

from vad.config import load_config
from vad.consumer import read_kafka_events, read_kafka_scores, read_redis_events
from vad.kafka_clients import ensure_topics
from vad.records import Event
from vad.redis_store import RedisEventStore
from vad.schema import FrameFeatures

CALM, HOT = grid_features(False), grid_features(True)


def _send(p: KafkaProducer, topic: str, cam: str, i: int, ts: int, feats: np.ndarray, partition: int) -> None:
    value = FrameFeatures(cam, i, ts, 360, 240, feats).encode("float16")
    p.send(topic, key=cam.encode(), value=value, timestamp_ms=ts, partition=partition)


def _redis_view(cfg, cams, want: list[Event], timeout_s: float = 30) -> tuple[list[Event], dict]:
    """The cameras' events and states in Redis once they hold ``want`` (the writer is a task of its
    own, a little behind Kafka), or as they are at the timeout."""
    key = lambda e: (e.event_id, e.seq, e.phase)  # noqa: E731
    deadline = time.monotonic() + timeout_s
    while True:
        events = [e for e in read_redis_events(cfg) if e.camera_id in cams]
        if sorted(map(key, events)) == sorted(map(key, want)) or time.monotonic() > deadline:
            break
        time.sleep(1)
    store = RedisEventStore(cfg.redis)
    try:
        return events, {cam: store.camera_state(cam).get("state") for cam in cams}
    finally:
        store.close()


def _summary(events: list[Event]) -> list[tuple]:
    return [(e.event_id[:6], e.phase, e.close_reason, e.end_frame) for e in events if e.phase != "update"]


def test_a_camera_behind_its_partitions_watermark_is_not_closed_while_it_streams(job_env, jobs):
    ahead, behind, skew_ms, idle_ms = "skew-ahead", "skew-behind", 30_000, 2000
    env = job_env("skew", VAD_JOB__IDLE_TIMEOUT_MS=str(idle_ms), VAD_JOB__EMIT_SCORES="true")
    cfg = load_config(env=env)
    ensure_topics(cfg.kafka)
    topic = cfg.kafka.topics.features
    p = KafkaProducer(bootstrap_servers=cfg.kafka.bootstrap_servers, linger_ms=5)
    job = jobs.start(env)
    try:
        # The job reads the live stream: "ahead" (calm, its time now) streams until it is scored.
        n_ahead, deadline = 0, time.monotonic() + 300
        while not any(s.camera_id == ahead for s in read_kafka_scores(cfg, timeout_s=1)):
            assert time.monotonic() < deadline, f"the job scored nothing\n{jobs.logs(job)}"
            assert job.poll() is None, f"the job died\n{jobs.logs(job)}"
            for _ in range(10):
                _send(p, topic, ahead, n_ahead, int(time.time() * 1000), CALM, 0)
                n_ahead += 1
                time.sleep(0.1)
            p.flush()
        # Both on partition 0, 10 frames/s for 12 s: "behind" anomalous throughout, its clock 30 s
        # back, so the partition's watermark passes its last frame + idle_ms all along.
        n_behind = 0
        for _ in range(120):
            now = int(time.time() * 1000)
            _send(p, topic, ahead, n_ahead, now, CALM, 0)
            _send(p, topic, behind, n_behind, now - skew_ms, HOT, 0)
            n_ahead, n_behind = n_ahead + 1, n_behind + 1
            p.flush()
            time.sleep(0.1)
        # "behind" stops; "ahead" goes on a little, then the behind's close should be there.
        for _ in range(40):
            _send(p, topic, ahead, n_ahead, int(time.time() * 1000), CALM, 0)
            n_ahead += 1
            time.sleep(0.1)
        p.flush()
        mine, deadline = [], time.monotonic() + 60
        while time.monotonic() < deadline and not any(e.phase == "close" for e in mine):
            assert job.poll() is None, f"the job died\n{jobs.logs(job)}"
            mine = [e for e in read_kafka_events(cfg, timeout_s=3) if e.camera_id == behind]
        redis, states = _redis_view(cfg, [behind], mine)
    finally:
        p.close()
        jobs.kill(job)
    # One episode for the whole stream: opened once, closed once, as idle, at its last frame.
    assert [(e.phase, e.close_reason) for e in mine if e.phase != "update"] == [("open", None), ("close", "idle")], (
        _summary(mine)
    )
    assert len({e.event_id for e in mine}) == 1 and mine[-1].end_frame == n_behind - 1
    assert not [e for e in read_kafka_events(cfg, timeout_s=3) if e.camera_id == ahead]
    assert [(e.event_id, e.seq) for e in redis] == [(e.event_id, e.seq) for e in mine]
    assert states == {behind: "normal"}


def test_every_camera_silent_still_closes_open_episodes_before_the_state_ttl(job_env, jobs):
    cams = {"ttl-a": 0, "ttl-b": 1}  # one on each partition: both partitions fall silent
    frames, t0 = 30, int(time.time() * 1000)
    # The shortest TTL the config takes with this idle timeout (idle + 30 s, rounded up to 60 s).
    env = job_env("ttl", VAD_JOB__IDLE_TIMEOUT_MS="3000", VAD_JOB__STATE_TTL_S="60")
    cfg = load_config(env=env)
    ensure_topics(cfg.kafka)
    p = KafkaProducer(bootstrap_servers=cfg.kafka.bootstrap_servers)
    for i in range(frames):
        for cam, partition in cams.items():
            _send(p, cfg.kafka.topics.features, cam, i, t0 + 100 * i, HOT if i >= 3 else CALM, partition)
    p.flush()
    p.close()
    # Nothing is sent after these: the watermark never passes the last frames' time again.
    job = jobs.start(env)
    try:
        events, deadline = [], time.monotonic() + 240
        while time.monotonic() < deadline:
            assert job.poll() is None, f"the job died\n{jobs.logs(job)}"
            events = read_kafka_events(cfg, timeout_s=3)
            if {e.camera_id for e in events if e.phase == "close"} == set(cams):
                break
            time.sleep(1)
        redis, states = _redis_view(cfg, cams, events)
    finally:
        jobs.kill(job)
    for cam in cams:
        mine = [e for e in events if e.camera_id == cam]
        assert any(e.phase == "open" for e in mine), f"{cam}: no episode opened: {_summary(mine)}"
        closes = [e for e in mine if e.phase == "close"]
        assert len(closes) == 1, f"{cam}: the open episode was never closed: {_summary(mine)}"
        assert closes[0].close_reason == "idle" and closes[0].end_frame == frames - 1
        assert closes[0].ts_ms == t0 + 100 * (frames - 1)
    assert states == dict.fromkeys(cams, "normal"), states
    key = lambda e: (e.event_id, e.seq, e.phase)  # noqa: E731
    assert sorted(map(key, redis)) == sorted(map(key, events))
