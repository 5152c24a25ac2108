"""Does how steadily a region moves separate gliding anomalies (skaters, bikers, carts, wheelchairs)
from walkers, whose flow pulses with their gait? Post hoc: reads test labels, to explain, never to
choose.

    .venv/bin/python -m research.steadiness_probe

On the default edge's features (research.offpath_study's cache): per cell, the flow magnitude
max-pooled over its 3x3 neighbourhood (so an object crossing a cell border is one series), then over
the last T sampled frames, when the region moved in every one of them, its mean over its standard
deviation (a floor of 5 % of the mean keeps a constant series finite). Each cell's value is divided
by its 99th percentile on the training clips; the frame score is the max over cells, smoothed as the
detector does (EMA 0.5). Also its max with scalep, each over its 99th percentile on the training
clips. Findings: research/FINDINGS-issue26.md ("How steadily a region moves").
"""

from __future__ import annotations

import json

import cv2
import numpy as np
from sklearn.metrics import roc_auc_score

from models.scorers import scalep
from models.train import _ema
from research.offpath_study import cached_features
from research.ped1_ceiling import MAG

MOVING = 0.3  # pixels a frame: the level scalep's fit counts as motion


def steadiness(clip: np.ndarray, t: int) -> np.ndarray:
    kernel = np.ones((3, 3), np.uint8)
    m = np.stack([cv2.dilate(f, kernel) for f in clip[..., MAG].astype(np.float32)])
    out = np.zeros(m.shape, np.float32)
    for i in range(len(m)):
        w = m[max(0, i - t + 1) : i + 1]
        mean = w.mean(0)
        out[i] = np.where(w.min(0) > MOVING, mean / (w.std(0) + 0.05 * mean + 1e-3), 0.0)
    return out


def probe(scene: str, t: int) -> dict:
    train, test, y = cached_features(scene)
    held = np.concatenate([steadiness(c, t) for c in train])
    pooled_q99 = np.percentile(held[held > 0], 99)
    moving = held > 0
    q = np.array(
        [
            [
                np.percentile(held[:, i, j][moving[:, i, j]], 99) if moving[:, i, j].sum() >= 50 else pooled_q99
                for j in range(held.shape[2])
            ]
            for i in range(held.shape[1])
        ],
        np.float32,
    )
    s = scalep.fit(train)

    def frame(c):
        return (steadiness(c, t) / q).reshape(len(c), -1).max(1)

    k_q99 = np.percentile(np.concatenate([frame(c) for c in train]), 99)
    sp_q99 = np.percentile(np.concatenate([scalep.score_numpy(c[:, None], s)[0] for c in train]), 99)
    st = [frame(c) for c in test]
    sp = [scalep.score_numpy(c[:, None], s)[0] for c in test]

    def auc(xs):
        return round(float(roc_auc_score(y, np.concatenate([_ema(x, 0.5) for x in xs]))), 4)

    out = {"scalep": auc(sp), f"steadiness T{t}": auc(st)}
    out[f"max(scalep, steadiness T{t})"] = auc([np.maximum(a / sp_q99, b / k_q99) for a, b in zip(sp, st, strict=True)])
    within, at = [], 0
    for x in st:
        yy = y[at : at + len(x)]
        at += len(x)
        if 0 < yy.sum() < len(yy):
            within.append(roc_auc_score(yy, _ema(x, 0.5)))
    out[f"steadiness T{t}, within-clip AUC median"] = round(float(np.median(within)), 3)
    return out


def main() -> int:
    for scene in ("ucsd_ped1", "ucsd_ped2"):
        for t in (5, 8):
            print(json.dumps({scene: probe(scene, t)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
