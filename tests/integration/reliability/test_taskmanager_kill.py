"""A TaskManager killed with SIGKILL (its process group: the JVM and its Python workers, as when its
machine dies) on the standalone cluster of `vad stack up --cluster` with two TaskManagers of one slot
each, the exactly-once job at parallelism 2 (one subtask on each). The job fails over; the test
starts a TaskManager again (one slot is left, the job needs two) and the job restores from its last
checkpoint and runs on. Kafka (read committed) and Redis then hold exactly the events of an
uninterrupted run of the same input: none lost, none twice, none unexpected."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from faults import compare_sinks
from restore_runs import (
    CLIPS,
    committed_scores_reach,
    first_event_while,
    open_episodes,
    prepare_runs,
    produce_clips_live,
    reference_events,
    running_job_id,
)
from test_exactly_once import CalmTails

from vad.config import load_config
from vad.consumer import read_kafka_events, read_kafka_scores, read_redis_events
from vadctl import cluster

_OFFSET = int(os.environ.get("VAD_TEST_PORT_OFFSET", "0"))
REST_PORT, RPC_PORT = 28081 + _OFFSET, 26123 + _OFFSET
FEATURES = "tk.features"
TAIL = 300  # calm frames per camera after its clip: every episode closes


def _cluster_env(stack_env: dict) -> dict:
    return {
        **stack_env,
        "VAD_CLUSTER__REST_ADDRESS": f"127.0.0.1:{REST_PORT}",
        "VAD_CLUSTER__RPC_PORT": str(RPC_PORT),
        "VAD_CLUSTER__TASK_SLOTS": "1",
    }


def _env(job_env, stack_env: dict, name: str, tmp: Path, **extra: str) -> dict:
    return job_env(
        f"tk.{name}",
        features=FEATURES,
        base={**os.environ, **_cluster_env(stack_env)},
        VAD_JOB__PARALLELISM="2",
        VAD_JOB__DELIVERY="exactly_once",
        VAD_JOB__EMIT_SCORES="true",
        VAD_JOB__CHECKPOINT_INTERVAL_MS="1000",
        VAD_JOB__CHECKPOINT_DIR=str(tmp / f"ckpt-{name}"),
        VAD_JOB__MODEL_PATH=str(tmp / "model" / "model.onnx"),
        VAD_JOB__IDLE_TIMEOUT_MS="600000",  # episodes close on their score (test_exactly_once)
        # Deploying to the dead TaskManager fails until the JobManager has noticed it is gone.
        VAD_JOB__RESTART_ATTEMPTS="30",
        **extra,
    )


def _start_taskmanager(cfg) -> int:
    """One more TaskManager (Flink's script starts another instance beside a running one), in a
    process group of its own; returns that group's id."""
    p = subprocess.run(
        ["bash", str(cluster.flink_home(cfg) / "bin" / "taskmanager.sh"), "start"],
        env=cluster._daemon_env(cfg),
        cwd=cluster.cluster_dir(cfg),
        capture_output=True,
        text=True,
        timeout=120,
        start_new_session=True,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    pid = int(cluster.daemons(cfg)[1].pid_file.read_text().split()[-1])
    return os.getpgid(pid)


def _taskmanagers(cfg, n: int, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while cluster.rest(cfg, "GET", "/overview")["taskmanagers"] != n:
        assert time.monotonic() < deadline, f"not {n} TaskManagers in {timeout_s} s"
        time.sleep(0.5)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture
def two_taskmanagers(stack_env):
    cfg = load_config(env=_cluster_env(stack_env))
    groups: list[int] = []
    try:
        cluster.up(cfg)
        groups.append(_start_taskmanager(cfg))
        _taskmanagers(cfg, 2)
        yield cfg, groups
    finally:
        # The test's TaskManagers first: down() stops the one up() started (the pid file's last live pid).
        for g in groups:
            _kill_group(g)
        time.sleep(1)
        cluster.down(cfg)


def test_taskmanager_killed_gives_exactly_the_uninterrupted_events(
    stack_env, job_env, produce, ped2, jobs, run_vad, two_taskmanagers, fault_report, tmp_path
):
    ccfg, groups = two_taskmanagers
    env, ref_env = _env(job_env, stack_env, "run", tmp_path), _env(job_env, stack_env, "ref", tmp_path)
    cfg, _ = prepare_runs(env, ref_env, tmp_path)

    sub = run_vad("submit", "--wait", extra_env=env, timeout=420)
    assert sub.returncode == 0, sub.stderr[-5000:]
    job_id = sub.stdout.strip().splitlines()[-1]
    t0 = time.monotonic()
    try:
        # The clips at their frame rate while the job runs: it is killed with episodes open.
        with ThreadPoolExecutor(1) as pool:
            producing = pool.submit(produce_clips_live, produce, {**env, "VAD_EDGE__REALTIME": "true"}, ped2)
            first_event_while(cfg, CLIPS, producing, alive=lambda: cluster.job_state(ccfg, job_id) == "RUNNING")
            busy = [tm for tm in cluster.rest(ccfg, "GET", "/taskmanagers")["taskmanagers"] if tm["freeSlots"] == 0]
            assert len(busy) == 2, "the job should run a subtask on each TaskManager"
            _kill_group(groups[0])
            killed_at, clips_done_at_kill = time.monotonic(), producing.done()
            scored_at_kill, open_at_kill = len(read_kafka_scores(cfg, timeout_s=3)), open_episodes(cfg)
            _taskmanagers(ccfg, 1, timeout_s=120)
            noticed_s = round(time.monotonic() - killed_at, 1)
            groups.append(_start_taskmanager(ccfg))
            assert running_job_id(ccfg, time.monotonic() + 300) == job_id
            recovered_s = round(time.monotonic() - killed_at, 1)
            counts, last_ts = producing.result()
        tails = CalmTails(cfg, counts, last_ts, length=TAIL, fps=1000)
        tails.run()
        assert tails.error is None, tails.error
        frames = sum(counts.values()) + TAIL * len(counts)
        committed_scores_reach(cfg, frames, 400, alive=lambda: cluster.job_state(ccfg, job_id) != "FAILED")
        time.sleep(3 * cfg.job.checkpoint_interval_ms / 1000)  # room for a duplicate to show up
        got = read_kafka_events(cfg, timeout_s=10)
        restarts = cluster.rest(ccfg, "GET", f"/jobs/{job_id}/metrics?get=numRestarts")
    finally:
        cluster.cancel(ccfg, job_id)
    print(f"TaskManager kill: noticed after {noticed_s} s, running again after {recovered_s} s")

    # Reference: an uninterrupted local run at parallelism 2 over the same topic, same model.
    want = reference_events(jobs, {**ref_env, "VAD_JOB__RESTART_ATTEMPTS": "5"}, frames)
    result = compare_sinks(fault_report, want, got, read_redis_events(cfg), distinct_kafka=False)
    kafka, redis = result["kafka"], result["redis"]
    fault_report.note(
        delivery="exactly_once (Kafka read committed)",
        frames=frames,
        events=len(want),
        scored_at_kill=scored_at_kill,
        open_episodes_at_kill=open_at_kill,
        clips_done_at_kill=clips_done_at_kill,
        tm_loss_noticed_s=noticed_s,
        running_again_s=recovered_s,
        num_restarts=restarts[0]["value"] if restarts else None,
        total_s=round(time.monotonic() - t0, 1),
    )
    assert want and any(e.phase == "close" for e in want), "the reference run produced no closed events"
    assert 0 < scored_at_kill < frames, "the kill should land mid-stream"
    assert open_at_kill > 0, "the kill should land with episodes open"
    assert kafka.exact, kafka
    assert redis.exact, redis
