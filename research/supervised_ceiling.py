"""How far can any frame score built on the edge's features go on the test clips, even one trained
on their labels? Post hoc, and supervised on purpose: it reads test labels to bound, never to choose.

    nice -n 19 .venv/bin/python -m research.supervised_ceiling [--edges default "DIS at its finest scale"]

Per frame, from the edge's grid (``research.ped1_ceiling``'s EDGE_VARIANTS): the 8 largest cell
scores of scalep (motion over the cell's normal scale) and the 4 largest of the frame-difference
channel over its own per-cell 99th percentile, the number of moving cells and their mean score, the
direction histogram's shares and the row of the top cell; and the same averaged over the last 3, 5
and 10 frames (causal). A gradient-boosted classifier is trained on the labelled frames of five sixths
of the test clips and scores the rest, six folds over clips, so every test frame is scored by a model
that never saw its clip; the pooled AUC of those out-of-fold scores (raw, and after the detector's
EMA 0.5) says what these features carry when real anomalies are there to learn from: a reference,
not a strict bound (a dozen clips is little to learn from). ``--with-deep`` adds, per frame, the
pretrained CNN's features of moving regions (``research.deep_appearance``'s cache, which it builds in
about 25 minutes: the max and mean of each of the 64 stride-16 channels over the locations that
move, their count, the largest frame difference, and the same over the last 5 frames), alone and
beside the grid's.
Findings: research/FINDINGS-issue26.md ("A supervised reference").
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score

from models.scorers import scalep
from models.train import _ema
from research.offpath_study import cached_features
from research.ped1_ceiling import EDGE_VARIANTS
from vad.schema import CHANNELS

MAG, FG = CHANNELS.index("mag"), CHANNELS.index("fg")
DIRS = [CHANNELS.index(f"dir{i}") for i in range(8)]
FOLDS = 6
CONTEXT = (3, 5, 10)


def causal_means(f: np.ndarray, ks: tuple[int, ...]) -> list[np.ndarray]:
    """f [N, D] averaged over the last k frames for each k (the first frames average what there is)."""
    n, cum = len(f), np.cumsum(f, 0)
    return [
        (cum - np.vstack([np.zeros((k, f.shape[1])), cum])[:n]) / np.minimum(np.arange(1, n + 1), k)[:, None]
        for k in ks
    ]


def frame_features(c: np.ndarray, s: np.ndarray, s_fg: np.ndarray) -> np.ndarray:
    n = len(c)
    r = (c[..., MAG] / s).reshape(n, -1)
    top_r = -np.sort(-r, 1)[:, :8]
    top_fg = -np.sort(-(c[..., FG] / s_fg).reshape(n, -1), 1)[:, :4]
    moving = (c[..., MAG] > 0.3).reshape(n, -1)
    count = moving.sum(1)
    mean_r = (r * moving).sum(1) / np.maximum(count, 1)
    top = r.argmax(1)
    dirs = c[..., DIRS].reshape(n, -1, len(DIRS))[np.arange(n), top]
    shares = dirs / (dirs.sum(1, keepdims=True) + 1e-6)
    f = np.column_stack([top_r, top_fg, count, mean_r, shares, top // c.shape[2]])
    return np.hstack([f, *causal_means(f, CONTEXT)])


def deep_features(f: np.ndarray, m: np.ndarray, tau: float = 6.0) -> np.ndarray:
    """Per frame, from the CNN's features f [N, H, W, 64] and frame differences m [N, H, W]."""
    n, moving = len(f), m > tau
    count = moving.reshape(n, -1).sum(1)
    top = np.where(moving[..., None], f, -np.inf).reshape(n, -1, f.shape[-1]).max(1)
    top[~np.isfinite(top)] = 0
    mean = (f * moving[..., None]).reshape(n, -1, f.shape[-1]).sum(1) / np.maximum(count, 1)[:, None]
    x = np.column_stack([top, mean, count, m.reshape(n, -1).max(1)])
    return np.hstack([x, *causal_means(x, (5,))])


def out_of_fold(xs: list[np.ndarray], ys: list[np.ndarray]) -> list[np.ndarray]:
    """Each clip's frames scored by a classifier fitted on the other folds' clips."""
    fold = np.arange(len(xs)) % FOLDS
    out: list[np.ndarray] = [np.empty(0)] * len(xs)
    for k in range(FOLDS):
        fit_on = fold != k
        clf = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, max_leaf_nodes=15, random_state=0)
        clf.fit(
            np.vstack([x for x, f in zip(xs, fit_on, strict=True) if f]),
            np.concatenate([v for v, f in zip(ys, fit_on, strict=True) if f]),
        )
        for i in np.nonzero(~fit_on)[0]:
            out[i] = clf.predict_proba(xs[i])[:, 1]
    return out


def ceiling(scene: str, edge: str, with_deep: bool = False) -> dict[str, float]:
    train, test, y = cached_features(scene, edge)
    s = scalep.fit(train)
    fg = np.concatenate([c[..., FG] for c in train])
    s_fg = np.maximum(scalep.neighbourhood_quantile(fg, 99.0, 1), 1e-3)
    grid = [frame_features(c, s, s_fg) for c in test]
    ys = np.split(y, np.cumsum([len(x) for x in grid])[:-1])

    def auc(scores, alpha):
        return round(float(roc_auc_score(y, np.concatenate([_ema(x, alpha) for x in scores]))), 4)

    out = {"scalep (EMA 0.5)": auc([scalep.score_numpy(c[:, None], s)[0] for c in test], 0.5)}
    sets = {"grid": grid}
    if with_deep:
        from research.deep_appearance import extract, load

        extract(scene)
        deep = [deep_features(f, m) for f, m in load(scene, "Test", 16)]
        sets |= {"CNN": deep, "grid and CNN": [np.hstack(p) for p in zip(grid, deep, strict=True)]}
    for name, features in sets.items():
        scores = out_of_fold(features, ys)
        out[f"supervised on {name}"] = auc(scores, 1.0)
        out[f"supervised on {name}, EMA 0.5"] = auc(scores, 0.5)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenes", nargs="+", default=["ucsd_ped1", "ucsd_ped2"])
    p.add_argument("--edges", nargs="+", default=["default"], choices=list(EDGE_VARIANTS))
    p.add_argument("--with-deep", action="store_true", help="the pretrained CNN's features too (see above)")
    args = p.parse_args(argv)
    for edge in args.edges:
        for scene in args.scenes:
            print(json.dumps({"edge": edge, "scene": scene, **ceiling(scene, edge, args.with_deep)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
