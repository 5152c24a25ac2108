"""Redis goes away while the job is writing events and comes back: nothing is lost, nothing is
written twice (bounded retries, then a job restart from the last checkpoint and an idempotent replay).
The outage lasts through more than ten restarts: the job must not give up after a fixed count."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from vad.config import load_config
from vad.consumer import read_kafka_events, read_kafka_scores, read_redis_events
from vad.kafka_clients import ensure_topics
from vadctl import stack

REPO = Path(__file__).resolve().parents[2]
RESTARTS = 10


def test_events_survive_a_redis_outage(job_env, ped2, produce, jobs, local_rest):
    env = job_env(
        "ro",
        VAD_REDIS__RETRY_ATTEMPTS="4",
        VAD_JOB__BOUNDED="true",
        VAD_JOB__EMIT_SCORES="true",
        VAD_JOB__CHECKPOINT_INTERVAL_MS="1000",
        # As deployed: restarts for as long as the outage lasts, here with short delays so that
        # many fit in a short outage.
        VAD_JOB__RESTART_ATTEMPTS="0",
        VAD_JOB__RESTART_INITIAL_BACKOFF_MS="200",
        VAD_JOB__RESTART_MAX_BACKOFF_MS="1000",
        VAD_JOB__LOCAL_REST_PORT=str(local_rest.port),
    )
    cfg = load_config(env=env)
    ensure_topics(cfg.kafka)
    produce(env, {cam: ped2 / "test" / f"{clip}.mp4" for cam, clip in {"ro-a": "Test004", "ro-b": "Test002"}.items()})
    _kafka, redis_svc = stack.services(cfg)
    os.kill(redis_svc.pid(), signal.SIGTERM)
    deadline = time.monotonic() + 30
    while redis_svc.pid() is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    job = jobs.start(env)
    try:
        # Redis stays down until the job has scored frames (so events are waiting to be written)
        # and has failed and restarted more than 10 times, then comes back.
        deadline, restarts = time.monotonic() + 300, 0
        while time.monotonic() < deadline and job.poll() is None and restarts <= RESTARTS:
            time.sleep(1)
            restarts = int(local_rest.job_metric("numRestarts") or 0)
        assert job.poll() is None, f"the job gave up during the outage\n{jobs.logs(job)}"
        assert restarts > RESTARTS, f"{restarts} restarts in 300 s"
        assert read_kafka_scores(cfg, timeout_s=5), "nothing scored"
        assert stack.up(cfg)["redis"] == "started"
        assert job.wait(timeout=600) == 0, jobs.logs(job)
    finally:
        jobs.kill(job)
    kafka_events = read_kafka_events(cfg, timeout_s=20)
    redis_events = read_redis_events(cfg)
    key = lambda e: (e.event_id, e.seq, e.phase)  # noqa: E731
    assert kafka_events, "no events: the clips hold anomalies"
    assert sorted(map(key, redis_events)) == sorted(set(map(key, kafka_events)))
    assert len(redis_events) == len({key(e) for e in redis_events})
