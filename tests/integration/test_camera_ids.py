"""Camera ids on the real stack: a record whose id is not legal ("cam\\n", "a/../x") goes to the
dead-letter topic as bad_camera_id while the job scores the records around it, and a legal camera
named like a key of the Redis layout ("recent") gets its events, its state and its index entries
into Redis."""

from __future__ import annotations

import struct
import time

from kafka import KafkaProducer
from synthetic_grids import grid_features

from vad.config import load_config
from vad.consumer import read_kafka_dead_letters, read_kafka_events, read_kafka_scores, read_redis_events
from vad.kafka_clients import ensure_topics
from vad.redis_store import RedisEventStore
from vad.schema import HEADER_SIZE, FrameFeatures

FRAMES = 10
# Now: a broker refuses a message timestamped more than an hour ahead of its clock.
T0 = int(time.time() * 1000)
GOOD = ("ids-ok", "recent")
BAD = ("cam\n", "a/../x")


def _record(camera: str, i: int) -> bytes:
    anomalous = camera == "recent" and 3 <= i < 8
    return FrameFeatures(camera, i, T0 + 100 * i, 360, 240, grid_features(anomalous)).encode("float16")


def _with_camera_id(camera: str, i: int) -> bytes:
    """A valid record with its camera id replaced (the encoder refuses an illegal one)."""
    data, cam = _record("ids-ok", i), camera.encode()
    head = bytearray(data[:HEADER_SIZE])
    struct.pack_into("<H", head, 6, len(cam))
    return bytes(head) + cam + data[HEADER_SIZE + len("ids-ok") :]


def test_illegal_camera_ids_are_dead_lettered_and_the_rest_scored(job_env, jobs):
    env = job_env("ids", VAD_JOB__BOUNDED="true", VAD_JOB__EMIT_SCORES="true")
    cfg = load_config(env=env)
    ensure_topics(cfg.kafka)
    p = KafkaProducer(bootstrap_servers=cfg.kafka.bootstrap_servers)
    for i in range(FRAMES):
        for cam in GOOD:
            p.send(cfg.kafka.topics.features, key=cam.encode(), value=_record(cam, i))
        if i == FRAMES // 2:  # in the middle of the good cameras' streams
            for cam in BAD:
                p.send(cfg.kafka.topics.features, key=cam.encode(), value=_with_camera_id(cam, i))
    p.flush()
    p.close()
    job = jobs.start(env)
    try:
        assert job.wait(timeout=300) == 0, jobs.logs(job)
    finally:
        jobs.kill(job)
    dead = read_kafka_dead_letters(cfg, timeout_s=20, expect=len(BAD))
    assert sorted((d.reason, d.camera_id) for d in dead) == sorted(("bad_camera_id", c) for c in BAD)
    scores = read_kafka_scores(cfg, timeout_s=20, expect=FRAMES * len(GOOD))
    assert {s.camera_id for s in scores} == set(GOOD)
    for cam in GOOD:
        assert sorted(s.frame_index for s in scores if s.camera_id == cam) == list(range(FRAMES))
    key = lambda e: (e.event_id, e.seq, e.phase)  # noqa: E731
    kafka_events = [e for e in read_kafka_events(cfg, timeout_s=10) if e.camera_id == "recent"]
    assert any(e.phase == "open" for e in kafka_events), "the anomalous frames of camera 'recent' made no event"
    assert sorted(map(key, read_redis_events(cfg))) == sorted(map(key, kafka_events))
    # The camera's state and the index of recent events are there too, not only its stream.
    store = RedisEventStore(cfg.redis)
    try:
        assert store.r.type(store.recent_key) == "zset"
        assert {e.event_id for e in kafka_events} <= set(store.r.zrange(store.recent_key, 0, -1))
        assert store.camera_state("recent")["last_event"] == kafka_events[-1].to_json()  # one partition: in order
    finally:
        store.close()
