"""Choose the direction-aware scorer's settings on the camera's own normal clips (models/scorers/scalep_dir.py).

    python -m research.direction_study --data DIR [--cache FILE] [--warp] [--out FILE]

The protocol of research/flow_study.py (each training clip held out in turn, the scorer fitted on the
others, the held-out clip scored as normal against anomalies made from it, causal EMA score, pooled
AUC, paired bootstrap over clips), with wrong-direction anomalies added. On Ped2 the walkway has soft
lanes: in the training clips the upper walkway (grid rows 4-5) moves ~75 % leftwards, the lower
(rows 7-8) ~85-95 % rightwards, and vertical motion is ~1-2 % of the motion mass. So:

- ``reverse``: the held-out clip played backwards: real walkers, real speeds, every direction
  flipped, so each lane carries its counter-flow. scalep cannot see it (speed is unchanged); as the
  lanes are soft it is a mild anomaly, and how far a model separates it is a measure of how strongly
  it trusts the lanes;
- ``lane_wrong``: a 20x20 texture gliding along a lane *against* its usual direction at walking pace
  (``LANE_SPEEDS``), re-entering at the far side; ``lane_right`` is the same texture *with* the lane: a
  control, any score it gets is the texture itself, not its direction;
- ``cross``: the texture crossing the walkway vertically at walking pace, bouncing between its edges.

``--warp`` applies a strong perspective warp (far edge 35 % of the width) to every frame of every
sequence first: the check of how the scorer copes with a different camera geometry.

Features are cached (``--cache``), then every scorer variant is scored from the cache in seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from models.scorers import scalep, scalep_dir
from models.train import _ema
from research import flow_study
from research.flow_study import EMA_ALPHA, gray_frames, pooled_auc, texture
from vad.config import EdgeSettings
from vad.schema import DIRECTION_BINS

SPEED_KINDS = flow_study.KINDS[1:]  # flow_study's anomalies
DIR_KINDS = ("reverse", "lane_wrong", "cross")
CONTROL_KINDS = ("lane_right",)
KINDS = ("normal", *SPEED_KINDS, *DIR_KINDS, *CONTROL_KINDS)
# Lanes of the Ped2 walkway at full resolution: (top y range of the texture, usual direction +1 = right).
LANES = (((80, 100), -1), ((140, 160), +1))
WALKWAY_Y = (80, 180)
LANE_SPEEDS = (0.4, 1.0)  # px/frame at 360x240, spread over the clips: a walker's cell-mean flow


def paste(g: np.ndarray, tex: np.ndarray, x: int, y: int) -> None:
    w, s = g.shape[1], tex.shape[0]
    x0, x1 = max(x, 0), min(x + s, w)
    if x1 > x0:
        g[y : y + s, x0:x1] = tex[:, x0 - x : x1 - x]


def lane_patch(frames: list[np.ndarray], seed: int, speed: float, lane: int, wrong: bool) -> list[np.ndarray]:
    """A texture gliding along a lane, with (wrong=False) or against its usual direction, wrapping."""
    rng = np.random.default_rng(seed)
    tex, s = texture(rng), 20
    (ylo, yhi), usual = LANES[lane]
    h, w = frames[0].shape
    sy = h / 240
    y = int(rng.uniform(ylo, yhi) * sy)
    v = speed * w / 360 * (-usual if wrong else usual)
    x = rng.uniform(-s, w)
    out = []
    for g in frames:
        g = g.copy()
        paste(g, tex, round(x), y)
        out.append(g)
        x = (x + v + s) % (w + s) - s
    return out


def cross_patch(frames: list[np.ndarray], seed: int, speed: float) -> list[np.ndarray]:
    """A texture crossing the walkway up and down at `speed`, bouncing off its edges."""
    rng = np.random.default_rng(seed)
    tex, s = texture(rng), 20
    h, w = frames[0].shape
    lo, hi = WALKWAY_Y[0] * h / 240, WALKWAY_Y[1] * h / 240 - s
    x, y, v = int(rng.uniform(20, w - 40)), rng.uniform(lo, hi), speed * h / 240 * rng.choice([-1, 1])
    out = []
    for g in frames:
        g = g.copy()
        top = round(y)
        g[top : top + s, x : x + s] = tex
        out.append(g)
        y += v
        if not lo <= y <= hi:
            v, y = -v, float(np.clip(y, lo, hi))
    return out


def warp(frames: list[np.ndarray], far: float = 0.35) -> list[np.ndarray]:
    """Strong perspective: the top edge shrinks to `far` of the width, the bottom stays."""
    h, w = frames[0].shape
    a = (1 - far) / 2 * w
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    dst = np.float32([[a, 0], [w - a, 0], [w, h], [0, h]])
    m = cv2.getPerspectiveTransform(src, dst)
    return [cv2.warpPerspective(g, m, (w, h), flags=cv2.INTER_LINEAR) for g in frames]


def sequences(i: int, n: int, frames: list[np.ndarray]) -> dict[str, list[np.ndarray]]:
    """flow_study's sequences, plus the direction anomalies and the control."""
    lo, hi = LANE_SPEEDS
    walk = lo + (hi - lo) * (i % n) / max(n - 1, 1)
    return {
        **flow_study.sequences(i, n, frames),
        "reverse": frames[::-1],
        "lane_wrong": lane_patch(frames, 300 + i, walk, lane=i % 2, wrong=True),
        "cross": cross_patch(frames, 400 + i, walk),
        "lane_right": lane_patch(frames, 300 + i, walk, lane=i % 2, wrong=False),
    }


