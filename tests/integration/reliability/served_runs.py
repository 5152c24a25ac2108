"""What the scenarios share in which the job runs on through a fault (Redis killed, checkpoint
storage unwritable) without a restart: a job's environment, its events once its output has settled,
an uninterrupted reference run over the same features topic (compared with faults.compare_sinks).
Every wait is bounded."""

from __future__ import annotations

import time
from pathlib import Path

from faults import event_key
from test_redis_outage import _events_settled

from vad.config import load_config
from vad.consumer import read_redis_events
from vad.kafka_clients import ensure_topics
from vad.records import Event

SETTLE_WITHIN_S = 300  # a run's events all in Kafka, from its start
REDIS_WITHIN_S = 90  # and in Redis, from then


def served_env(job_env, prefix: str, run: str, tmp: Path, **extra: str) -> dict:
    """A run `run` of scenario `prefix`: its own output topics, Redis prefix and checkpoint folder,
    the scenario's features topic. Episodes close on their score only: an idle close after this
    long without a frame comes from wall time, which differs between two runs."""
    return job_env(
        f"{prefix}.{run}",
        features=f"{prefix}.features",
        VAD_JOB__CHECKPOINT_INTERVAL_MS="1000",
        VAD_JOB__CHECKPOINT_DIR=str(tmp / f"ckpt-{run}"),
        VAD_JOB__IDLE_TIMEOUT_MS="600000",
        **extra,
    )


def settled(cfg, job, jobs, cameras: set[str]) -> tuple[list[Event], list[Event]]:
    """Kafka's and Redis's events once every camera in `cameras` has events in Kafka, no more came
    for a few seconds, and Redis has every one of them (or REDIS_WITHIN_S has passed)."""
    kafka = _events_settled(cfg, job, jobs, cameras, SETTLE_WITHIN_S)
    want, deadline = set(map(event_key, kafka)), time.monotonic() + REDIS_WITHIN_S
    while True:
        redis_events = read_redis_events(cfg)
        if set(map(event_key, redis_events)) >= want or time.monotonic() > deadline:
            return kafka, redis_events
        time.sleep(1)


def reference_run(jobs, env: dict, cameras: set[str]) -> list[Event]:
    """The events of an uninterrupted run over the same topic, every record already there."""
    cfg = load_config(env=env)
    ensure_topics(cfg.kafka)
    job = jobs.start(env)
    try:
        kafka, _redis = settled(cfg, job, jobs, cameras)
    finally:
        jobs.kill(job)
    assert kafka, "the reference run produced no events"
    return list({event_key(e): e for e in kafka}.values())
