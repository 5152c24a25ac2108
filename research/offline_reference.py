"""How much of the gap to the published anchors is the protocol? Reference only: reads test labels.

    nice -n 19 .venv/bin/python -m research.offline_reference --model-dir /tmp/h5 [--scenes ucsd_ped1 ucsd_ped2]

Each scene's model (``<model-dir>/<scene>/model.onnx``, from ``vad train --data
../shared/datasets/<scene> --out <model-dir>/<scene>``) scores the scene's test clips as ``vad
evaluate`` does; the same per-frame model scores are then turned into a frame score five ways and
pooled over the clips: the product's causal EMA, and the offline forms the anchors' papers use
(per-video min-max normalisation, which needs each clip's whole score range, and centred smoothing,
which needs the frames after). Nothing here is a product setting.
Findings: research/FINDINGS-issue26.md ("The anchors' protocol").
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter1d
from sklearn.metrics import roc_auc_score

from models.evaluate import clip_result, evaluate, load_labels
from models.train import _ema
from research.ped1_ceiling import DATA
from vad.config import load_config


def _minmax(s: np.ndarray) -> np.ndarray:
    return (s - s.min()) / (np.ptp(s) + 1e-9)


FORMS = {
    "causal EMA 0.5 (the product's)": lambda s: _ema(s, 0.5),
    "per-video min-max of the raw score": _minmax,
    "per-video min-max of the EMA": lambda s: _minmax(_ema(s, 0.5)),
    "centred Gaussian, sigma 3 frames": lambda s: gaussian_filter1d(s, 3),
    "centred Gaussian, sigma 3 frames, then per-video min-max": lambda s: _minmax(gaussian_filter1d(s, 3)),
}


def scene_table(scene: str, model: Path) -> dict[str, float]:
    data = DATA / scene
    raw: dict[str, np.ndarray] = {}
    evaluate(data, model, load_config(None), raw=raw)
    labels, _ = load_labels(data / "labels.json")
    scores = {stem: np.asarray(s, np.float64) for stem, s in raw.items()}
    # The labels as vad evaluate lays them over the frames (every frame sampled here).
    y = np.concatenate(
        [clip_result(st, s, s, [], labels[st], np.arange(len(s)), len(s)).labels for st, s in scores.items()]
    )
    return {
        name: round(float(roc_auc_score(y, np.concatenate([form(s) for s in scores.values()]))), 4)
        for name, form in FORMS.items()
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-dir", type=Path, required=True)
    p.add_argument("--scenes", nargs="+", default=["ucsd_ped1", "ucsd_ped2"])
    a = p.parse_args()
    print(json.dumps({s: scene_table(s, a.model_dir / s / "model.onnx") for s in a.scenes}, indent=1))


if __name__ == "__main__":
    main()
