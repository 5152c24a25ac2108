"""Baseline scorer: per-cell standard scores of the window-mean motion features.

Each cell learns the mean and spread of its own normal motion (magnitude, direction histogram,
foreground), so a cell where people normally walk fast and one where nothing moves are judged each by
its own history. The score of a cell is its largest positive standard score over channels.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from models import tensors
from vad.schema import CHANNELS
from vad.windows import clip_windows

USED = [CHANNELS.index(c) for c in CHANNELS if c not in ("dx", "dy")]
# Spread floor as a fraction of the channel's global spread: a cell that never moved in training
# would otherwise turn the faintest noise into a huge score.
SD_FLOOR = 0.5


def fit(clips: list[np.ndarray], window: int) -> dict[str, np.ndarray]:
    means = np.concatenate([clip_windows(g, window).mean(axis=1) for g in clips])  # [N, R, C, F]
    mu = means.mean(axis=0)
    var = means.var(axis=0)
    floor = (SD_FLOOR * means.reshape(-1, means.shape[-1]).std(axis=0)) ** 2
    sd = np.sqrt(var + floor + 1e-12)
    unused = np.ones(means.shape[-1], bool)
    unused[USED] = False
    sd[..., unused] = 1e9  # channels the baseline ignores score ~0
    return {"mu": mu.astype(np.float32), "sd": sd.astype(np.float32)}


def build_onnx(params: dict[str, np.ndarray], window: int) -> onnx.ModelProto:
    mu, sd = params["mu"], params["sd"]
    rows, cols, _ = mu.shape
    nodes = [
        helper.make_node("ReduceMean", [tensors.INPUT], ["m"], axes=[1], keepdims=0),
        helper.make_node("Sub", ["m", "mu"], ["d"]),
        helper.make_node("Mul", ["d", "inv_sd"], ["z"]),
        helper.make_node("Relu", ["z"], ["zp"]),
        helper.make_node("ReduceMax", ["zp"], [tensors.CELL_SCORES], axes=[3], keepdims=0),
        helper.make_node("ReduceMax", [tensors.CELL_SCORES], [tensors.FRAME_SCORE], axes=[1, 2], keepdims=0),
    ]
    inits = [numpy_helper.from_array(mu, "mu"), numpy_helper.from_array((1.0 / sd).astype(np.float32), "inv_sd")]
    return tensors.scoring_model("vad_baseline", window, rows, cols, nodes, inits)
