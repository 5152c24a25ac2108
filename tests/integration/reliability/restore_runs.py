"""What the restore scenarios (rescale, TaskManager kill, transaction timeout) share: clips streamed
into a features topic of their own, the last event time per camera (where the live calm tails of
test_exactly_once.CalmTails continue), a local job's stop with a savepoint, and waits on committed
output. Every wait is bounded."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from test_exactly_once import _until_all_scored, last_timestamps

from vad.config import load_config
from vad.consumer import read_kafka_events, read_kafka_scores
from vad.kafka_clients import ensure_topics
from vadctl import cluster

REPO = Path(__file__).resolve().parents[3]
# Ped2 test clips, streamed side by side as cameras.
CLIPS = {"rr-cam-a": "Test004", "rr-cam-b": "Test002", "rr-cam-c": "Test006", "rr-cam-d": "Test001"}


def prepare_runs(env: dict, ref_env: dict, tmp: Path) -> tuple:
    """The configs of a scenario's run and its reference, their topics made; the shipped model
    copied to tmp/model (the envs point there), so that both score with the same one even while
    models/default is retrained."""
    shutil.copytree(REPO / "models" / "default", tmp / "model")
    cfgs = load_config(env=env), load_config(env=ref_env)
    for c in cfgs:
        ensure_topics(c.kafka)
    return cfgs


def produce_clips_live(produce, env: dict, ped2: Path, clips=CLIPS) -> tuple[dict[str, int], dict[str, int]]:
    """Streams clips (camera -> Ped2 test clip) into env's features topic; returns frames per camera
    and the last ts of every camera in the topic."""
    counts = produce(env, {cam: ped2 / "test" / f"{clip}.mp4" for cam, clip in clips.items()})
    last_ts = last_timestamps(load_config(env=env))
    assert set(clips) <= set(last_ts), last_ts
    return counts, last_ts


def rest_cfg(port: int):
    """A config whose cluster REST address is a local job's mini-cluster (job.local_rest_port)."""
    return load_config(env={"VAD_CLUSTER__REST_ADDRESS": f"127.0.0.1:{port}"})


def running_job_id(cfg, deadline: float) -> str:
    """The id of the one job behind cfg's REST address once all its tasks run."""
    last = ""
    while time.monotonic() < deadline:
        try:
            for j in cluster.jobs(cfg):
                if j["state"] == "RUNNING":
                    detail = cluster.rest(cfg, "GET", f"/jobs/{j['jid']}")
                    if all(v["status"] == "RUNNING" for v in detail["vertices"]):
                        return j["jid"]
                last = j["state"]
        except cluster.ClusterError as e:  # not up yet
            last = str(e)
        time.sleep(1)
    raise AssertionError(f"no running job at {cfg.cluster.rest_address} in time: {last}")


def stop_with_savepoint(cfg, job_id: str, target: Path, timeout_s: float = 180) -> str:
    """`flink stop` (no drain) through the REST API; returns the savepoint's location. Not
    cluster.stop: a local run's mini-cluster ends with its job, so its final state cannot be read."""
    trig = cluster.rest(cfg, "POST", f"/jobs/{job_id}/stop", {"drain": False, "targetDirectory": target.as_uri()})
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        r = cluster.rest(cfg, "GET", f"/jobs/{job_id}/savepoints/{trig['request-id']}")
        if r.get("status", {}).get("id") == "COMPLETED":
            op = r.get("operation") or {}
            assert "failure-cause" in op or op.get("location"), r
            assert "failure-cause" not in op, op["failure-cause"].get("stack-trace", "")[:3000]
            return op["location"].removeprefix("file:")
        time.sleep(0.5)
    raise AssertionError(f"stop with savepoint of {job_id} not complete in {timeout_s} s")


def committed_scores_reach(cfg, n: int, timeout_s: float, alive=lambda: True) -> int:
    """Waits until at least n frame scores are committed (read committed); returns the count."""
    deadline, got = time.monotonic() + timeout_s, 0
    while time.monotonic() < deadline:
        assert alive(), "the job died"
        got = len(read_kafka_scores(cfg, timeout_s=3))
        if got >= n:
            return got
        time.sleep(1)
    raise AssertionError(f"only {got} of {n} scores committed in {timeout_s} s")


def reference_events(jobs, env: dict, frames: int, timeout_s: float = 400) -> list:
    """The events of an uninterrupted local run over the whole features topic, every frame scored."""
    ref = jobs.start(env)
    try:
        return _until_all_scored(jobs, ref, load_config(env=env), frames, timeout_s=timeout_s)
    finally:
        jobs.kill(ref)


def first_event_while(cfg, cams, producing, alive, timeout_s: float = 300) -> None:
    """Until an event of one of cams is committed, while their clips (the future `producing`) still
    stream in and the job is `alive()`."""
    deadline = time.monotonic() + timeout_s
    while not {e.camera_id for e in read_kafka_events(cfg, timeout_s=2)} & set(cams):
        assert time.monotonic() < deadline, f"no event of {sorted(cams)} committed in {timeout_s} s"
        assert not producing.done(), f"the clips of {sorted(cams)} ended before an event was committed"
        assert alive(), "the job died"


def open_episodes(cfg) -> int:
    """Episodes with committed events but no committed close."""
    events = read_kafka_events(cfg, timeout_s=3)
    return len({e.event_id for e in events} - {e.event_id for e in events if e.phase == "close"})
