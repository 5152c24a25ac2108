"""Scenario: the job's checkpoint directory becomes unwritable mid-run (replaced by a regular file:
the tests run as root, whom a chmod does not stop, and a small full filesystem needs a mount), then
writable again. The job keeps serving meanwhile, without a restart: a camera streamed during the
outage gets its events in Kafka and Redis (at-least-once delivery, the default: exactly-once output
only becomes visible with a completed checkpoint). Flink counts the failed checkpoints, and
tolerates them (``job.tolerable_checkpoint_failures``; Flink's own default, 0, would fail and restart
the job at the first one); once the directory is back, checkpoints complete again. The events are
those of an uninterrupted reference run: none lost, none twice in Redis, Kafka's distinct events
equal (redeliveries reported)."""

from __future__ import annotations

import time

from faults import compare_sinks
from served_runs import reference_run, served_env, settled
from test_redis_outage import _failures

from vad.config import load_config
from vad.consumer import read_redis_events
from vad.kafka_clients import ensure_topics

BEFORE = {"cs-cam-a": "Test004"}  # in the topic when the job starts
DURING = {"cs-cam-b": "Test004"}  # streamed while the checkpoint directory is unwritable
OUTAGE_MIN_S = 15  # the directory stays a file at least this long (checkpoints every second)
# Flink's REST API serves checkpoint statistics from a copy of the job refreshed every
# web.refresh-interval (3 s by default): counts read sooner than that after the break can still
# miss a checkpoint that completed just before it, which then looks completed during the outage.
REST_CACHE_S = 4.0


def _counts(local_rest) -> dict:
    """The job's checkpoint counts (completed, failed, ...) at once, from its checkpoint statistics."""
    job_id = local_rest.job_id()
    assert job_id is not None, "the job's REST API does not answer"
    return local_rest.get(f"/jobs/{job_id}/checkpoints")["counts"]


def _until(what: str, ok, job, jobs, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while not ok():
        assert job.poll() is None, f"the job died\n{jobs.logs(job)}"
        assert time.monotonic() < deadline, f"{what}: not within {within_s} s\n{jobs.logs(job)}"
        time.sleep(0.5)


def test_checkpoint_dir_unwritable_mid_run(job_env, ped2, produce, jobs, local_rest, fault_report, tmp_path):
    env = served_env(job_env, "cs", "fault", tmp_path, VAD_JOB__LOCAL_REST_PORT=str(local_rest.port))
    cfg = load_config(env=env)
    ensure_topics(cfg.kafka)
    tolerated = cfg.job.tolerable_checkpoint_failures
    ckpt, away = tmp_path / "ckpt-fault", tmp_path / "ckpt-fault.away"
    cameras = set(BEFORE) | set(DURING)
    produce(env, {cam: ped2 / "test" / f"{clip}.mp4" for cam, clip in BEFORE.items()})
    job = jobs.start(env)
    try:
        _until("events in Redis", lambda: read_redis_events(cfg), job, jobs, 300)
        _until("a completed checkpoint", lambda: _counts(local_rest)["completed"] > 0, job, jobs, 120)
        ckpt.rename(away)
        ckpt.write_text("not a directory: no checkpoint can be written under it\n")
        broken_at = time.monotonic()
        time.sleep(REST_CACHE_S)
        at_break = _counts(local_rest)
        produce(env, {cam: ped2 / "test" / f"{clip}.mp4" for cam, clip in DURING.items()})
        kafka_in_outage, redis_in_outage = settled(cfg, job, jobs, cameras)
        _until("failed checkpoints", lambda: _counts(local_rest)["failed"] >= at_break["failed"] + 3, job, jobs, 60)
        time.sleep(max(0.0, broken_at + OUTAGE_MIN_S - time.monotonic()))
        assert _failures(local_rest) == [], "the job failed while its checkpoints did"
        # Flink's own count, as a metric reporter sees it (the REST API fetches metrics every few s).
        _until(
            "numberOfFailedCheckpoints",
            lambda: int(local_rest.job_metric("numberOfFailedCheckpoints") or 0) >= at_break["failed"] + 3,
            job,
            jobs,
            30,
        )
        metric_failed = int(local_rest.job_metric("numberOfFailedCheckpoints"))
        in_outage = _counts(local_rest)
        ckpt.unlink()
        away.rename(ckpt)
        outage_s = time.monotonic() - broken_at
        _until(
            "a completed checkpoint after the outage",
            lambda: _counts(local_rest)["completed"] > in_outage["completed"],
            job,
            jobs,
            60,
        )
        after = _counts(local_rest)
        kafka, redis_events = settled(cfg, job, jobs, cameras)
        assert _failures(local_rest) == [], "the job failed"
    finally:
        jobs.kill(job)
        if not ckpt.is_dir():
            ckpt.unlink(missing_ok=True)
            away.rename(ckpt)

    want = reference_run(jobs, served_env(job_env, "cs", "ref", tmp_path), cameras)
    result = compare_sinks(fault_report, want, kafka, redis_events)
    failed = in_outage["failed"] - at_break["failed"]
    fault_report.note(
        outage_s=round(outage_s, 1),
        checkpoints_failed_in_outage=failed,
        checkpoints_completed_in_outage=in_outage["completed"] - at_break["completed"],
        number_of_failed_checkpoints_metric=metric_failed,
        tolerable_checkpoint_failures=tolerated,
        events_served_in_outage={
            "kafka": sum(e.camera_id in DURING for e in kafka_in_outage),
            "redis": sum(e.camera_id in DURING for e in redis_in_outage),
        },
        job_failures=0,
    )
    assert 3 <= failed <= tolerated
    assert in_outage["completed"] == at_break["completed"], "a checkpoint completed without its directory"
    assert after["completed"] > in_outage["completed"]
    # Served during the outage: the camera streamed meanwhile has its events in both sinks.
    assert set(DURING) <= {e.camera_id for e in kafka_in_outage} & {e.camera_id for e in redis_in_outage}
    assert result["kafka"].exact, result["kafka"]
    assert result["redis"].exact, result["redis"]
