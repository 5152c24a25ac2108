"""Does accumulating evidence over time (CUSUM) rank the slow anomalies better than the detector's
EMA? Post hoc: reads test labels, to explain, never to choose.

    nice -n 19 .venv/bin/python -m research.cusum_probe

scalep's frame score (max over cells of motion / the cell's normal scale) is smoothed causally by an
EMA (the detector's) or by a one-sided CUSUM, S_t = max(0, S_t-1 + x_t - k), whose reference k is a
quantile of held-out normal training scores (scale fitted on the first half of the training clips,
quantile read on the second half): the classic detector of a small persistent shift, which is what
Ped1's slow anomalies look like (scores barely above the clip's normal frames, for many frames).

Also evidence accumulated per cell along motion paths rather than per frame: P_t = a x_t + (1 - a)
maxpool_k(P_t-1) over the grid of cell scores x_t (an EMA that follows an object from cell to
neighbouring cell), the frame score the max of P_t, with and without the detector's EMA after it;
sporadic spikes at scattered cells of a crowd fade, a fast object's path persists.
"""

from __future__ import annotations

import json

import numpy as np
from scipy.ndimage import maximum_filter
from sklearn.metrics import roc_auc_score

from models.scorers import scalep
from models.train import _ema
from research.offpath_study import cached_features
from research.ped1_ceiling import MAG


def frame_scores(c: np.ndarray, s: np.ndarray) -> np.ndarray:
    return scalep.score_numpy(c[:, None], s)[0]


def cusum(x: np.ndarray, k: float) -> np.ndarray:
    out, acc = np.empty(len(x)), 0.0
    for i, v in enumerate(x):
        acc = max(0.0, acc + v - k)
        out[i] = acc
    return out


def path_ema(c: np.ndarray, s: np.ndarray, a: float, k: int) -> np.ndarray:
    out, acc = np.empty(len(c)), None
    for i, x in enumerate(c[..., MAG] / s):
        acc = x if acc is None else a * x + (1 - a) * maximum_filter(acc, size=k, mode="nearest")
        out[i] = acc.max()
    return out


def main() -> int:
    for scene in ("ucsd_ped1", "ucsd_ped2"):
        train, test, y = cached_features(scene)
        s, half = scalep.fit(train), len(train) // 2
        held = np.concatenate([frame_scores(c, scalep.fit(train[:half])) for c in train[half:]])
        xs = [frame_scores(c, s) for c in test]
        out = {f"EMA {a}": roc_auc_score(y, np.concatenate([_ema(x, a) for x in xs])) for a in (0.5, 0.2, 0.1)}
        for q in (90, 95, 99, 99.9):
            k = float(np.percentile(held, q))
            out[f"CUSUM k = normal q{q} ({k:.2f})"] = roc_auc_score(y, np.concatenate([cusum(x, k) for x in xs]))
        for a in (0.2, 0.3, 0.5, 0.7):
            for k in (3, 5):
                ps = [path_ema(c, s, a, k) for c in test]
                for e in (1.0, 0.5):
                    out[f"path EMA a {a} k {k}, then EMA {e}"] = roc_auc_score(
                        y, np.concatenate([_ema(x, e) for x in ps])
                    )
        print(json.dumps({scene: {name: round(float(v), 4) for name, v in out.items()}}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
