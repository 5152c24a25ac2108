"""Scenario: the stack's Redis killed with SIGKILL mid-run and started again some seconds later by
the stack's own code (same data folder, same port). The job runs on without a restart: its events
keep reaching Kafka, the Redis writes held back meanwhile are written once Redis is back. At the end
Kafka and Redis hold exactly the events of an uninterrupted reference run over the same input, by id
and content: none lost, none twice, none unexpected.

What Redis holds at the end includes what it acknowledged before the kill: the job does not rewrite
those (docs/reliability.md: Redis is a view), so they must survive the kill in Redis itself. The
stack's Redis keeps an append-only file; this scenario runs it with ``stack.redis_appendfsync:
always``, so every write is in the file before Redis acknowledges it, and the comparison is of
everything Redis holds, not only what the job wrote after the restart."""

from __future__ import annotations

import os
import signal
import time

import redis
from faults import compare_sinks
from served_runs import reference_run, served_env, settled
from test_job_metrics import _vad_metrics
from test_redis_outage import _failures

from vad.config import load_config
from vad.consumer import read_redis_events
from vad.kafka_clients import ensure_topics
from vadctl import stack

BEFORE = {"rk-cam-a": "Test004"}  # in the topic when the job starts
DURING = {"rk-cam-b": "Test004"}  # streamed while Redis is down
DOWN_S = 8  # Redis stays down at least this long
REDIS_METRICS = ("redis_events_written", "redis_events_held", "redis_retries", "redis_events_dropped")


def test_redis_killed_mid_run_and_back(job_env, ped2, produce, jobs, local_rest, fault_report, tmp_path):
    env = served_env(job_env, "rk", "fault", tmp_path, VAD_JOB__LOCAL_REST_PORT=str(local_rest.port))
    cfg = load_config(env=env)
    ensure_topics(cfg.kafka)
    durable = load_config(env={**env, "VAD_STACK__REDIS_APPENDFSYNC": "always"})
    _kafka, redis_svc = stack.services(cfg)
    stack.stop_process(redis_svc, 30)
    assert stack.up(durable)["redis"] == "started"
    client = redis.Redis(host="127.0.0.1", port=cfg.stack.redis_port, socket_timeout=5)
    try:
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("appendfsync") == {"appendfsync": "always"}
    finally:
        client.close()
    cameras = set(BEFORE) | set(DURING)
    produce(env, {cam: ped2 / "test" / f"{clip}.mp4" for cam, clip in BEFORE.items()})
    job = jobs.start(env)
    try:
        deadline = time.monotonic() + 300
        while not read_redis_events(cfg):
            assert job.poll() is None and time.monotonic() < deadline, f"no events in Redis\n{jobs.logs(job)}"
            time.sleep(0.5)
        in_redis_at_kill = len(read_redis_events(cfg))
        killed_at = time.monotonic()
        os.kill(redis_svc.pid(), signal.SIGKILL)
        while redis_svc.pid() is not None and time.monotonic() < killed_at + 30:
            time.sleep(0.1)
        assert redis_svc.pid() is None, "Redis outlived SIGKILL"
        produce(env, {cam: ped2 / "test" / f"{clip}.mp4" for cam, clip in DURING.items()})
        time.sleep(max(0.0, killed_at + DOWN_S - time.monotonic()))
        assert stack.up(durable)["redis"] == "started"
        down_s = time.monotonic() - killed_at
        kafka, redis_events = settled(cfg, job, jobs, cameras)
        assert _failures(local_rest) == [], "the job failed while Redis was away"
        # The REST API serves metrics its fetcher gathered (every 10 s by default): none at first.
        metrics, until = _vad_metrics(local_rest), time.monotonic() + 60
        while not set(REDIS_METRICS) <= set(metrics) and time.monotonic() < until:
            time.sleep(2)
            metrics = _vad_metrics(local_rest)
    finally:
        jobs.kill(job)
        stack.up(durable)

    want = reference_run(jobs, served_env(job_env, "rk", "ref", tmp_path), cameras)
    result = compare_sinks(fault_report, want, kafka, redis_events)
    fault_report.note(
        redis_down_s=round(down_s, 1),
        redis_events_at_kill=in_redis_at_kill,
        redis_appendfsync="always",
        job_failures=0,
        **{k: int(metrics[k]) for k in REDIS_METRICS if k in metrics},
    )
    assert 0 < in_redis_at_kill < len(want), "the kill should land mid-run"
    assert int(metrics.get("redis_events_held", 0)) > 0, "no write was held back: Redis was not away for the job"
    assert result["kafka"].exact, result["kafka"]
    assert result["redis"].exact, result["redis"]
    assert len(kafka) == len(want), "Kafka redeliveries without a restart"
