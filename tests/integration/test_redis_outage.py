"""Redis is a view of the events topic: while it is away the job's events keep reaching Kafka, the
job runs on without a restart, and once Redis is back its view converges to Kafka's events — every
event once, each camera's state that of its last event (udfs/redis_sink.py).

Two outages: Redis stopped before the job starts (connections refused), and Redis hung while the
job runs (SIGSTOP: connections accepted, nothing answered, every call waits for its timeout), the
case where a writer that waits for Redis would hold everything behind it."""

from __future__ import annotations

import os
import signal
import time

from vad.config import load_config
from vad.consumer import read_kafka_events, read_redis_events
from vad.kafka_clients import ensure_topics
from vad.redis_store import RedisEventStore
from vadctl import stack

KAFKA_WITHIN_S = 180  # events in Kafka, Redis away, from the job's start
CONVERGE_WITHIN_S = 60  # Redis's view equal to Kafka's, from Redis's return


def _key(e):
    return e.event_id, e.seq, e.phase


def _env(job_env, name, local_rest, **extra):
    return job_env(
        name,
        **extra,
        VAD_JOB__CHECKPOINT_INTERVAL_MS="1000",
        VAD_JOB__LOCAL_REST_PORT=str(local_rest.port),
        # As deployed: a job that failed on Redis would restart for as long as the outage lasts.
        VAD_JOB__RESTART_ATTEMPTS="0",
        VAD_JOB__RESTART_INITIAL_BACKOFF_MS="200",
        VAD_JOB__RESTART_MAX_BACKOFF_MS="1000",
    )


def _failures(local_rest) -> list[str]:
    """The job's failures so far (each one restarted it), from its exception history: at once, unlike
    the numRestarts metric, which the REST API fetches every few seconds."""
    job_id = local_rest.job_id()
    assert job_id is not None, "the job's REST API does not answer"
    entries = local_rest.get(f"/jobs/{job_id}/exceptions")["exceptionHistory"]["entries"]
    return [e["exceptionName"] for e in entries]


def _events_settled(cfg, job, jobs, cameras: set[str], within_s: float) -> list:
    """Kafka's events once every camera in `cameras` has some and no more came for a few seconds."""
    deadline, seen, still_since = time.monotonic() + within_s, [], None
    while True:
        assert job.poll() is None, f"the job died\n{jobs.logs(job)}"
        now = read_kafka_events(cfg, timeout_s=3)
        if len(now) != len(seen):
            seen, still_since = now, time.monotonic()
        elif cameras <= {e.camera_id for e in seen} and time.monotonic() - still_since > 8:
            return seen
        assert time.monotonic() < deadline, (
            f"events of {sorted(cameras)} not all in Kafka within {within_s} s with Redis away: "
            f"{len(seen)} events of {sorted({e.camera_id for e in seen})}\n{jobs.logs(job)}"
        )
        time.sleep(1)


def _redis_converges(cfg, kafka_events, within_s: float) -> None:
    want = sorted(set(map(_key, kafka_events)))
    last = {}
    for e in kafka_events:  # in order per camera: one partition each
        last[e.camera_id] = e
    deadline, got = time.monotonic() + within_s, []
    while time.monotonic() < deadline:
        got = read_redis_events(cfg)
        if sorted(map(_key, got)) == want:
            break
        time.sleep(1)
    assert sorted(map(_key, got)) == want, f"Redis has {len(got)} of Kafka's {len(want)} events"
    store = RedisEventStore(cfg.redis)
    try:
        for cam, e in last.items():
            st = store.camera_state(cam)
            assert (st["last_event_id"], st["last_phase"]) == (e.event_id, e.phase), (cam, st)
            assert st["state"] == ("normal" if e.phase == "close" else "anomaly")
    finally:
        store.close()


def test_redis_stopped_before_the_run(job_env, ped2, produce, jobs, local_rest):
    env = _env(job_env, "ro-stopped", local_rest)
    cfg = load_config(env=env)
    ensure_topics(cfg.kafka)
    cams = {"ro-stopped-a": "Test004", "ro-stopped-b": "Test002"}
    produce(env, {cam: ped2 / "test" / f"{clip}.mp4" for cam, clip in cams.items()})
    _kafka, redis_svc = stack.services(cfg)
    os.kill(redis_svc.pid(), signal.SIGTERM)
    deadline = time.monotonic() + 30
    while redis_svc.pid() is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    job = None
    try:
        job = jobs.start(env)
        kafka_events = _events_settled(cfg, job, jobs, {"ro-stopped-a"}, KAFKA_WITHIN_S)
        assert _failures(local_rest) == [], "the job failed on Redis"
        assert stack.up(cfg)["redis"] == "started"
        _redis_converges(cfg, kafka_events, CONVERGE_WITHIN_S)
        assert job.poll() is None and _failures(local_rest) == [], jobs.logs(job)
    finally:
        if job is not None:
            jobs.kill(job)
        stack.up(cfg)
    assert len(read_redis_events(cfg)) == len(set(map(_key, read_redis_events(cfg))))


def test_redis_hung_during_the_run(job_env, ped2, produce, jobs, local_rest):
    # Two subtasks, a camera on each (shards 0 and 1): the writer keyed by shard in each subtask.
    env = _env(job_env, "ro-hung", local_rest, VAD_JOB__PARALLELISM="2")
    cfg = load_config(env=env)
    ensure_topics(cfg.kafka)
    _kafka, redis_svc = stack.services(cfg)
    job, stopped = None, None
    try:
        produce(env, {"ro-hung-a": ped2 / "test" / "Test004.mp4"})
        job = jobs.start(env)
        deadline = time.monotonic() + KAFKA_WITHIN_S
        while not read_redis_events(cfg):
            assert job.poll() is None and time.monotonic() < deadline, f"no events in Redis\n{jobs.logs(job)}"
            time.sleep(1)
        # Redis hangs while the job runs, and a second camera streams an anomalous clip meanwhile.
        stopped = redis_svc.pid()
        os.kill(stopped, signal.SIGSTOP)
        produce(env, {"ro-hung-d": ped2 / "test" / "Test004.mp4"})
        kafka_events = _events_settled(cfg, job, jobs, {"ro-hung-a", "ro-hung-d"}, KAFKA_WITHIN_S)
        assert _failures(local_rest) == [], "the job failed on Redis"
        os.kill(stopped, signal.SIGCONT)
        stopped = None
        _redis_converges(cfg, kafka_events, CONVERGE_WITHIN_S)
        assert job.poll() is None and _failures(local_rest) == [], jobs.logs(job)
    finally:
        if stopped is not None:
            os.kill(stopped, signal.SIGCONT)
        if job is not None:
            jobs.kill(job)
