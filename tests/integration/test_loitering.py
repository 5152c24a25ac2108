"""Loitering on the real stack: a camera with a zone (cameras.<id>.zones) where something stays
longer than its min_dwell_s gets a loitering episode (kind loitering, its zone, its own id), in Kafka
and in Redis, beside its motion events; a camera without zones, with the same frames, gets motion
events only, which carry no kind (motion). A camera with learned loitering (cameras.<id>.loitering)
gets one in zone `*` once the stay outlasts the shipped model card's normal dwell times there.

Records are written straight to Kafka with event times a few minutes back; the job is bounded."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from kafka import KafkaProducer
from synthetic_grids import grid_features

from models.card import ModelCard, card_path
from vad.config import load_config
from vad.consumer import read_kafka_events, read_redis_events
from vad.dwell import FG, dwell_event_id
from vad.follow import kind_of
from vad.kafka_clients import ensure_topics
from vad.schema import FrameFeatures

ZONED, PLAIN, LEARNED = "loiter-a", "loiter-b", "loiter-c"
DT, FRAMES = 200, 150  # 30 s of event time
T0 = (int(time.time()) - 600) * 1000
CALM, HOT = grid_features(False), grid_features(True)
STILL = CALM.copy()
STILL[1, 1, FG] = 0.05  # someone standing in the zone: a foreground cue, no flow


def _grid(i: int) -> np.ndarray:
    # Someone stands in the zone from 2 s to 20 s; a burst of motion elsewhere from 24 s to 28 s.
    if 120 <= i < 140:
        return HOT
    return STILL if 10 <= i < 100 else CALM


def test_a_stay_in_a_zone_gives_a_loitering_episode_and_motion_stays_motion(job_env, jobs):
    cams = {
        ZONED: {"zones": {"bench": {"cells": [[1, 1], [1, 2]], "min_dwell_s": 5, "hold_s": 1}}},
        LEARNED: {"loitering": {"factor": 3, "min_dwell_s": 10}},
    }
    env = job_env("loiter", VAD_JOB__BOUNDED="true", VAD_CAMERAS=json.dumps(cams))
    cfg = load_config(env=env)
    assert cfg.cameras[ZONED].zones["bench"].min_dwell_s == 5
    # Nobody stayed in cell (1, 1) of the Ped2 training clips: the 10 s floor is all a stay needs there.
    norms = ModelCard.load(card_path(cfg.resolve(cfg.job.model_path))).dwell
    assert norms.longest_s[1][1] == 0 and max(map(max, norms.longest_s)) > 5
    ensure_topics(cfg.kafka)
    p = KafkaProducer(bootstrap_servers=cfg.kafka.bootstrap_servers)
    for i in range(FRAMES):
        for cam in (ZONED, PLAIN, LEARNED):
            value = FrameFeatures(cam, i, T0 + DT * i, 360, 240, _grid(i)).encode("float16")
            p.send(cfg.kafka.topics.features, key=cam.encode(), value=value, timestamp_ms=T0 + DT * i)
    p.flush()
    p.close()
    job = jobs.start(env)
    try:
        assert job.wait(timeout=600) == 0, jobs.logs(job)
    finally:
        jobs.kill(job)
    events = read_kafka_events(cfg, timeout_s=10)
    loiter = [e for e in events if e.kind == "loitering" and e.camera_id == ZONED]
    summary = [(e.camera_id, e.kind, e.zone, e.phase, e.close_reason, e.start_frame, e.end_frame) for e in events]
    # Opened 5 s into the stay (frame 35), starting at its first frame; closed at its last frame.
    assert [(e.camera_id, e.zone, e.phase, e.close_reason) for e in loiter if e.phase != "update"] == [
        (ZONED, "bench", "open", None),
        (ZONED, "bench", "close", "clear"),
    ], summary
    assert loiter[0].start_frame == 10 and loiter[0].end_frame == 35 and loiter[-1].end_frame == 99, summary
    assert {e.event_id for e in loiter} == {dwell_event_id(ZONED, "bench", T0 + DT * 10, 10)}
    # Both cameras' motion burst is reported as motion, with its own id.
    for cam in (ZONED, PLAIN):
        motion = [e for e in events if e.camera_id == cam and e.kind == "motion"]
        assert [e.phase for e in motion if e.phase != "update"] == ["open", "close"], summary
        assert all(kind_of(e) == "motion" and e.zone is None for e in motion)
        assert not {e.event_id for e in motion} & {e.event_id for e in loiter}
    assert not [e for e in events if e.camera_id == PLAIN and e.kind != "motion"], summary
    # Learned: over 10 s into the stay (frame 60), from its first frame; closed at its last (99).
    learned = [e for e in events if e.camera_id == LEARNED and e.kind == "loitering"]
    assert [(e.zone, e.phase, e.close_reason, e.start_frame, e.end_frame) for e in learned if e.phase != "update"] == [
        ("*", "open", None, 10, 60),
        ("*", "close", "clear", 10, 99),
    ], summary
    assert {e.event_id for e in learned} == {dwell_event_id(LEARNED, "*", T0 + DT * 10, 10)}
    assert learned[-1].threshold == 3 and learned[-1].peak_score == pytest.approx(3 * 17.8 / 10)
    assert learned[-1].heatmap[1][1] == pytest.approx(learned[-1].peak_score, abs=1e-3)
    key = lambda e: (e.event_id, e.seq, e.phase, e.kind, e.zone)  # noqa: E731
    assert sorted(map(key, read_redis_events(cfg))) == sorted(map(key, events))
