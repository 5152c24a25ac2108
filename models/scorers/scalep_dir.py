"""Direction-aware scalep ("scalep_dir"): scalep's speed score, plus how unusual the motion's
direction is in that cell.

scalep (models/scorers/scalep.py) scores speed only, so something moving the wrong way at a normal speed
cannot raise its score. The feature grid already carries a magnitude-weighted direction histogram
per cell (``dir0..7``; vad/edge/features.py: each bin is the cell mean of the flow magnitude of the
pixels moving in that direction, in px/frame, and the bins sum to ``mag``), so a bin is in the units
of scalep's scale.

Per cell and direction bin b, a scale s_b: the q-quantile (default 98 %) of that bin over the normal
frames, pooled over the cell's 3x3 neighbourhood as scalep's is, floored by ``alpha`` (default 0.4)
times the cell's scalep scale, so a direction never seen there is 1/alpha times as surprising as the
fastest normal motion, not infinitely::

    s_b  = max(quantile_q(dir_b), alpha * scale)        (<= scale: a bin never exceeds mag)
    cell = max(mag / scale, max_b dir_b / s_b)

With alpha = 1 every s_b is the scale and this is scalep exactly; the direction term only ever adds
to it. q and alpha were chosen leave-one-clip-out on the Ped2 training clips against synthetic speed
and wrong-direction anomalies (research/direction_study.py, docs/models.md). The exported graph is
scalep's plus a slice, a multiply, a reduction and a max: ~2.4 µs per window at batch 256 (scalep ~0.7).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from models import tensors
from models.scorers import scalep
from vad.schema import CHANNELS, DIRECTION_BINS

MAG = CHANNELS.index("mag")
DIR0 = CHANNELS.index("dir0")


def fit(clips: list[np.ndarray], q: float = 98.0, alpha: float = 0.4, radius: int = 1) -> dict[str, np.ndarray]:
    """{"scale": [R, C] (scalep's), "inv_dir": [R, C, 8] (1 / s_b)} from normal clips ([N, R, C, F])."""
    if not 0 < alpha <= 1:
        raise ValueError(f"alpha must be in (0, 1], got {alpha}")
    scale = scalep.fit(clips, radius=radius)
    rows, cols = scale.shape
    s = np.empty((rows, cols, DIRECTION_BINS), np.float64)
    for b in range(DIRECTION_BINS):  # one bin at a time: the 3x3 stack of all bins is ~9x the clips
        h = np.concatenate([c[..., DIR0 + b] for c in clips])  # [N, R, C]
        s[..., b] = scalep.neighbourhood_quantile(h, q, radius)
    s = np.maximum(s, alpha * scale[..., None])
    return {"scale": scale, "inv_dir": (1.0 / s).astype(np.float32)}


def score_numpy(windows: np.ndarray, params: dict) -> tuple[np.ndarray, np.ndarray]:
    """Reference maths of the ONNX graph: windows [B, T, R, C, F] -> (frame [B], cells [B, R, C])."""
    last = windows[:, -1]
    weighted = last[..., DIR0 : DIR0 + DIRECTION_BINS] * params["inv_dir"]
    cells = np.maximum(last[..., MAG] / params["scale"], weighted.max(axis=-1))
    return cells.reshape(len(cells), -1).max(axis=1), cells


def build_onnx(params: dict, window: int) -> onnx.ModelProto:
    scale, inv_dir = params["scale"], params["inv_dir"]
    rows, cols = scale.shape
    inits = [
        numpy_helper.from_array(np.array([window - 1], np.int64), "last"),
        numpy_helper.from_array(np.array([MAG], np.int64), "mag_channel"),
        numpy_helper.from_array(np.array([-1, rows, cols], np.int64), "cell_shape"),
        numpy_helper.from_array((1.0 / scale).astype(np.float32), "inv_scale"),
        numpy_helper.from_array(np.array([DIR0], np.int64), "dir_start"),
        numpy_helper.from_array(np.array([DIR0 + DIRECTION_BINS], np.int64), "dir_end"),
        numpy_helper.from_array(np.array([4], np.int64), "channel_axis"),
        numpy_helper.from_array(np.array([-1, rows, cols, DIRECTION_BINS], np.int64), "dir_shape"),
        numpy_helper.from_array(inv_dir.astype(np.float32), "inv_dir"),
    ]
    nodes = [
        helper.make_node("Gather", [tensors.INPUT, "last"], ["frame_last"], axis=1),  # [B, 1, R, C, F]
        # speed: scalep's score
        helper.make_node("Gather", ["frame_last", "mag_channel"], ["mag5"], axis=4),
        helper.make_node("Reshape", ["mag5", "cell_shape"], ["mag"]),  # [B, R, C]
        helper.make_node("Mul", ["mag", "inv_scale"], ["speed_score"]),
        # direction: each bin in units of its own normal level
        helper.make_node("Slice", ["frame_last", "dir_start", "dir_end", "channel_axis"], ["dir5"]),
        helper.make_node("Reshape", ["dir5", "dir_shape"], ["dir"]),  # [B, R, C, 8]
        helper.make_node("Mul", ["dir", "inv_dir"], ["weighted"]),
        helper.make_node("ReduceMax", ["weighted"], ["dir_score"], axes=[3], keepdims=0),
        helper.make_node("Max", ["speed_score", "dir_score"], [tensors.CELL_SCORES]),
    ]
    nodes.append(helper.make_node("ReduceMax", [tensors.CELL_SCORES], [tensors.FRAME_SCORE], axes=[1, 2], keepdims=0))
    return tensors.scoring_model("vad_scalep_dir", window, rows, cols, nodes, inits)
