"""The operators' metrics reach Flink's metric system from the Python worker, read from the local
cluster's REST API (`job.local_rest_port`) while the job runs: records in, windows scored, batches
and their sizes, events opened, written to Redis. They travel with each bundle's results, through
the step scopes of Beam's state sampler, which the job runs without its sampling thread
(udfs/beam_sampler.py)."""

from __future__ import annotations

import os
import re
import subprocess
import time

from vad.config import load_config
from vad.kafka_clients import ensure_topics

CAMERA = "metrics-cam"


def _vad_metrics(rest) -> dict[str, str]:
    """Every `vad` metric of the running job, by name without its subtask and operator prefix."""
    out = {}
    for job in rest.get("/jobs")["jobs"]:
        if job["status"] != "RUNNING":
            continue
        for v in rest.get(f"/jobs/{job['id']}")["vertices"]:
            path = f"/jobs/{job['id']}/vertices/{v['id']}/metrics"
            names = [m["id"] for m in rest.get(path) if ".vad." in m["id"]]
            if names:
                for m in rest.get(f"{path}?get={','.join(names)}"):
                    out[m["id"].split(".vad.", 1)[1]] = m["value"]
    return out


def _count(distribution: str) -> int:
    return int(re.search(r"count=(\d+)", distribution).group(1))


def listening_addresses(pgid: int) -> list[str]:
    """The local addresses of the TCP sockets that processes of process group ``pgid`` listen on
    (the JVM and its Python workers), from ``ss``."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, timeout=30, check=True).stdout
    found = []
    for line in out.splitlines():
        fields = line.split()
        for pid in re.findall(r"pid=(\d+)", line):
            try:
                if os.getpgid(int(pid)) == pgid:
                    found.append(fields[3])
                    break
            except ProcessLookupError:
                continue
    return found


def test_operator_metrics_reach_flink(job_env, ped2, produce, jobs, local_rest):
    env = job_env("metrics", VAD_JOB__LOCAL_REST_PORT=str(local_rest.port))
    ensure_topics(load_config(env=env).kafka)
    sent = produce(env, {CAMERA: ped2 / "test" / "Test004.mp4"})[CAMERA]  # anomalous from frame 31
    job = jobs.start(env)
    seen = {}
    try:
        deadline = time.monotonic() + 300
        # The Redis writer is a task of its own: its metrics come with its own bundles.
        while time.monotonic() < deadline and (
            int(seen.get("windows_scored", 0)) < sent or int(seen.get("redis_events_written", 0)) < 1
        ):
            assert job.poll() is None, f"the job died\n{jobs.logs(job)}"
            time.sleep(2)
            try:
                seen = _vad_metrics(local_rest)
            except OSError:  # the cluster's REST endpoint is not up yet
                continue
        # A local run's REST API and web UI (which can cancel the job) listen on loopback only.
        # (Beam's gRPC servers for the Python worker bind every interface in Beam's own code.)
        listening = {a.rsplit(":", 1)[1]: a.rsplit(":", 1)[0] for a in listening_addresses(job.pid)}
    finally:
        jobs.kill(job)
    assert listening.get(str(local_rest.port)) in ("127.0.0.1", "[::ffff:127.0.0.1]"), listening
    assert int(seen["records_in"]) == sent and int(seen["windows_scored"]) == sent, seen
    batches = int(seen["batches"])
    assert 0 < batches <= sent and _count(seen["batch_size"]) == batches
    assert _count(seen["inference_us"]) == batches and _count(seen["frame_score_x1000"]) == sent
    assert int(seen["vad_events_opened"]) >= 1 and int(seen["redis_events_written"]) >= 1
    # Counted once at 0 in the operators' first element: there, and at 0, without a single count.
    for name in (
        "vad_dead_letters",
        "late_or_duplicate_frames",
        "frames_missing",
        "redis_events_duplicate",
        "redis_retries",
        "redis_events_held",
        "redis_events_dropped",
    ):
        assert seen.get(name) == "0", (name, seen)
