"""`make demo`: the whole system end to end on the embedded stack.

Starts a fresh Kafka broker and Redis server, streams two cameras at once (real video when found,
else a synthetic scene), runs the Flink job on the local mini-cluster over what was produced, reads
the events back from Kafka and from Redis with a separate consumer, prints a summary, stops the stack.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from vad.config import REPO_ROOT, Config
from vad.consumer import read_kafka_events, read_kafka_scores, read_redis_events, summarise
from vadctl import stack
from vadctl.synth import write_scene

PED2 = REPO_ROOT.parent / "shared" / "datasets" / "ucsd_ped2" / "test"
CAMERAS = ("walkway-1", "walkway-2")


def demo_sources() -> list[Path]:
    folder = Path(os.environ.get("VAD_DEMO_VIDEO_DIR", PED2))
    clips = sorted(folder.glob("*.mp4")) if folder.is_dir() else []
    if len(clips) >= 2:
        # Two clips with labelled anomalies late and early in the clip (Ped2 Test001, Test004).
        return [clips[0], clips[min(3, len(clips) - 1)]]
    out = REPO_ROOT / ".cache" / "demo" / "video"
    return [write_scene(out / f"synthetic-{i}.mp4", seed=i, anomaly_from=40 + 30 * i) for i in range(2)]


def review_page_hint(cfg: Config) -> str:
    """How to look at the demo's events on the review page: its Redis keeps them (append-only file in
    the demo's state folder) after the demo stops the stack."""
    from vad.ui.server import url

    state = (REPO_ROOT / ".cache" / "demo" / "stack").relative_to(REPO_ROOT)
    return (
        f"review page: run `VAD_STACK__STATE_DIR={state} make ui`, then open {url(cfg.ui.host, cfg.ui.port)} "
        f"(Ctrl-C stops the page; `VAD_STACK__STATE_DIR={state} make stack-down` the stack)"
    )


def run_demo(cfg: Config, config_path: str | None) -> int:
    env = dict(os.environ)
    state = REPO_ROOT / ".cache" / "demo" / "stack"
    env.update({"VAD_STACK__STATE_DIR": str(state), "VAD_JOB__BOUNDED": "true", "VAD_JOB__EMIT_SCORES": "true"})
    # On its own fresh stack a failure is a fault to report, not an outage to wait out: 3 restarts
    # unless the config or the environment caps them already.
    env.setdefault("VAD_JOB__RESTART_ATTEMPTS", str(cfg.job.restart_attempts or 3))
    shutil.rmtree(state, ignore_errors=True)  # a fresh broker: the demo's topics hold only this run
    cfg = cfg.model_copy(update={"stack": cfg.stack.model_copy(update={"state_dir": state})})
    vad = [sys.executable, "-m", "vadctl.cli"] + (["--config", config_path] if config_path else [])
    t0 = time.monotonic()
    print(f"stack: {stack.up(cfg)}", flush=True)
    try:
        sources = demo_sources()
        pairs = ", ".join(f"{c}={s}" for c, s in zip(CAMERAS, sources, strict=False))
        print(f"streaming {len(sources)} cameras: {pairs}", flush=True)
        procs = [
            subprocess.Popen(
                [*vad, "produce", "--camera", cam, "--source", str(src)], env=env, stdout=subprocess.PIPE, text=True
            )
            for cam, src in zip(CAMERAS, sources, strict=False)
        ]
        produced = [json.loads(p.communicate(timeout=600)[0].strip().splitlines()[-1]) for p in procs]
        if any(p.returncode for p in procs):
            print("a producer failed", file=sys.stderr)
            return 1
        print("running the Flink job on the local mini-cluster (bounded: stops at the end of the input)", flush=True)
        job = subprocess.run([*vad, "run"], env=env, timeout=900)
        if job.returncode:
            print(f"the job failed; its log is in {state / 'log'}", file=sys.stderr)
            return 1
        kafka_events = read_kafka_events(cfg, timeout_s=10)
        redis_events = read_redis_events(cfg)
        scored = read_kafka_scores(cfg, timeout_s=10)
        for e in kafka_events:
            span = f"frames {e.start_frame}-{e.end_frame}"
            print(f"event  {e.camera_id:<10} {e.phase:<6} id={e.event_id[:12]} {span} peak={e.peak_score:.2f}")
        summary = {
            "frames_produced": sum(p["sent"] for p in produced),
            "records_scored": len(scored),
            **{f"{k}_events": v for k, v in summarise({"kafka": kafka_events, "redis": redis_events}).items()},
            "seconds": round(time.monotonic() - t0, 1),
        }
        print(json.dumps(summary))
        return 0
    finally:
        print(f"stack: {stack.down(cfg)}", flush=True)
