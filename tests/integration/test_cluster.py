"""The job on a real standalone Flink cluster (one JobManager + one TaskManager, started by the project's
`vad stack up --cluster`): submit it unbounded, see events in Kafka and Redis, stop it with a savepoint,
produce more frames, resume from the savepoint, and get exactly the events of an uninterrupted run of
the same job over the same frames: none lost, none twice, in Kafka (read committed) and in Redis."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from kafka.partitioner.default import murmur2

from vad.config import Config, load_config
from vad.consumer import read_kafka_events, read_redis_events
from vad.kafka_clients import ensure_topics, make_producer
from vad.records import Event
from vad.schema import N_CHANNELS, FrameFeatures
from vadctl import cluster

REPO = Path(__file__).resolve().parents[2]
REST_PORT, RPC_PORT = 28081, 26123
FEATURES = "cl.features"
BEFORE_STOP, AFTER_STOP = ("Test004", "Test002"), ("Test006", "Test001")  # Ped2 test clips
CLIP_SPAN_S = 18  # 180 frames at 10 fps


def _key(e: Event) -> tuple:
    return (e.event_id, e.seq, e.phase, e.start_frame, e.end_frame, e.peak_score)


def _cluster_env(stack_env: dict) -> dict:
    return {**stack_env, "VAD_CLUSTER__REST_ADDRESS": f"127.0.0.1:{REST_PORT}", "VAD_CLUSTER__RPC_PORT": str(RPC_PORT)}


def _job_env(job_env, stack_env: dict, name: str, tmp: Path) -> dict:
    # Topics, group id and Redis prefix of our own: other tests share the broker and Redis.
    return job_env(
        f"cl.{name}",
        features=FEATURES,
        base=_cluster_env(stack_env),
        VAD_JOB__DELIVERY="exactly_once",
        VAD_JOB__CHECKPOINT_INTERVAL_MS="1000",
        VAD_JOB__CHECKPOINT_DIR=str(tmp / f"ckpt-{name}"),
        VAD_JOB__SAVEPOINT_DIR=str(tmp / "savepoints"),
        VAD_JOB__MODEL_PATH=str(tmp / "model" / "model.onnx"),
    )


def _camera_on(partition: int, partitions: int, tag: str) -> str:
    """A camera id the producer's key hash puts on this partition (Kafka's murmur2, as in Java)."""
    return next(
        cam
        for cam in (f"cl-{tag}-{i}" for i in range(1000))
        if (murmur2(cam.encode()) & 0x7FFFFFFF) % partitions == partition
    )


def _produce(env: dict, ped2: Path, cams: list[tuple[str, str]]) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "vadctl.cli", "produce", "--camera", cam, "--source", f"{ped2}/test/{clip}.mp4"],
            env={**os.environ, **env},
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for cam, clip in cams
    ]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read()[-3000:]


def _end_of_input(cfg: Config, ts_ms: int) -> None:
    """One frame per partition, from cameras of its own, far ahead in event time: the watermark then
    passes every idle-close timer, so the unbounded job closes its last episodes as the bounded
    reference does at the end of its input. A lone frame never opens an episode (detect.min_duration_s)."""
    producer = make_producer(cfg.kafka)
    grid = np.zeros((cfg.edge.grid_rows, cfg.edge.grid_cols, N_CHANNELS), np.float32)
    for p in range(cfg.kafka.topics.partitions):
        cam = f"cl-end-{p}"
        rec = FrameFeatures(camera_id=cam, frame_index=0, ts_ms=ts_ms, frame_width=360, frame_height=240, features=grid)
        producer.send(FEATURES, key=cam.encode(), value=rec.encode(), partition=p, timestamp_ms=ts_ms)
    producer.flush(timeout=30)
    producer.close()


@pytest.fixture(scope="module")
def flink_cluster(stack_env, run_vad):
    cfg = load_config(env=_cluster_env(stack_env))
    try:
        up = run_vad("stack", "up", "--cluster", extra_env=_cluster_env(stack_env), timeout=300)
        assert up.returncode == 0, up.stdout + up.stderr[-4000:]
        assert "flink-taskmanager: started" in up.stdout, up.stdout
        again = run_vad("stack", "up", "--cluster", extra_env=_cluster_env(stack_env), timeout=120)
        assert again.returncode == 0 and "flink-jobmanager: already running" in again.stdout, again.stdout
        yield cfg
    finally:
        # Only the cluster: the broker and Redis belong to the session's stack fixture.
        cluster.down(cfg)


def test_stop_with_savepoint_and_resume_gives_exactly_the_uninterrupted_events(
    stack_env, job_env, run_vad, ped2, flink_cluster, tmp_path
):
    timings: dict[str, float] = {}
    t0 = time.monotonic()

    def lap(name: str) -> None:
        timings[name] = round(time.monotonic() - t0, 1)

    def vad(env: dict, *args: str) -> str:
        res = run_vad(*args, extra_env=env, timeout=420)
        assert res.returncode == 0, f"vad {' '.join(args)}:\n{res.stderr[-5000:]}"
        return res.stdout.strip().splitlines()[-1]

    # A copy of the shipped model: every run of this test must score with the same one, even while
    # models/default is retrained (TaskManagers load the model when a job starts).
    shutil.copytree(REPO / "models" / "default", tmp_path / "model")
    run_env, ref_env = _job_env(job_env, stack_env, "run", tmp_path), _job_env(job_env, stack_env, "ref", tmp_path)
    run_cfg, ref_cfg = load_config(env=run_env), load_config(env=ref_env)
    for c in (run_cfg, ref_cfg):
        ensure_topics(c.kafka)
    n = run_cfg.kafka.topics.partitions
    assert n == len(BEFORE_STOP) == len(AFTER_STOP)
    # One camera per partition and phase: a partition's records then come in event-time order, so no
    # frame is late by more than the idle timeout, whatever the interleaving (that would make a run
    # depend on timing, not on its input).
    before_cams = [(_camera_on(p, n, "a"), clip) for p, clip in enumerate(BEFORE_STOP)]
    after_cams = [(_camera_on(p, n, "b"), clip) for p, clip in enumerate(AFTER_STOP)]

    produced_at = time.time()
    _produce(run_env, ped2, before_cams)
    lap("produced before-stop clips")
    job = vad(run_env, "submit", "--wait")
    lap("submitted, tasks running")
    deadline = time.monotonic() + 240
    while not (read_redis_events(run_cfg) and read_kafka_events(run_cfg, timeout_s=2)):
        assert time.monotonic() < deadline, "no events in Redis and Kafka within 240 s"
        assert cluster.job_state(run_cfg, job) == "RUNNING"
        time.sleep(1)
    lap("events in Kafka and Redis")
    savepoint = vad(run_env, "cancel", job, "--savepoint")
    assert cluster.job_state(run_cfg, job) == "FINISHED"
    assert Path(savepoint.removeprefix("file:"), "_metadata").is_file(), savepoint
    lap("stopped with savepoint")
    before = read_kafka_events(run_cfg, timeout_s=10)

    # The second batch must start after the first in event time (the producer stamps wall time).
    time.sleep(max(0.0, produced_at + CLIP_SPAN_S + 6 - time.time()))
    _produce(run_env, ped2, after_cams)
    _end_of_input(run_cfg, int(time.time() * 1000) + 120_000)
    lap("produced after-stop clips")
    # The resumed run and the reference (bounded, uninterrupted, over the same frames) side by side,
    # one slot each; their two client JVMs start at once.
    with ThreadPoolExecutor(2) as pool:
        resuming = pool.submit(vad, run_env, "submit", "--from-savepoint", savepoint)
        ref = pool.submit(vad, {**ref_env, "VAD_JOB__BOUNDED": "true"}, "submit").result()
        resumed = resuming.result()
    lap("resumed + reference submitted")
    cluster.wait_state(ref_cfg, ref, {"FINISHED"}, 300)
    want_events = read_kafka_events(ref_cfg, timeout_s=30)
    want = sorted(map(_key, want_events))
    lap("reference finished")
    read_kafka_events(run_cfg, timeout_s=180, expect=len(want))  # until the resumed run caught up
    time.sleep(3 * run_cfg.job.checkpoint_interval_ms / 1000)  # room for a duplicate to show up
    got = sorted(map(_key, read_kafka_events(run_cfg, timeout_s=30)))
    lap("resumed run caught up")
    assert Path(vad(run_env, "savepoint", resumed).removeprefix("file:"), "_metadata").is_file()
    assert vad(run_env, "cancel", resumed) == f"cancelled {resumed}"
    print(f"\ncluster test timings (s): {timings}; events {len(want)}, before stop {len(before)}")

    cams = {e.camera_id for e in want_events}
    assert want, "the reference run produced no events"
    assert cams & {c for c, _ in before_cams} and cams & {c for c, _ in after_cams}, cams
    assert {e.camera_id for e in before} <= {c for c, _ in before_cams}
    # Every episode closed: the end-of-input frames moved the unbounded run's watermark past them.
    assert {e[0] for e in want} == {e[0] for e in want if e[2] == "close"}
    assert 0 < len(before) < len(want)
    # State crossed the stop: an episode opened before it is continued and closed after it.
    assert {e.event_id for e in before} - {e.event_id for e in before if e.phase == "close"}
    assert got == want
    assert sorted(map(_key, read_redis_events(run_cfg))) == sorted(map(_key, read_redis_events(ref_cfg))) == want
