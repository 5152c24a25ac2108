"""Weakly supervised scoring: multiple instance learning from clip-level labels only (Sultani, Chen
and Shah, CVPR 2018), on top of the unsupervised scalep features.

Instances are the per-cell descriptors ``x = [log1p(mag / scale_mag), log1p(fg / scale_fg)]`` (each
channel in units of the cell's own normal level, learned from the normal clips as scalep does); a
cell's score is ``sigmoid(w . x + b)`` and a frame's score is the max over cells, so the job's contract
(frame score = max of cell scores) holds. A clip is a bag of ``segments`` equal segments; a segment's
score is the mean of its frames' scores. The loss for every (anomalous bag, normal bag) pair is the
MIL ranking hinge ``max(0, 1 - max_i s(a_i) + max_j s(n_j))`` plus the paper's temporal smoothness
``l1 * sum_i (s(a_i) - s(a_i+1))^2`` and sparsity ``l2 * sum_i s(a_i)`` on the anomalous bag. The model
is linear in the descriptor, so plain (sub)gradient descent in numpy trains it in seconds.
"""

from __future__ import annotations

import itertools

import numpy as np
import onnx
from onnx import helper, numpy_helper

from models import tensors
from models.scorers import scalep
from vad.schema import CHANNELS

FG = CHANNELS.index("fg")


def fit_scales(normal: list[np.ndarray]) -> np.ndarray:
    """Per-cell normal levels [R, C, 2] of magnitude and foreground."""
    fg = [c.copy() for c in normal]
    for c in fg:
        c[..., scalep.MAG] = c[..., FG]
    return np.stack([scalep.fit(normal), scalep.fit(fg)], axis=-1)


def descriptors(grids: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """[N, R, C, F] grids -> [N, R, C, 2] per-cell descriptors."""
    x = np.stack([grids[..., scalep.MAG], grids[..., FG]], axis=-1) / scales
    return np.log1p(np.maximum(x, 0)).astype(np.float32)


def _segments(n: int, k: int) -> list[np.ndarray]:
    edges = np.linspace(0, n, k + 1).astype(int)
    return [np.arange(a, max(b, a + 1)) for a, b in itertools.pairwise(edges) if a < n]


def _bag(desc: np.ndarray, w: np.ndarray, b: float, k: int):
    """Segment scores of one clip and, per segment, the mean descriptor of its frames' max cells."""
    n = desc.shape[0]
    flat = desc.reshape(n, -1, desc.shape[-1])
    z = flat @ w + b  # [N, cells]
    top = z.argmax(axis=1)
    s_frame = 1 / (1 + np.exp(-z[np.arange(n), top]))
    x_top = flat[np.arange(n), top]  # [N, 2]: the descriptor behind each frame's score
    seg = _segments(n, k)
    s = np.array([s_frame[i].mean() for i in seg])
    # d s_seg / d(w, b) = mean over its frames of s(1 - s) * [x, 1]
    g = np.array([np.mean((s_frame[i] * (1 - s_frame[i]))[:, None] * np.c_[x_top[i], np.ones(len(i))], 0) for i in seg])
    return s, g


def train(
    anomalous: list[np.ndarray],
    normal: list[np.ndarray],
    scales: np.ndarray,
    segments: int = 16,
    epochs: int = 300,
    lr: float = 0.5,
    l1: float = 8e-5,
    l2: float = 8e-5,
    seed: int = 0,
) -> tuple[np.ndarray, float]:
    """Weights (w [2], b) from clips labelled anomalous / normal as whole clips."""
    rng = np.random.default_rng(seed)
    pos = [descriptors(c, scales) for c in anomalous]
    neg = [descriptors(c, scales) for c in normal]
    w, b = rng.normal(0, 0.1, 2), 0.0
    for _ in range(epochs):
        gw, gb, pairs = np.zeros(2), 0.0, 0
        for p in pos:
            sp, gp = _bag(p, w, b, segments)
            ip = int(sp.argmax())
            # smoothness and sparsity on the anomalous bag
            d = np.diff(sp)
            grad_s = l2 * np.ones_like(sp)
            grad_s[:-1] -= 2 * l1 * d
            grad_s[1:] += 2 * l1 * d
            reg = (grad_s[:, None] * gp).sum(0)
            for q in neg:
                sn, gn = _bag(q, w, b, segments)
                jn = int(sn.argmax())
                pairs += 1
                g = reg.copy()
                if 1 - sp[ip] + sn[jn] > 0:
                    g += -gp[ip] + gn[jn]
                gw += g[:2]
                gb += g[2]
        w -= lr * gw / max(pairs, 1)
        b -= lr * gb / max(pairs, 1)
    return w.astype(np.float32), float(b)


def score_numpy(grids: np.ndarray, scales: np.ndarray, w: np.ndarray, b: float) -> tuple[np.ndarray, np.ndarray]:
    cells = 1 / (1 + np.exp(-(descriptors(grids, scales) @ w + b)))
    return cells.reshape(len(cells), -1).max(axis=1), cells


def build_onnx(scales: np.ndarray, w: np.ndarray, b: float, window: int = 1) -> onnx.ModelProto:
    rows, cols, _ = scales.shape
    inits = [
        numpy_helper.from_array(np.array([scalep.MAG, FG], np.int64), "channels"),
        numpy_helper.from_array(np.array([window - 1], np.int64), "last"),
        numpy_helper.from_array(np.array([-1, rows, cols, 2], np.int64), "desc_shape"),
        numpy_helper.from_array((1.0 / scales).astype(np.float32), "inv_scales"),
        numpy_helper.from_array(np.zeros(1, np.float32), "zero"),
        numpy_helper.from_array(np.ones(1, np.float32), "one"),
        numpy_helper.from_array(w.reshape(2, 1).astype(np.float32), "w"),
        numpy_helper.from_array(np.array([b], np.float32), "b"),
        numpy_helper.from_array(np.array([-1, rows, cols], np.int64), "cell_shape"),
    ]
    nodes = [
        helper.make_node("Gather", [tensors.INPUT, "channels"], ["sel"], axis=4),  # [B, T, R, C, 2]
        helper.make_node("Gather", ["sel", "last"], ["sel_last"], axis=1),  # [B, 1, R, C, 2]
        helper.make_node("Reshape", ["sel_last", "desc_shape"], ["raw"]),  # [B, R, C, 2]
        helper.make_node("Mul", ["raw", "inv_scales"], ["ratio"]),
        helper.make_node("Max", ["ratio", "zero"], ["pos"]),
        helper.make_node("Add", ["pos", "one"], ["pos1"]),
        helper.make_node("Log", ["pos1"], ["desc"]),
        helper.make_node("MatMul", ["desc", "w"], ["z1"]),  # [B, R, C, 1]
        helper.make_node("Add", ["z1", "b"], ["z"]),
        helper.make_node("Sigmoid", ["z"], ["s"]),
        helper.make_node("Reshape", ["s", "cell_shape"], [tensors.CELL_SCORES]),
        helper.make_node("ReduceMax", [tensors.CELL_SCORES], [tensors.FRAME_SCORE], axes=[1, 2], keepdims=0),
    ]
    return tensors.scoring_model("vad_mil", window, rows, cols, nodes, inits)
