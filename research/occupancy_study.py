"""Motion where the camera's normal video has none (someone crossing the lawn): does a per-cell
occupancy cue add to scalep? Post hoc: reads test labels, to explain, never to choose.

    nice -n 19 .venv/bin/python -m research.occupancy_study

scalep's row prior floors a cell's scale at the row's walking speed, so a walker on the lawn beside
the walkway scores as normal. The cue here: per cell, the share p of normal training frames whose
motion exceeds a level (with a pseudo-count towards 1e-3); a frame's cell scores its soft activity
(mag / level - 1, clipped to 0-1) times -log p; the frame score is the max over cells. It is
reported alone and as max(scalep, occupancy), each divided by its 99th percentile on the second
half of the training clips when fitted on the first half. Also per test clip: the within-clip AUC and
the median score of its normal frames, which shows why the pooled AUC falls.
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

from models.scorers import scalep  # noqa: E402
from models.train import _ema  # noqa: E402
from research.ped1_ceiling import MAG, features  # noqa: E402


def occupancy(train: list[np.ndarray], level: float, pseudo: float) -> np.ndarray:
    m = np.concatenate([c[..., MAG] for c in train])
    return ((m > level).sum(0) + pseudo * 1e-3) / (len(m) + pseudo)


def occ_frames(c: np.ndarray, p: np.ndarray, level: float) -> np.ndarray:
    act = np.clip(c[..., MAG] / level - 1, 0, 1)
    return (act * -np.log(p)).reshape(len(c), -1).max(1)


def scalep_frames(c: np.ndarray, s: np.ndarray) -> np.ndarray:
    return (c[..., MAG] / s).reshape(len(c), -1).max(1)


def study(scene: str) -> dict:
    train, test, y = features(scene, {})
    s, half = scalep.fit(train), len(train) // 2
    sp = [scalep_frames(c, s) for c in test]
    out = {"scalep": roc_auc_score(y, np.concatenate([_ema(x, 0.5) for x in sp]))}
    for level in (0.3, 1.0):
        for pseudo in (1, 10):
            p = occupancy(train, level, pseudo)
            oc = [occ_frames(c, p, level) for c in test]
            out[f"occupancy level {level} pseudo {pseudo}"] = roc_auc_score(
                y, np.concatenate([_ema(x, 0.5) for x in oc])
            )
            pa, sa = occupancy(train[:half], level, pseudo), scalep.fit(train[:half])
            qo = np.percentile(np.concatenate([occ_frames(c, pa, level) for c in train[half:]]), 99)
            qs = np.percentile(np.concatenate([scalep_frames(c, sa) for c in train[half:]]), 99)
            both = [_ema(np.maximum(a / qs, b / qo), 0.5) for a, b in zip(sp, oc, strict=True)]
            out[f"max(scalep, occupancy) level {level} pseudo {pseudo}"] = roc_auc_score(y, np.concatenate(both))
    p, off, clips = occupancy(train, 1.0, 10), 0, {}
    for i, c in enumerate(test, 1):
        yy = y[off : off + len(c)]
        off += len(c)
        if 0 < yy.mean() < 1:
            a, b = _ema(scalep_frames(c, s), 0.5), _ema(occ_frames(c, p, 1.0), 0.5)
            clips[i] = {
                "within-clip AUC scalep / occupancy": [round(roc_auc_score(yy, x), 3) for x in (a, b)],
                "normal median scalep / occupancy": [round(float(np.median(x[~yy])), 2) for x in (a, b)],
            }
    return {"pooled AUC": {k: round(float(v), 4) for k, v in out.items()}, "per clip": clips}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenes", nargs="+", default=["ucsd_ped1", "ucsd_ped2"])
    cv2.setNumThreads(1)
    for scene in p.parse_args(argv).scenes:
        print(json.dumps({scene: study(scene)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