def extract(data: Path, warped: bool, max_clips: int | None = None) -> list[dict[str, np.ndarray]]:
    cv2.setNumThreads(1)
    cfg = EdgeSettings()
    clips = [gray_frames(p, cfg) for p in sorted((data / "train").glob("*"))[:max_clips]]
    feats = []
    for i, frames in enumerate(clips):
        feats.append(flow_study.kind_features(sequences(i, len(clips), frames), cfg, warp if warped else None))
        print(f"features: clip {i + 1}/{len(clips)}", file=sys.stderr)
    return feats


def save_cache(path: Path, feats: list[dict[str, np.ndarray]]) -> None:
    np.savez_compressed(path, **{f"{i}/{k}": v for i, d in enumerate(feats) for k, v in d.items()})


def load_cache(path: Path) -> list[dict[str, np.ndarray]]:
    z = np.load(path)
    n = 1 + max(int(k.split("/")[0]) for k in z.files)
    return [{k: z[f"{i}/{k}"] for k in KINDS} for i in range(n)]


def quantile_params(clips: list[np.ndarray], q: float, alpha: float, radius: int = 1, bin_pool: bool = False) -> dict:
    """scalep_dir's fit; ``bin_pool``: each bin's quantile also covers its two neighbouring
    directions (tolerates 45-degree jitter; tried, not shipped)."""
    params = scalep_dir.fit(clips, q, alpha, radius)
    if bin_pool:
        s = 1 / params["inv_dir"]
        s = np.maximum(s, np.maximum(np.roll(s, 1, axis=-1), np.roll(s, -1, axis=-1)))
        params["inv_dir"] = (1 / s).astype(np.float32)
    return params


def share_params(clips: list[np.ndarray], p0: float, alpha: float, reduce: str, prior: float = 20.0) -> dict:
    """The first design tried (not shipped): p_b = bin b's share of the 3x3-pooled normal motion
    mass (plus ``prior`` uniform pseudo-mass); s_b = scale * clip(p_b / p0, alpha, 1); the cell score
    is sum_b dir_b / s_b (``reduce="sum"``, = scalep where every s_b = scale) or scalep_dir's max."""
    scale = scalep.fit(clips)
    h = sum(c[..., scalep_dir.DIR0 : scalep_dir.DIR0 + DIRECTION_BINS].astype(np.float64).sum(axis=0) for c in clips)
    rows, cols, _ = h.shape
    pad = np.pad(h, [(1, 1), (1, 1), (0, 0)], mode="edge")
    pooled = sum(pad[dy : dy + rows, dx : dx + cols] for dy in range(3) for dx in range(3))
    p = (pooled + prior / DIRECTION_BINS) / (pooled.sum(axis=-1, keepdims=True) + prior)
    inv = (1 / (scale[..., None] * np.clip(p / p0, alpha, 1.0))).astype(np.float32)
    return {"scale": scale, "inv_dir": inv, "reduce": reduce}


