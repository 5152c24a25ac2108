"""Motion off the camera's normal paths (someone on the lawn at walking pace): does lowering scalep's
row-prior floor in cells the normal video never moves in help, on both scenes?

    nice -n 19 .venv/bin/python -m research.offpath_study

scalep floors each cell's scale at the row's walking speed, so a walker on the lawn scores about 1,
like a walker on the walkway. Here a cell is "on a path" if its normal motion (magnitude above
scalep's move_thr) occurs in at least f_min of the normal frames, grown by r cells; in the other
cells the floor is gamma x the row prior (gamma 1 is scalep), while a cell's own high quantile (a tree
that sways in the normal video) still bounds it from below.

Settings are chosen on training clips only: folds of each scene's training clips are held out in
turn, the scale is fitted on the rest, and the held-out clips are scored as normal (label 0) against
the same clips with a "lawn walker" pasted in at the feature level (label 1): in every frame, the
moving on-path cell with the largest motion of a row is copied to the nearest off-path cell of that
row. The proxy AUC of the causal score (EMA 0.5) rewards a low gamma; the held-out normal frames'
scores above the fold's 99.9th percentile of scalep's held-out normal scores (the false alarms the
change would add) penalise it. The rule, fixed before the test clips are scored: among settings that
add at most 0.1 point of held-out false alarms in either scene, the best worse-scene proxy AUC. The
test AUCs of every setting are printed side by side after that, for the record.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from models.scorers import scalep  # noqa: E402
from models.train import _ema  # noqa: E402
from research.ped1_ceiling import EDGE_VARIANTS, MAG, features  # noqa: E402

CACHE = Path("/tmp/vad-offpath")
GAMMAS = (1.0, 0.75, 0.5, 0.35)
F_MINS = (0.005, 0.02)
GROWS = (1, 2)
FOLDS = 3


def cached_features(scene: str, edge: str = "default"):
    """(training grids, test grids, test labels) of one of ped1_ceiling's EDGE_VARIANTS, cached."""
    f = CACHE / (f"{scene}.npz" if edge == "default" else f"{scene}--{edge.replace(' ', '-')}.npz")
    if not f.exists():
        train, test, y = features(scene, EDGE_VARIANTS[edge])
        CACHE.mkdir(parents=True, exist_ok=True)
        np.savez(f, *train, *test, y=y, n_train=len(train))
    z = np.load(f)
    arrs = [z[f"arr_{i}"] for i in range(len(z.files) - 2)]
    n = int(z["n_train"])
    return arrs[:n], arrs[n:], z["y"]


def fit_with_held_q99(clips: list[np.ndarray], move_thr: float = 0.3) -> tuple[np.ndarray, float]:
    """scalep fitted on the clips, and its held-out 99th percentile of frame scores (fitted on the
    even clips, scoring the odd ones): the unit a combination divides each member's score by."""
    half = scalep.fit(clips[0::2], move_thr=move_thr)
    q99 = np.percentile(np.concatenate([scalep.score_numpy(c[:, None], half)[0] for c in clips[1::2]]), 99)
    return scalep.fit(clips, move_thr=move_thr), float(q99)


def scalep_baseline(scene: str):
    """(test labels, pooled AUC of causal frame scores, scalep's test frame scores, its held-out
    99th percentile) on the cached features of the default edge."""
    train, test, y = cached_features(scene)

    def auc(frame_scores):
        return round(float(roc_auc_score(y, np.concatenate([_ema(x, 0.5) for x in frame_scores]))), 4)

    s, q99 = fit_with_held_q99(train)
    return y, auc, [scalep.score_numpy(c[:, None], s)[0] for c in test], q99


def grow(mask: np.ndarray, r: int) -> np.ndarray:
    return cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=r).astype(bool) if r else mask


def on_path(train: list[np.ndarray], f_min: float, r: int, move_thr: float = 0.3) -> np.ndarray:
    return _on_path(np.concatenate([c[..., MAG] for c in train]), f_min, r, move_thr)


def _on_path(m: np.ndarray, f_min: float, r: int, move_thr: float = 0.3) -> np.ndarray:
    return grow((m > move_thr).mean(0) >= f_min, r)


