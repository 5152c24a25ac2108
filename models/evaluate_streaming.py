"""`vad evaluate --streaming`: the same evaluation through the real stack.

Each test clip is streamed by the edge producer as a camera of its own into a features topic of this
run, the Flink job scores it (bounded, per-frame scores topic on), and the per-frame scores read back
from Kafka go through the same metrics as the in-process evaluation. The report also gives the
largest difference between streamed and in-process frame scores: ~0 when the edge sends float32
values (same features, same windows, same model), about 1e-3 on Ped2 with float16 values, the
default (``edge.wire_precision``; the report names it). Needs the configured broker and Redis to be
up (`vad stack up`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from models.card import ModelCard, card_path
from models.evaluate import clip_result, detect_clip, frame_times_ms, load_labels, metrics, per_clip
from vad.config import REPO_ROOT, Config, load_config
from vad.consumer import read_kafka_scores
from vad.detect import EpisodeDetector
from vad.edge.clips import clip_samples, list_clips
from vad.kafka_clients import ensure_topics


def _run(argv: list[str], env: dict, timeout: float) -> None:
    p = subprocess.run(
        [sys.executable, "-m", "vadctl.cli", *argv],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if p.returncode:
        raise RuntimeError(f"vad {' '.join(argv)} failed:\n{p.stderr[-3000:]}")


def streamed_scores(data: Path, model_path: Path, cfg: Config, timeout_s: float = 900) -> dict[str, np.ndarray]:
    """{clip: raw model frame score per frame}, scored by the Flink job."""
    run = time.strftime("%Y%m%d%H%M%S")
    env = {
        **os.environ,
        "VAD_KAFKA__TOPICS__FEATURES": f"vad.eval.{run}.features",
        "VAD_KAFKA__TOPICS__SCORES": f"vad.eval.{run}.scores",
        "VAD_KAFKA__TOPICS__EVENTS": f"vad.eval.{run}.events",
        "VAD_KAFKA__TOPICS__DEAD_LETTER": f"vad.eval.{run}.dlq",
        "VAD_KAFKA__GROUP_ID": f"vad-eval-{run}",
        "VAD_REDIS__KEY_PREFIX": f"vad-eval-{run}",
        "VAD_JOB__MODEL_PATH": str(model_path.resolve()),
        "VAD_JOB__BOUNDED": "true",
        "VAD_JOB__EMIT_SCORES": "true",
    }
    # The producer computes features with the model's edge settings, as in-process evaluation does.
    card = ModelCard.load(card_path(model_path))
    # JSON is YAML, as the config reads the environment: null (target_fps: null) travels too.
    for k, v in card.edge.items():
        env[f"VAD_EDGE__{k.upper()}"] = json.dumps(v)
    run_cfg = load_config(env=env)
    ensure_topics(run_cfg.kafka)
    clips = list_clips(data / "test")
    for clip in clips:
        _run(["produce", "--camera", f"eval-{clip.stem}", "--source", str(clip)], env, timeout_s)
    _run(["run"], env, timeout_s)
    got = read_kafka_scores(run_cfg, timeout_s=30)
    out: dict[str, list[tuple[int, float]]] = {c.stem: [] for c in clips}
    for s in got:
        out[s.camera_id.removeprefix("eval-")].append((s.frame_index, s.score))
    return {k: np.array([v for _, v in sorted(rows)], np.float64) for k, rows in out.items()}


def evaluate_streaming(data: Path, model_path: Path, cfg: Config, offline: dict | None = None) -> dict:
    labels, fps = load_labels(data / "labels.json")
    card = ModelCard.load(card_path(model_path))
    threshold = card.detection_threshold(cfg.detect)
    detector = EpisodeDetector(cfg.detect, threshold, card.model_version)
    edge, paths = card.edge_config(cfg.edge), {c.stem: c for c in list_clips(data / "test")}
    results = []
    for name, raw in streamed_scores(data, model_path, cfg).items():
        # Where the streamed (sampled) frames sit among the clip's frames: a decode-only pass.
        where = clip_samples(paths[name], edge, features=False)
        smoothed, events = detect_clip(name, raw, None, detector, frame_times_ms(where.positions, fps))
        results.append(clip_result(name, smoothed, raw, events, labels[name], where.positions, where.frames))
    report = {**metrics(results, fps), "threshold": threshold, "per_clip": per_clip(results, fps), "streaming": True}
    report["wire_precision"] = cfg.edge.wire_precision
    if offline is not None:
        diffs = [np.max(np.abs(r.raw - offline[r.name])) for r in results if len(r.raw) == len(offline[r.name])]
        report["max_abs_diff_vs_in_process"] = float(max(diffs)) if len(diffs) == len(results) else None
    return report
