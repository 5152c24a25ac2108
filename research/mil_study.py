"""Does weak supervision help? Leave-one-anomalous-clip-out on a labelled folder (default Ped2).

For each labelled anomalous test clip, MIL is trained with the *other* anomalous clips as positive
bags (clip labels only) and the normal training clips as negative bags, then scores the held-out clip;
the unsupervised scalep model scores the same clip. Frame AUC is pooled over the held-out clips, on
the causally smoothed score (EMA as in the detector).

    python -m research.mil_study --data ../shared/datasets/ucsd_ped2
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from models.evaluate import load_labels
from models.scorers import mil, scalep
from models.train import _ema, extract
from vad.config import load_config


def study(data: Path, alpha: float = 0.5) -> dict:
    cfg = load_config()
    labels, _fps = load_labels(data / "labels.json")
    normal = list(extract(data / "train", cfg.edge, "normal clips").values())
    test = extract(data / "test", cfg.edge, "labelled clips")
    anomalous = [k for k in test if labels.get(k)]
    scale = scalep.fit(normal)
    scales = mil.fit_scales(normal)
    ys, s_sup, s_mil, weights = [], [], [], {}
    for held in anomalous:
        w, b = mil.train([test[k] for k in anomalous if k != held], normal, scales)
        weights[held] = [float(w[0]), float(w[1]), b]
        g = test[held]
        y = np.zeros(len(g), np.int8)
        for a, bb in labels[held]:
            y[max(a, 0) : bb + 1] = 1
        ys.append(y)
        s_sup.append(_ema(scalep.score_numpy(g[:, None], scale)[0], alpha))
        s_mil.append(_ema(mil.score_numpy(g, scales, w, b)[0], alpha))
    y = np.concatenate(ys)
    return {
        "held_out_clips": anomalous,
        "frame_auc_scalep": float(roc_auc_score(y, np.concatenate(s_sup))),
        "frame_auc_mil": float(roc_auc_score(y, np.concatenate(s_mil))),
        "weights": weights,
    }


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "datasets" / "ucsd_ped2"))
    print(json.dumps(study(Path(p.parse_args().data))))
