"""Where things move, told by what the ground looks like rather than by where it is: does that see
someone crossing the lawn without calling a walker in an unfamiliar corner of the walkway anomalous?
Post hoc: reads test labels, to explain, never to choose.

    nice -n 19 .venv/bin/python -m research.ground_study

Every location cue so far ("Off-path floor", occupancy) failed on Ped1 the same way: the 34
training clips of one afternoon leave parts of the walkway unwalked, and walkers there are normal in
the test clips. Here a cell is "walked ground" if its normal motion is frequent (>= 2 % of training
frames) *or* its background looks like a walked cell's: each cell of the median training frame gets
a descriptor (mean and spread of grey level, mean gradient and Laplacian magnitude, z-scored over the
cells) and its distance to the nearest frequently walked cell's. Two uses of that distance d:

- **floor**: scalep's row-prior floor lowered to gamma x the prior in cells with d > tau that the
  training clips rarely move in (``research.offpath_study``'s form, this mask instead of its own);
- **foot**: per frame, the largest d among moving cells (motion over the cell's scale > thr) whose
  cell below is still, i.e. where an object meets the ground, since a person standing on the
  pavement covers the lawn cells above their feet; alone and as the max with scalep (each over its
  held-out 99th percentile).
"""

from __future__ import annotations

import itertools
import json

import cv2
import numpy as np
from sklearn.metrics import roc_auc_score

from models.scorers import scalep
from models.train import _ema
from research.flow_study import gray_frames
from research.offpath_study import CACHE, cached_features, fit_with_held_q99, lowered_floor
from research.ped1_ceiling import DATA, MAG
from vad.config import EdgeSettings

WALKED = 0.02
MOVE_THR = 0.3


def background(scene: str) -> np.ndarray:
    """The median of every tenth grey frame of the scene's training clips (cached)."""
    f = CACHE / f"{scene}_background.npy"
    if not f.exists():
        cfg = EdgeSettings()
        frames = [g for p in sorted((DATA / scene / "train").glob("*.mp4")) for g in gray_frames(p, cfg)[::10]]
        np.save(f, np.median(np.stack(frames), 0).astype(np.uint8))
    return np.load(f)


def cell_descriptors(bg: np.ndarray, rows: int, cols: int) -> np.ndarray:
    g = bg.astype(np.float32)
    grad = np.hypot(cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1))
    lap = np.abs(cv2.Laplacian(cv2.GaussianBlur(g, (3, 3), 0), cv2.CV_32F))
    ys = np.linspace(0, g.shape[0], rows + 1).astype(int)
    xs = np.linspace(0, g.shape[1], cols + 1).astype(int)
    d = np.array(
        [
            [
                [g[a:b, c:e].mean(), g[a:b, c:e].std(), grad[a:b, c:e].mean(), lap[a:b, c:e].mean()]
                for c, e in itertools.pairwise(xs)
            ]
            for a, b in itertools.pairwise(ys)
        ]
    )
    flat = d.reshape(-1, d.shape[-1])
    return ((d - flat.mean(0)) / (flat.std(0) + 1e-6)).astype(np.float32)


def ground_distance(train: list[np.ndarray], bg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(each cell's training motion frequency, its ground's distance to the nearest walked cell's)."""
    freq = (np.concatenate([c[..., MAG] for c in train]) > MOVE_THR).mean(0)
    z = cell_descriptors(bg, *freq.shape)
    walked = z[freq >= WALKED]
    return freq, np.sqrt(((z[:, :, None] - walked[None, None]) ** 2).sum(-1)).min(-1)


def foot(c: np.ndarray, d: np.ndarray, s: np.ndarray, thr: float) -> np.ndarray:
    moving = c[..., MAG] / s > thr
    below = np.zeros_like(moving)
    below[:, :-1] = moving[:, 1:]
    return np.where(moving & ~below, d[None], 0.0).reshape(len(c), -1).max(1)


def study(scene: str) -> dict[str, float]:
    train, test, y = cached_features(scene)
    bg = background(scene)

    def auc(frame_scores) -> float:
        return round(float(roc_auc_score(y, np.concatenate([_ema(x, 0.5) for x in frame_scores]))), 4)

    def scores(s):
        return [scalep.score_numpy(c[:, None], s)[0] for c in test]

    s, q99 = fit_with_held_q99(train)
    base = scores(s)
    freq, d = ground_distance(train, bg)
    out = {"scalep": auc(base)}
    for tau in (0.3, 0.5, 0.8):
        for gamma in (0.75, 0.5):
            off = (d > tau) & (freq < WALKED)
            out[f"floor tau {tau} gamma {gamma} ({off.sum()} cells)"] = auc(scores(lowered_floor(train, off, gamma)))
    # The foot cue's unit: its 99th percentile on the odd training clips, fitted on the even ones.
    _, d_half = ground_distance(train[0::2], bg)
    s_half = scalep.fit(train[0::2])
    for thr in (0.3, 0.5, 0.7):
        unit = max(float(np.percentile(np.concatenate([foot(c, d_half, s_half, thr) for c in train[1::2]]), 99)), 1e-3)
        cue = [foot(c, d, s, thr) for c in test]
        out[f"foot thr {thr}"] = auc(cue)
        both = [np.maximum(b / q99, x / unit) for b, x in zip(base, cue, strict=True)]
        out[f"max(scalep, foot thr {thr})"] = auc(both)
    return out


def main() -> int:
    for scene in ("ucsd_ped1", "ucsd_ped2"):
        print(json.dumps({scene: study(scene)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
