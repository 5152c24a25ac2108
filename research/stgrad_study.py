"""Spatio-temporal gradient cubes scored by per-location subspaces (after Lu, Shi and Jia, ICCV 2013,
"Abnormal event detection at 150 fps"): does an appearance-and-motion cue of this kind hold on Ped1?

    nice -n 19 .venv/bin/python -m research.stgrad_study [--scenes ucsd_ped1 ucsd_ped2]

Each frame is resized to 120 rows; at three scales (1, 1/2, 1/4) the absolute 3D gradients
(|dx|, |dy|, |dt|) of non-overlapping 10x10-pixel patches over the last 5 frames form one vector
(1,500 values) per patch, kept only where the patch moves (mean |dt| above a floor). Per scale a
PCA fitted on training cubes reduces them to 100 dimensions; per patch location, "sparse
combinations" are learned greedily: a 20-dimensional subspace is fitted to the remaining training
vectors, the ones it reconstructs within lambda are removed, and so on. A test cube's score is
its smallest residual over its location's combinations divided by lambda; the frame's score is the
max over cubes, smoothed causally (EMA 0.5) as the detector does. Settings are the paper's, not
tuned here. Test labels are read only to report the pooled frame AUC per scene.
"""

from __future__ import annotations

import argparse
import json
import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from models.train import _ema  # noqa: E402
from research.ped1_ceiling import clips  # noqa: E402

ROWS, PATCH, DEPTH, SCALES = 120, 10, 5, (1, 2, 4)
PCA_DIM, SUB_DIM = 100, 20


def frames(path) -> np.ndarray:
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        g = cv2.cvtColor(f, cv2.COLOR_BGR2GRAY)
        w = round(g.shape[1] * ROWS / g.shape[0])
        out.append(cv2.resize(g, (w, ROWS), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0)
    cap.release()
    return np.stack(out)


def cubes(v: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """(frames, locations, 1500) gradient cubes ending at each frame (the first DEPTH-1 frames
    repeat the first), and (frames, locations) motion energy (mean |dt|)."""
    if scale > 1:
        v = np.stack([cv2.resize(f, None, fx=1 / scale, fy=1 / scale, interpolation=cv2.INTER_AREA) for f in v])
    n, h, w = v.shape
    h, w = h - h % PATCH, w - w % PATCH
    v = v[:, :h, :w]
    gx = np.abs(np.gradient(v, axis=2))
    gy = np.abs(np.gradient(v, axis=1))
    gt = np.abs(np.diff(v, axis=0, prepend=v[:1]))
    g = np.stack([gx, gy, gt], -1)  # n h w 3
    r, c = h // PATCH, w // PATCH
    g = g.reshape(n, r, PATCH, c, PATCH, 3).transpose(0, 1, 3, 2, 4, 5).reshape(n, r * c, PATCH * PATCH * 3)
    idx = np.clip(np.arange(n)[:, None] - np.arange(DEPTH - 1, -1, -1)[None], 0, n - 1)
    out = g[idx].transpose(0, 2, 1, 3).reshape(n, r * c, -1)
    energy = g[..., 2::3].mean(-1)
    return out, energy[idx].mean(1)


def combos(x: np.ndarray, lam_q: float = 90.0, max_combos: int = 10) -> tuple[list[np.ndarray], float]:
    """Greedy sparse combinations: orthonormal (SUB_DIM, d) bases; lambda = the lam_q percentile of
    the first subspace's training residuals."""
    bases, rest, lam = [], x, None
    while len(rest) > SUB_DIM and len(bases) < max_combos:
        _, _, vt = np.linalg.svd(rest, full_matrices=False)
        b = vt[:SUB_DIM]
        res = ((rest - rest @ b.T @ b) ** 2).sum(1)
        if lam is None:
            lam = float(np.percentile(res, lam_q)) + 1e-9
        bases.append(b)
        rest = rest[res > lam]
    return bases, lam if lam is not None else 1.0


def residual(x: np.ndarray, bases: list[np.ndarray]) -> np.ndarray:
    sq = (x**2).sum(-1)
    return np.min([sq - ((x @ b.T) ** 2).sum(-1) for b in bases], axis=0)


def study(scene: str, motion_floor: float, train_step: int) -> dict:
    train, test, y = clips(scene, frames)
    per_scale = []
    for s in SCALES:
        rng = np.random.default_rng(0)
        sample = []
        for v in train:
            c, en = cubes(v, s)
            mv = c[::train_step][en[::train_step] > motion_floor]
            sample.append(mv[rng.choice(len(mv), min(len(mv), 20000 // len(train)), replace=False)])
        sample = np.concatenate(sample)
        mean = sample.mean(0)
        _, _, vt = np.linalg.svd(sample - mean, full_matrices=False)
        proj = vt[:PCA_DIM]
        xs, es = [], []
        for v in train:
            c, en = cubes(v, s)
            xs.append((c[::train_step] - mean) @ proj.T)
            es.append(en[::train_step])
        x, e = np.concatenate(xs), np.concatenate(es)
        moving = e > motion_floor
        models = []
        for loc in range(x.shape[1]):
            xl = x[moving[:, loc], loc]
            models.append(combos(xl) if len(xl) > 4 * SUB_DIM else None)
        scores = []
        for v in test:
            c, en = cubes(v, s)
            sc = np.zeros(en.shape, np.float32)
            z = (c - mean) @ proj.T
            for loc, mdl in enumerate(models):
                mv = en[:, loc] > motion_floor
                if not mv.any():
                    continue
                if mdl is None:
                    sc[mv, loc] = 10.0  # motion where training never had any
                    continue
                bases, lam = mdl
                sc[mv, loc] = residual(z[mv, loc], bases) / lam
            scores.append(sc.max(1))
        per_scale.append(scores)
        print(scene, "scale", s, "locations", x.shape[1], "train cubes", int(moving.sum()), flush=True)
    out = {}
    for i, s in enumerate(SCALES):
        out[f"scale {s}"] = float(roc_auc_score(y, np.concatenate([_ema(c, 0.5) for c in per_scale[i]])))
    frame = [np.max([per_scale[i][k] for i in range(len(SCALES))], axis=0) for k in range(len(test))]
    out["max over scales"] = float(roc_auc_score(y, np.concatenate([_ema(c, 0.5) for c in frame])))
    np.savez(f"/tmp/stgrad_{scene}.npz", *[_ema(c, 0.5) for c in frame], y=y)
    return {k: round(v, 4) for k, v in out.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenes", nargs="+", default=["ucsd_ped1", "ucsd_ped2"])
    p.add_argument("--motion-floor", type=float, default=0.01)
    p.add_argument("--train-step", type=int, default=2)
    a = p.parse_args(argv)
    cv2.setNumThreads(1)
    for scene in a.scenes:
        print(json.dumps({scene: study(scene, a.motion_floor, a.train_step)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
