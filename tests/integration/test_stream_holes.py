"""A hole in a camera's stream that the edge could not flag, on the real stack: records written
straight to Kafka with frames 60-69 missing and no GAP flag on frame 70 (as after a delivery failure
the Kafka client reported late). The job takes the skipped index as a gap: the episode open across
it closes at frame 59 (reason ``gap``) and a new one starts after the hole, instead of one episode
scored across it."""

from __future__ import annotations

import time

from kafka import KafkaProducer
from synthetic_grids import grid_features

from vad.config import load_config
from vad.consumer import read_kafka_events
from vad.kafka_clients import ensure_topics
from vad.schema import FLAG_GAP, FrameFeatures

HOT = grid_features(True)
CAMERA = "hole-cam"
MISSING = range(60, 70)


def test_a_skipped_index_closes_the_episode_and_starts_afresh(job_env, jobs):
    env = job_env("holes", VAD_DETECT__COOLDOWN_S="0", VAD_JOB__IDLE_TIMEOUT_MS="3000")
    cfg = load_config(env=env)
    ensure_topics(cfg.kafka)
    p = KafkaProducer(bootstrap_servers=cfg.kafka.bootstrap_servers, linger_ms=5)
    t0 = int(time.time() * 1000)
    job = jobs.start(env)
    try:
        for i in (i for i in range(120) if i not in MISSING):
            value = FrameFeatures(CAMERA, i, t0 + 100 * i, 360, 240, HOT, FLAG_GAP if i == 0 else 0).encode("float16")
            p.send(cfg.kafka.topics.features, key=CAMERA.encode(), value=value, timestamp_ms=t0 + 100 * i)
        p.flush(timeout=30)
        deadline, events = time.monotonic() + 300, []
        while time.monotonic() < deadline:
            assert job.poll() is None, f"the job died\n{jobs.logs(job)}"
            events = [e for e in read_kafka_events(cfg, timeout_s=3) if e.camera_id == CAMERA]
            if sum(e.phase == "close" for e in events) >= 2:
                break
            time.sleep(2)
    finally:
        jobs.kill(job)
        p.close(timeout=10)
    summary = [(e.phase, e.start_frame, e.close_reason, e.end_frame) for e in events if e.phase != "update"]
    opens = [e for e in events if e.phase == "open"]
    closes = [e for e in events if e.phase == "close"]
    assert len(opens) == 2 and len(closes) == 2, summary
    assert (closes[0].close_reason, closes[0].end_frame) == ("gap", 59), summary
    assert opens[0].start_frame < 60 <= 70 <= opens[1].start_frame, summary
    assert opens[0].event_id != opens[1].event_id and closes[1].close_reason == "idle", summary
