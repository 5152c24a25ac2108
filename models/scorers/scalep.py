"""Per-cell, perspective-aware motion scale ("scaleP"): the default scorer.

What the camera's own normal video says about each cell: how fast things normally move there. A
cell's scale is a high quantile (q, default 99 %) of its normal flow magnitude, pooled over its 3x3
neighbourhood (more samples for rarely visited cells), and floored by a ground-plane prior — a line
fitted through the per-row quantiles, since on a ground plane the image speed of a walker grows
roughly linearly with the image row. The floor matters: without it a walker in cells that the
training video hardly visited raised false alarms on most frames of a held-out normal clip. The cell
score is the cell's flow magnitude divided by its scale (about 1 for the fastest normal motion
there); the frame score is the max over cells.

Measured against learned temporal models on Ped2 (the research notes in docs/models.md): a shared
per-cell temporal autoencoder and a future-feature predictor, trained on the same normalised features,
scored below this on held-out training clips and on the test clips, and cost 10-20x more per window;
so this is the default and the learned models are not shipped.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from models import tensors
from vad.schema import CHANNELS

MAG = CHANNELS.index("mag")


def neighbourhood_quantile(v: np.ndarray, q: float, radius: int = 1) -> np.ndarray:
    """q-th percentile of v [N, R, C] over each cell's (2 radius + 1)^2 neighbourhood (edges
    repeated): more samples for cells the normal video rarely visited. -> [R, C]"""
    _, rows, cols = v.shape
    k = 2 * radius + 1
    padded = np.pad(v, [(0, 0), (radius, radius), (radius, radius)], mode="edge")
    return np.percentile(
        np.concatenate([padded[:, dy : dy + rows, dx : dx + cols] for dy in range(k) for dx in range(k)]), q, axis=0
    )


def fit(clips: list[np.ndarray], q: float = 99.0, radius: int = 1, min_frac: float = 0.02, move_thr: float = 0.3):
    """Per-cell scale [R, C] from normal clips ([N, R, C, F] feature grids of one camera)."""
    m = np.concatenate([c[..., MAG] for c in clips])  # [N, R, C]
    rows = m.shape[1]
    q_cell = neighbourhood_quantile(m, q, radius)
    # Perspective prior: weighted least squares through the per-row quantiles of rows that move
    # often enough to have a meaningful quantile.
    r = np.arange(rows)
    q_row = np.array([np.percentile(m[:, i], q) for i in r])
    frac = (m > move_thr).mean(axis=(0, 2))
    ok = frac >= min_frac
    if ok.sum() < 2:
        ok[:] = True
    w = np.sqrt(frac[ok])
    coef, *_ = np.linalg.lstsq(np.stack([np.ones(ok.sum()), r[ok]], 1) * w[:, None], q_row[ok] * w, rcond=None)
    row_prior = np.maximum(coef[0] + coef[1] * r, 0.5 * q_row[ok].min())
    # A floor above zero: a scene with no motion at all must not divide by zero.
    return np.maximum(np.maximum(q_cell, row_prior[:, None]), 1e-3).astype(np.float32)


def score_numpy(windows: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reference maths of the ONNX graph: windows [B, T, R, C, F] -> (frame [B], cells [B, R, C])."""
    cells = windows[:, -1, :, :, MAG] / scale
    return cells.reshape(len(cells), -1).max(axis=1), cells


def build_onnx(scale: np.ndarray, window: int) -> onnx.ModelProto:
    rows, cols = scale.shape
    inits = [
        numpy_helper.from_array(np.array([MAG], np.int64), "channel"),
        numpy_helper.from_array(np.array([window - 1], np.int64), "last"),
        numpy_helper.from_array(np.array([-1, rows, cols], np.int64), "cell_shape"),
        numpy_helper.from_array((1.0 / scale).astype(np.float32), "inv_scale"),
    ]
    nodes = [
        helper.make_node("Gather", [tensors.INPUT, "channel"], ["mag"], axis=4),  # [B, T, R, C, 1]
        helper.make_node("Gather", ["mag", "last"], ["mag_last"], axis=1),  # [B, 1, R, C, 1]
        helper.make_node("Reshape", ["mag_last", "cell_shape"], ["mag3"]),  # [B, R, C]
        helper.make_node("Mul", ["mag3", "inv_scale"], [tensors.CELL_SCORES]),
        helper.make_node("ReduceMax", [tensors.CELL_SCORES], [tensors.FRAME_SCORE], axes=[1, 2], keepdims=0),
    ]
    return tensors.scoring_model("vad_scalep", window, rows, cols, nodes, inits)
