"""A camera's schedule on the real stack, in event time: a camera disabled for a minute of its own
local time (cameras.<id>.timezone) has its open episode closed when that minute starts (close_reason
schedule) and none opened inside it, while an unscheduled camera with the same frames alerts there;
its frames are still scored. The same records read again by a second job (another group, topics and
Redis prefix over the same features topic) give the same events, ids included.

Records are written straight to Kafka with event times chosen half an hour back (well within the
broker's retention), so the window is the test's to place; the jobs are bounded."""

from __future__ import annotations

import time
from datetime import datetime
from zoneinfo import ZoneInfo

from kafka import KafkaProducer
from synthetic_grids import grid_features

from vad.config import load_config
from vad.config.schedule import DAYS
from vad.consumer import read_kafka_events, read_kafka_scores, read_redis_events
from vad.kafka_clients import ensure_topics
from vad.records import Event
from vad.schema import FrameFeatures

CALM, HOT = grid_features(False), grid_features(True)
SCHEDULED, PLAIN = "sched-a", "sched-b"
# Half an hour offset from UTC: a window computed in UTC or the machine's zone would miss the frames.
TZ = "Asia/Kolkata"
DT = 500  # ms between frames
FRAMES = 300  # 150 s of event time
# A minute boundary of event time (also one in Kolkata, UTC+05:30) half an hour back.
T0 = (int(time.time()) // 60 - 30) * 60_000
OFF_FROM, OFF_UNTIL = T0 + 60_000, T0 + 120_000  # the camera is disabled here


def _hot(ts: int) -> bool:
    # An anomaly from 50 s to 100 s (into the disabled minute), and another from 130 s to 140 s.
    return T0 + 50_000 <= ts < T0 + 100_000 or T0 + 130_000 <= ts < T0 + 140_000


def _rule() -> str:
    local = [datetime.fromtimestamp(t / 1000, ZoneInfo(TZ)) for t in (OFF_FROM, OFF_UNTIL)]
    start, end = (f"{d:%H:%M}" for d in local)
    day = DAYS[local[0].weekday()]
    return f'{{days: [{day}], start: "{start}", end: "{end}", enabled: false}}'


def _run_job(jobs, env) -> list[Event]:
    ensure_topics(load_config(env=env).kafka)  # the broker creates no topic by itself
    job = jobs.start(env)
    try:
        assert job.wait(timeout=600) == 0, jobs.logs(job)
    finally:
        jobs.kill(job)
    return read_kafka_events(load_config(env=env), timeout_s=10)


def _episodes(events: list[Event], cam: str) -> list[tuple]:
    return [(e.phase, e.close_reason, e.start_ts_ms - T0, e.ts_ms - T0) for e in events if e.camera_id == cam]


def test_a_disabled_window_closes_and_suppresses_episodes_and_a_replay_gives_the_same(job_env, jobs):
    cams = f"{{{SCHEDULED}: {{timezone: {TZ}, schedule: [{_rule()}]}}}}"
    env = job_env("sched1", VAD_JOB__BOUNDED="true", VAD_JOB__EMIT_SCORES="true", VAD_CAMERAS=cams)
    cfg = load_config(env=env)
    assert cfg.cameras[SCHEDULED].schedule[0].enabled is False
    ensure_topics(cfg.kafka)
    p = KafkaProducer(bootstrap_servers=cfg.kafka.bootstrap_servers)
    for i in range(FRAMES):
        ts = T0 + DT * i
        for cam in (SCHEDULED, PLAIN):
            value = FrameFeatures(cam, i, ts, 360, 240, HOT if _hot(ts) else CALM).encode("float16")
            p.send(cfg.kafka.topics.features, key=cam.encode(), value=value, timestamp_ms=ts)
    p.flush()
    p.close()

    first = _run_job(jobs, env)
    mine = [e for e in first if e.camera_id == SCHEDULED and e.phase != "update"]
    summary = _episodes(mine, SCHEDULED)
    # Opened at 50 s, closed by the schedule at its last frame before the window, none inside it,
    # the second anomaly opened after it.
    assert [(e.phase, e.close_reason) for e in mine] == [
        ("open", None),
        ("close", "schedule"),
        ("open", None),
        ("close", "score"),
    ], summary
    assert mine[1].ts_ms == OFF_FROM - DT and mine[1].end_frame == (OFF_FROM - DT - T0) // DT, summary
    assert not [e for e in mine if e.phase == "open" and OFF_FROM <= e.start_ts_ms < OFF_UNTIL], summary
    assert T0 + 130_000 <= mine[2].start_ts_ms < T0 + 135_000, summary
    # The same frames without a schedule: one episode from 50 s to 100 s, through the window.
    plain = [e for e in first if e.camera_id == PLAIN and e.phase != "update"]
    assert [(e.phase, e.close_reason) for e in plain][:2] == [("open", None), ("close", "score")]
    assert T0 + 50_000 <= plain[0].start_ts_ms < OFF_FROM and plain[1].ts_ms >= T0 + 99_500, _episodes(plain, PLAIN)
    # Frames in the disabled window are still scored.
    scores = read_kafka_scores(cfg, timeout_s=20, expect=2 * FRAMES)
    assert sorted(s.frame_index for s in scores if s.camera_id == SCHEDULED) == list(range(FRAMES))
    key = lambda e: (e.event_id, e.seq, e.phase)  # noqa: E731
    assert sorted(map(key, read_redis_events(cfg))) == sorted(map(key, first))

    # A replay: a second job, its own group, output topics and Redis prefix, the same features topic.
    again = _run_job(jobs, job_env("sched2", features=cfg.kafka.topics.features, **_keep(env)))
    full = lambda evs: sorted((e.event_id, e.seq, e.phase, e.close_reason, e.end_frame, e.ts_ms) for e in evs)  # noqa: E731
    assert full(again) == full(first)


def _keep(env: dict[str, str]) -> dict[str, str]:
    return {k: env[k] for k in ("VAD_JOB__BOUNDED", "VAD_JOB__EMIT_SCORES", "VAD_CAMERAS")}
