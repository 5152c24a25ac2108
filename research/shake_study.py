"""What a moving camera does to the default edge and model, with and without the camera-motion
compensation (vad/edge/camera_motion.py). Training clips only choose; test clips are reported.

    nice -n 19 .venv/bin/python -m research.shake_study [--scenes ucsd_ped2 ucsd_ped1] [--out FILE]
    .venv/bin/python -m research.shake_study --cost     # its cost on still cameras, end to end

Per scene, a model is trained (the product's ``vad train`` path, default settings) on the training
clips after the first eight; the first eight are the held-out normal video. Every frame is moved by
a known camera motion before the edge sees it (bilinear warp, borders reflected):

- ``jitter S``: a random shift of up to S source pixels in x and y, new every frame (shake);
- ``sway A``: a slow sinusoid of A pixels in x (period 2 s) and A/2 in y (3.1 s), a camera on a pole
  (periods counted at the clips' 10 frames a second);
- ``pan V``: from frame 50, V pixels a frame in x for 1 s, then still (a nudge of the camera). Longer
  moves are not simulated: a warped frame has no content beyond its border, and the reflected
  border (10 px here) moves against the pan, an object no real pan shows.

For each motion, with compensation on and off: false episodes per hour of the held-out normal clips
(the job's detector at the card's threshold), and on the scene's test clips frame AUC, event recall and
mean first-alert delay (``vad evaluate``'s definitions). Also the still cameras' estimate: the
largest |median flow| over every still training frame, against the dead band.
Findings: docs/edge.md ("Camera motion").
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from unittest import mock

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from models.card import ModelCard, card_path  # noqa: E402
from models.evaluate import clip_result, frame_times_ms, load_labels, metrics, score_clip  # noqa: E402
from models.onnx_session import OnnxScorer  # noqa: E402
from models.train import train  # noqa: E402
from research.flow_study import gray_frames  # noqa: E402
from research.ped1_ceiling import DATA  # noqa: E402
from vad.config import load_config  # noqa: E402
from vad.detect import EpisodeDetector  # noqa: E402
from vad.edge import camera_motion, features  # noqa: E402
from vad.edge.features import make_extractor  # noqa: E402

HELD_OUT = 8
MOTIONS = ("still", "jitter 0.5", "jitter 1", "jitter 2", "sway 3", "pan 1")


def offsets(motion: str, n: int, rng: np.random.Generator) -> np.ndarray:
    kind, _, arg = motion.partition(" ")
    if kind == "still":
        return np.zeros((n, 2))
    a = float(arg)
    if kind == "jitter":
        return rng.uniform(-a, a, (n, 2))
    if kind == "sway":
        t = np.arange(n) / 10.0
        return np.stack([a * np.sin(2 * np.pi * t / 2.0), 0.5 * a * np.sin(2 * np.pi * t / 3.1)], 1)
    if kind == "pan":
        k = np.clip(np.arange(n) - 50, 0, 10)
        return np.stack([a * k, 0 * k], 1)
    raise ValueError(motion)


def moved(frames: list[np.ndarray], motion: str, rng: np.random.Generator) -> list[np.ndarray]:
    h, w = frames[0].shape
    out = []
    for f, (dx, dy) in zip(frames, offsets(motion, len(frames), rng), strict=True):
        m = np.float32([[1, 0, dx], [0, 1, dy]])
        out.append(cv2.warpAffine(f, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))
    return out


def still_estimates(clips: list[Path], edge) -> float:
    """The largest |median flow| (flow pixels) over the clips' frames, as the compensation measures
    it before its dead band (the extractor's compensation step replaced by a recorder)."""
    seen: list[float] = []

    def record(flow: np.ndarray, prev: np.ndarray, cur: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
        seen.append(float(np.hypot(*camera_motion.median_motion(flow))))
        return flow, prev, False

    with mock.patch.object(features, "compensate", record):
        for c in clips:
            ex = make_extractor(edge.model_copy(update={"compensate_camera_motion": True}))
            for f in gray_frames(c, edge):
                ex.process(f, 100.0)
    return max(seen)


def _round(x: float | None, n: int) -> float | None:
    return None if x is None else round(x, n)


def run_clips(clips, frames, labels, fps, model, cfg, motion, compensate):
    card = ModelCard.load(card_path(model))
    scorer = OnnxScorer(model)
    edge = card.edge_config(cfg.edge).model_copy(update={"compensate_camera_motion": compensate})
    rng = np.random.default_rng(0)
    results = []
    for c in clips:
        fr = moved(frames[c.stem], motion, rng)
        ex = make_extractor(edge)
        grids = np.stack([ex.process(f, 100.0) for f in fr]).astype(np.float32)
        det = EpisodeDetector(cfg.detect, card.detection_threshold(cfg.detect), card.model_version)
        pos = np.arange(len(fr))
        smoothed, raw, events = score_clip(c.stem, grids, scorer, det, card.window, frame_times_ms(pos, fps))
        results.append(clip_result(c.stem, smoothed, raw, events, labels[c.stem], pos, len(fr)))
    return metrics(results, fps)


def scene_rows(scene: str, work: Path, motions: tuple[str, ...] = MOTIONS) -> dict:
    cfg = load_config(None)
    data = DATA / scene
    train_clips = sorted((data / "train").glob("*.mp4"))
    fit = work / scene / "train"
    fit.mkdir(parents=True)
    for c in train_clips[HELD_OUT:]:
        (fit / c.name).symlink_to(c)
    train(work / scene, work / scene / "model", cfg.edge)
    model = work / scene / "model" / "model.onnx"
    labels, fps = load_labels(data / "labels.json")
    test_clips = sorted((data / "test").glob("*.mp4"))
    held = train_clips[:HELD_OUT]
    frames = {c.stem: gray_frames(c, cfg.edge) for c in [*held, *test_clips]}
    normal = {c.stem: [] for c in held}
    rows = {"still_max_median_flow_px": round(still_estimates(train_clips, cfg.edge), 4)}
    for motion in motions:
        for comp in (False, True):
            h = run_clips(held, frames, normal, fps, model, cfg, motion, comp)
            t = run_clips(test_clips, frames, labels, fps, model, cfg, motion, comp)
            row = {
                "held_out_false_episodes_per_hour": round(h["false_episodes_per_hour"], 1),
                "held_out_false_episodes": h["false_alarms"],
                "test_frame_auc": round(t["frame_auc"], 3),
                "test_event_recall": round(t["event_recall"], 3),
                "test_false_episodes": t["false_alarms"],
                "test_first_alert_delay_s": _round(t["first_alert_delay_s"], 2),
            }
            rows[f"{motion}, compensation {'on' if comp else 'off'}"] = row
            print(scene, motion, "on" if comp else "off", row, flush=True)
    return rows


def cost(runs: int = 3) -> dict:
    """The edge benchmark's pipeline (decode .. encode, no Kafka, one thread) over Ped2's test clips,
    compensation off and on alternately in one process: frames per core-second and the median of
    the paired ratios on/off. Still cameras: only the estimate's cost shows."""
    from bench.edge import _fps, _pipeline

    clips = sorted((DATA / "ucsd_ped2" / "test").glob("*.mp4"))
    base = load_config(None).edge.settings_for(None).model_copy(update={"decode_threads": 1, "decoder": "auto"})
    _pipeline(clips[:1], base)  # warm-up
    fps: dict[str, list[float]] = {"off": [], "on": []}
    for _ in range(runs):
        for name in fps:
            r = _pipeline(clips, base.model_copy(update={"compensate_camera_motion": name == "on"}))
            fps[name].append(round(_fps(r), 1))
    ratio = float(np.median(np.array(fps["on"]) / np.array(fps["off"])))
    return {"fps_per_core": fps, "median_ratio_on_off": round(ratio, 3)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenes", nargs="+", default=["ucsd_ped2", "ucsd_ped1"])
    p.add_argument("--motions", nargs="+", default=list(MOTIONS), help='e.g. "jitter 1" "sway 3"')
    p.add_argument("--out", type=Path)
    p.add_argument("--cost", action="store_true", help="only the cost on a still camera, off against on")
    a = p.parse_args()
    cv2.setNumThreads(1)
    if a.cost:
        print(json.dumps(cost()))
        return
    with tempfile.TemporaryDirectory(prefix="vad-shake-") as tmp:
        out = {s: scene_rows(s, Path(tmp), tuple(a.motions)) for s in a.scenes}
    text = json.dumps(out, indent=1)
    if a.out:
        a.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
