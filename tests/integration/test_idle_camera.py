"""One camera falls silent mid-episode while another keeps streaming: the silent camera does not stall
event time for the others (its partition goes idle), and its open episode is closed as "idle" once
event time has moved past it — in an unbounded run, as in production."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from kafka.partitioner.default import murmur2

from vad.config import load_config
from vad.consumer import read_kafka_events
from vad.kafka_clients import ensure_topics

REPO = Path(__file__).resolve().parents[2]
SILENT, BUSY = "idle-a", "idle-b"


def test_silent_camera_is_closed_as_idle_and_does_not_stall_others(job_env, ped2, jobs):
    # The two cameras must sit on different partitions of the 2-partition topic for idleness to matter.
    assert {(murmur2(c.encode()) & 0x7FFFFFFF) % 2 for c in (SILENT, BUSY)} == {0, 1}
    env = job_env("idle", VAD_JOB__IDLE_TIMEOUT_MS="3000")
    cfg = load_config(env=env)
    ensure_topics(cfg.kafka)
    clips = {SILENT: ("Test004", ["--limit", "70"]), BUSY: ("Test002", [])}  # Test004: anomalous from frame 31
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "vadctl.cli",
                "produce",
                "--camera",
                cam,
                "--source",
                str(ped2 / "test" / f"{clip}.mp4"),
                *extra,
            ],
            env=env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for cam, (clip, extra) in clips.items()
    ]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read()
    job = jobs.start(env)
    try:
        deadline, closed = time.monotonic() + 300, []
        while time.monotonic() < deadline and not closed:
            assert job.poll() is None, f"the job died\n{jobs.logs(job)}"
            events = read_kafka_events(cfg, timeout_s=3)
            closed = [e for e in events if e.camera_id == SILENT and e.phase == "close"]
            time.sleep(1)
    finally:
        jobs.kill(job)
    assert closed, "the silent camera's episode was never closed: event time stalled"
    assert closed[0].close_reason == "idle" and closed[0].end_frame == 69
    assert any(e.camera_id == BUSY for e in events)