def fit(train: list[np.ndarray], gamma: float, f_min: float, r: int) -> np.ndarray:
    if gamma == 1.0:
        return scalep.fit(train)
    m = np.concatenate([c[..., MAG] for c in train])
    return lowered_floor(train, ~_on_path(m, f_min, r), gamma)


def lowered_floor(train: list[np.ndarray], off: np.ndarray, gamma: float) -> np.ndarray:
    """scalep fitted on the clips, its floor lowered to gamma x its scale in the ``off`` cells [R, C],
    a cell's own 99th percentile still bounding it from below."""
    s = scalep.fit(train)
    m = np.concatenate([c[..., MAG] for c in train])
    low = np.maximum(gamma * s, scalep.neighbourhood_quantile(m, 99.0, 0))
    return np.where(off, np.minimum(s, low), s).astype(np.float32)


def frame_scores(c: np.ndarray, s: np.ndarray) -> np.ndarray:
    return _ema(scalep.score_numpy(c[:, None], s)[0], 0.5)


def lawn_walker(c: np.ndarray, path: np.ndarray, move_thr: float = 0.3) -> np.ndarray:
    """The clip with, in each frame and row, its fastest moving on-path cell copied to the nearest
    off-path cell of the row (rows with no off-path cell or no motion unchanged)."""
    out = c.copy()
    cols = np.arange(c.shape[2])
    for i in range(c.shape[1]):
        off_cols = cols[~path[i]]
        if not len(off_cols):
            continue
        for t in range(len(c)):
            mags = np.where(path[i], c[t, i, :, MAG], -1)
            j = int(mags.argmax())
            if mags[j] <= move_thr:
                continue
            k = off_cols[np.abs(off_cols - j).argmin()]
            out[t, i, k] = c[t, i, j]
    return out


def proxy(train: list[np.ndarray], setting: tuple[float, float, int]) -> dict[str, float]:
    gamma, f_min, r = setting
    idx = np.arange(len(train))
    normal, anomal, base = [], [], []
    for k in range(FOLDS):
        held = idx % FOLDS == k
        fit_on = [c for c, h in zip(train, held, strict=True) if not h]
        s, s0, path = fit(fit_on, gamma, f_min, r), scalep.fit(fit_on), on_path(fit_on, 0.02, 1)
        for c in (c for c, h in zip(train, held, strict=True) if h):
            normal.append(frame_scores(c, s))
            base.append(frame_scores(c, s0))
            anomal.append(frame_scores(lawn_walker(c, path), s))
    n, a, b = np.concatenate(normal), np.concatenate(anomal), np.concatenate(base)
    auc = roc_auc_score(np.r_[np.zeros(len(n)), np.ones(len(a))], np.r_[n, a])
    fa = (n > np.percentile(b, 99.9)).mean() * 100
    return {"proxy AUC": round(float(auc), 4), "held-out FA %": round(float(fa), 3)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenes", nargs="+", default=["ucsd_ped1", "ucsd_ped2"])
    scenes = p.parse_args(argv).scenes
    cv2.setNumThreads(1)
    data = {scene: cached_features(scene) for scene in scenes}
    settings = [(1.0, 0.0, 0)] + [(g, f, r) for g in GAMMAS[1:] for f in F_MINS for r in GROWS]
    rows = {}
    for st in settings:
        rows[st] = {scene: proxy(data[scene][0], st) for scene in scenes}
        print(json.dumps({"setting": st, "training": rows[st]}), flush=True)
    base_fa = {scene: rows[settings[0]][scene]["held-out FA %"] for scene in scenes}
    ok = [st for st in settings if all(rows[st][sc]["held-out FA %"] <= base_fa[sc] + 0.1 for sc in scenes)]
    chosen = max(ok, key=lambda st: min(rows[st][sc]["proxy AUC"] for sc in scenes))
    print(json.dumps({"chosen on training clips": chosen}), flush=True)
    for st in settings:
        test = {}
        for scene in scenes:
            train, clips, y = data[scene]
            s = fit(train, *st)
            test[scene] = round(float(roc_auc_score(y, np.concatenate([frame_scores(c, s) for c in clips]))), 4)
        print(json.dumps({"setting": st, "test AUC": test, "chosen": st == chosen}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