def score(windows: np.ndarray, params: dict) -> np.ndarray:
    if params.get("reduce") == "sum":
        return (
            (windows[:, -1, ..., scalep_dir.DIR0 : scalep_dir.DIR0 + DIRECTION_BINS] * params["inv_dir"])
            .sum(axis=-1)
            .reshape(len(windows), -1)
            .max(axis=1)
        )
    return scalep_dir.score_numpy(windows, params)[0]


def make_fit(spec: dict):
    spec = dict(spec)
    family = spec.pop("family")
    if family == "scalep":
        return lambda clips: scalep_dir.fit(clips, alpha=1.0)  # every s_b = scale: scalep exactly
    if family == "share":
        return lambda clips: share_params(clips, **spec)
    if family == "quantile":
        return lambda clips: quantile_params(clips, **spec)
    raise ValueError(family)


def scores(feats: list[dict[str, np.ndarray]], fit) -> list[dict[str, np.ndarray]]:
    out = []
    for i in range(len(feats)):
        params = fit([feats[j]["normal"] for j in range(len(feats)) if j != i])
        out.append({k: _ema(score(v[:, None], params), EMA_ALPHA)[1:] for k, v in feats[i].items()})
    return out


def false_alarm_rate(scores_, q: float = 0.999) -> float:
    """Share of held-out normal frames above the card's threshold (the q-quantile of the pooled
    leave-one-clip-out normal scores, as vad train calibrates), averaged over clips each held out of
    the threshold too, so it is the rate on a normal clip neither the model nor the threshold saw."""
    rates = []
    for i in range(len(scores_)):
        thr = np.quantile(np.concatenate([s["normal"] for j, s in enumerate(scores_) if j != i]), q)
        rates.append(float(np.mean(scores_[i]["normal"] > thr)))
    return float(np.mean(rates))


def report(feats, variants: dict[str, dict], boot: int = 300, run=None) -> dict:
    """One row per variant; ``run(spec) -> (scores, extra fields)`` scores a variant (default: the
    leave-one-clip-out scores of ``make_fit(spec)``, no extra fields)."""
    run = run or (lambda spec: (scores(feats, make_fit(spec)), {}))
    rng = np.random.default_rng(0)
    draws = [rng.integers(0, len(feats), len(feats)) for _ in range(boot)]
    out, first = {}, None
    for name, spec in variants.items():
        sc, extra = run(spec)
        every = range(len(feats))
        b = np.array([pooled_auc(sc, d, SPEED_KINDS) for d in draws])
        r = {
            "spec": spec,
            "speed_proxy": round(pooled_auc(sc, every, SPEED_KINDS), 5),
            **{k: round(pooled_auc(sc, every, (k,)), 4) for k in SPEED_KINDS + DIR_KINDS + CONTROL_KINDS},
            "dir_proxy": round(pooled_auc(sc, every, ("lane_wrong", "cross")), 4),
            "false_alarms_0.999": round(false_alarm_rate(sc), 4),
            **extra,
        }
        if first is None:
            first = b
        else:
            r["speed_diff_vs_first_90"] = [round(float(x), 5) for x in np.percentile(b - first, [5, 95])]
        out[name] = r
        print(json.dumps({name: r}), file=sys.stderr)
    return out


DEFAULT_VARIANTS = {
    "scalep": {"family": "scalep"},
    "scalep_dir": {"family": "quantile", "q": 98, "alpha": 0.4},
}


def study_cli(argv: list[str] | None, doc: str, report_fn, default_variants: dict) -> int:
    """The command line of a study on these cached features (this one and research/model_study.py)."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="folder with train/ (normal clips)")
    p.add_argument("--cache", type=Path, default=None, help="feature cache (.npz): read if present, else written")
    p.add_argument("--warp", action="store_true", help="perspective-warp every frame first")
    p.add_argument("--variants", type=str, default=None, help='JSON {"name": {"family": ..., ...}}; first = reference')
    p.add_argument("--max-clips", type=int, default=None)
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args(argv)
    if a.cache and a.cache.is_file():
        feats = load_cache(a.cache)
    else:
        feats = extract(a.data, a.warp, a.max_clips)
        if a.cache:
            save_cache(a.cache, feats)
    res = report_fn(feats, json.loads(a.variants) if a.variants else default_variants)
    if a.out:
        a.out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res))
    return 0


def main(argv: list[str] | None = None) -> int:
    return study_cli(argv, __doc__, report, DEFAULT_VARIANTS)


if __name__ == "__main__":
    sys.exit(main())
