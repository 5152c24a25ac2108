"""Learned spatio-temporal scorer ("convae"): a small convolutional autoencoder over windows of feature grids.

Each frame's features are put in the cell's own units first: the flow channels (dx, dy, mag, dir0..7)
divided by the cell's scalep scale (``scalep.fit``: the camera's normal speed there, so perspective
is learned from the camera's own video), the foreground cue by a per-cell quantile of its own.
Then the inputs are saturated, ``c * tanh(x / c)``: an autoencoder on linearly scaled inputs
reconstructs an object 3x faster than a walker almost as well as the walker (the known failure of
the earlier research); with bounded inputs its output cannot follow motion beyond the normal range,
so the error grows with how far the motion leaves it.

The network is a fully convolutional encoder-decoder: a 3x3 spatial x T temporal convolution over the
window (T grids of 12 channels, stacked as input channels) into ``hidden`` ReLU channels (the
bottleneck: 16 against 432 inputs per cell), then a 1x1 convolution back to the 12 channels of the
newest grid (``mode="recon"``, the default); ``mode="predict"`` feeds only the T-1 older grids, so the
newest one is predicted from the past. It is trained as an ``MLPRegressor`` (Adam, fixed seed, one
``partial_fit`` per epoch) on im2col patches, weights shared across cells, and exported as two ONNX
``Conv`` nodes. The learned cell score is the L2 error on the newest grid's normalised (unsaturated)
features divided by a per-cell normal level (the q-quantile of the training error over its 3x3
neighbourhood, floored at the median level), so normal cells sit near 1. ``combine="sum"`` (the
default) adds scalep's cell score, ``"max"`` takes the larger one, ``"none"`` is the learned score alone.

Measured on Ped2 (``python -m research.model_study``, docs/models.md): on the training-clip speed
proxy the default scores 0.9990 against scalep's 0.9987 (paired bootstrap 90 % interval of the
difference -0.0011..+0.0012: a tie); alone, the learned score is below scalep (reconstruction 0.9983,
prediction 0.9956). It catches a texture crossing the walkway that scalep cannot (cross 0.97 against
0.58), but it scores the same texture moving *with* the lane about as high (it sees an unfamiliar
object, not a wrong direction), it flags ~6x more of a held-out normal clip's frames at the
calibrated threshold, and it costs ~50-70x scalep per window (~95 us at batch 256, one thread; test
clips 1-6: 0.980 against 0.978, with one of six events missed). An option, not the default.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from models import tensors
from models.scorers import scalep
from vad.schema import CHANNELS, N_CHANNELS
from vad.windows import clip_windows

FG = CHANNELS.index("fg")
DEFAULTS = {"hidden": 16, "sat": 2.0, "mode": "recon", "combine": "sum", "epochs": 12, "q": 99.0}


def _norm(x: np.ndarray, inv: np.ndarray) -> np.ndarray:
    return x * inv  # [..., R, C, F] * [R, C, F]


def _patches(frames: np.ndarray) -> np.ndarray:
    """im2col of [N, K, R, C] (K = frames x channels) -> [N, R, C, K*9] in Conv weight order (k, dy, dx)."""
    n, k, rows, cols = frames.shape
    p = np.pad(frames, [(0, 0), (0, 0), (1, 1), (1, 1)])
    cols_ = np.stack([p[:, :, dy : dy + rows, dx : dx + cols] for dy in range(3) for dx in range(3)], axis=2)
    return cols_.reshape(n, k * 9, rows, cols).transpose(0, 2, 3, 1)


def _inputs(windows: np.ndarray, params: dict) -> tuple[np.ndarray, np.ndarray]:
    """Saturated network input [B, K, R, C] and normalised target [B, R, C, F] of windows [B, T, R, C, F]."""
    x = _norm(windows, params["inv"])
    src = x if params["mode"] == "recon" else x[:, :-1]
    c = params["sat"]
    src = c * np.tanh(src / c)
    b, t, rows, cols, f = src.shape
    return src.transpose(0, 1, 4, 2, 3).reshape(b, t * f, rows, cols), x[:, -1]


def _forward(patches: np.ndarray, params: dict) -> np.ndarray:
    h = np.maximum(patches @ params["w1"] + params["b1"], 0)
    return h @ params["w2"] + params["b2"]


def _error(windows: np.ndarray, params: dict, chunk: int = 256) -> np.ndarray:
    out = []
    for i in range(0, len(windows), chunk):
        src, target = _inputs(windows[i : i + chunk], params)
        out.append(np.sqrt(((_forward(_patches(src), params) - target) ** 2).sum(axis=-1)))
    return np.concatenate(out)  # [B, R, C]


def _windows(clips: list[np.ndarray], window: int) -> np.ndarray:
    return np.concatenate([clip_windows(c, window) for c in clips])


def fit(clips: list[np.ndarray], window: int = 4, seed: int = 0, max_samples: int = 40000, progress=False, **kw):
    """Fit on normal clips ([N, R, C, F] feature grids of one camera) -> params (numpy arrays + settings)."""
    from sklearn.neural_network import MLPRegressor
    from tqdm import tqdm

    cfg = {**DEFAULTS, **kw}
    scale = scalep.fit(clips)
    fg = np.concatenate([c[..., FG] for c in clips])
    # fg depends little on perspective: the global quantile is the floor, cells get more if they need it.
    fg_scale = np.maximum(scalep.neighbourhood_quantile(fg, cfg["q"]), max(float(np.percentile(fg, cfg["q"])), 1e-3))
    inv = np.repeat((1.0 / scale)[..., None], N_CHANNELS, axis=-1)
    inv[..., FG] = 1.0 / fg_scale
    params = {**cfg, "window": window, "scale": scale, "inv": inv.astype(np.float32)}
    w = _windows(clips, window)
    src, target = _inputs(w, params)
    n, _, rows, cols = src.shape
    # Mostly moving patches (83 % of the feature values are exact zeros), some still ones.
    padded = np.pad(src, [(0, 0), (0, 0), (1, 1), (1, 1)])
    live = np.abs(padded).max(axis=1) > 0
    live = np.any([live[:, dy : dy + rows, dx : dx + cols] for dy in range(3) for dx in range(3)], axis=0).ravel()
    rng = np.random.default_rng(seed)
    moving, still = np.flatnonzero(live), np.flatnonzero(~live)
    pick = np.concatenate(
        [rng.permutation(moving)[: int(max_samples * 0.8)], rng.permutation(still)[: int(max_samples * 0.2)]]
    )
    b, r, c = np.unravel_index(pick, (n, rows, cols))
    x = np.stack([padded[b, :, r + dy, c + dx] for dy in range(3) for dx in range(3)], axis=2).reshape(len(pick), -1)
    y = target[b, r, c]
    pick = np.arange(len(pick))
    mlp = MLPRegressor(
        hidden_layer_sizes=(cfg["hidden"],), solver="adam", batch_size=256, learning_rate_init=2e-3, random_state=seed
    )
    for _ in tqdm(range(cfg["epochs"]), desc="convae epochs", unit="epoch", disable=not progress, leave=False):
        idx = rng.permutation(pick)
        mlp.partial_fit(x[idx], y[idx])
    params.update(
        w1=mlp.coefs_[0].astype(np.float32),
        b1=mlp.intercepts_[0].astype(np.float32),
        w2=mlp.coefs_[1].astype(np.float32),
        b2=mlp.intercepts_[1].astype(np.float32),
        mlp=mlp,
    )
    err = _error(w, params)
    level = scalep.neighbourhood_quantile(err, cfg["q"])
    params["inv_level"] = (1.0 / np.maximum(level, np.median(level))).astype(np.float32)
    return params


def score_numpy(windows: np.ndarray, params: dict) -> tuple[np.ndarray, np.ndarray]:
    """Reference maths of the ONNX graph: windows [B, T, R, C, F] -> (frame [B], cells [B, R, C])."""
    cells = _error(windows, params) * params["inv_level"]
    if params["combine"] != "none":
        sp = windows[:, -1, :, :, scalep.MAG] / params["scale"]
        cells = np.maximum(cells, sp) if params["combine"] == "max" else cells + sp
    cells = cells.astype(np.float32)
    return cells.reshape(len(cells), -1).max(axis=1), cells


def build_onnx(params: dict, window: int) -> onnx.ModelProto:
    rows, cols = params["scale"].shape
    hidden, f = params["hidden"], N_CHANNELS
    t_in = window if params["mode"] == "recon" else window - 1
    w1 = params["w1"].T.reshape(hidden, t_in * f, 3, 3)
    w2 = params["w2"].T.reshape(f, hidden, 1, 1)
    c = float(params["sat"])
    inits = [
        numpy_helper.from_array(params["inv"], "inv"),
        numpy_helper.from_array(np.array([0], np.int64), "t0"),
        numpy_helper.from_array(np.array([t_in], np.int64), "t1"),
        numpy_helper.from_array(np.array([1], np.int64), "t_axis"),
        numpy_helper.from_array(np.array([window - 1], np.int64), "last"),
        numpy_helper.from_array(np.array([0, t_in * f, rows, cols], np.int64), "src_shape"),
        numpy_helper.from_array(np.array([0, rows, cols, f], np.int64), "tgt_shape"),
        numpy_helper.from_array(np.array([1.0 / c], np.float32), "inv_sat"),
        numpy_helper.from_array(np.array([c], np.float32), "sat"),
        numpy_helper.from_array(w1, "w1"),
        numpy_helper.from_array(params["b1"], "b1"),
        numpy_helper.from_array(w2, "w2"),
        numpy_helper.from_array(params["b2"], "b2"),
        numpy_helper.from_array(params["inv_level"], "inv_level"),
        numpy_helper.from_array(np.array([-1], np.int64), "chan_axis"),
    ]
    nodes = [
        helper.make_node("Mul", [tensors.INPUT, "inv"], ["x"]),  # [B, T, R, C, F] in cell units
        helper.make_node("Slice", ["x", "t0", "t1", "t_axis"], ["src_raw"]),
        helper.make_node("Mul", ["src_raw", "inv_sat"], ["src_s"]),
        helper.make_node("Tanh", ["src_s"], ["src_t"]),
        helper.make_node("Mul", ["src_t", "sat"], ["src_c"]),
        helper.make_node("Transpose", ["src_c"], ["src_tr"], perm=[0, 1, 4, 2, 3]),  # [B, T', F, R, C]
        helper.make_node("Reshape", ["src_tr", "src_shape"], ["src"]),  # [B, T'*F, R, C]
        helper.make_node("Conv", ["src", "w1", "b1"], ["h_lin"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["h_lin"], ["h"]),
        helper.make_node("Conv", ["h", "w2", "b2"], ["pred"], kernel_shape=[1, 1]),  # [B, F, R, C]
        helper.make_node("Transpose", ["pred"], ["pred_t"], perm=[0, 2, 3, 1]),  # [B, R, C, F]
        helper.make_node("Gather", ["x", "last"], ["tgt_g"], axis=1),
        helper.make_node("Reshape", ["tgt_g", "tgt_shape"], ["tgt"]),
        helper.make_node("Sub", ["pred_t", "tgt"], ["d"]),
        helper.make_node("Mul", ["d", "d"], ["d2"]),
        helper.make_node("ReduceSum", ["d2", "chan_axis"], ["e2"], keepdims=0),
        helper.make_node("Sqrt", ["e2"], ["e"]),
    ]
    out = tensors.CELL_SCORES
    if params["combine"] == "none":
        nodes.append(helper.make_node("Mul", ["e", "inv_level"], [out]))
    else:
        inits += [
            numpy_helper.from_array(np.array([scalep.MAG], np.int64), "mag_idx"),
            numpy_helper.from_array((1.0 / params["scale"]).astype(np.float32), "inv_scale"),
        ]
        nodes += [
            helper.make_node("Mul", ["e", "inv_level"], ["ae"]),
            helper.make_node("Gather", [tensors.INPUT, "last"], ["last_g"], axis=1),
            helper.make_node("Gather", ["last_g", "mag_idx"], ["mag_g"], axis=4),
            helper.make_node("Reshape", ["mag_g", "tgt_shape_3"], ["mag3"]),
            helper.make_node("Mul", ["mag3", "inv_scale"], ["sp"]),
            helper.make_node("Max" if params["combine"] == "max" else "Sum", ["ae", "sp"], [out]),
        ]
        inits.append(numpy_helper.from_array(np.array([-1, rows, cols], np.int64), "tgt_shape_3"))
    nodes.append(helper.make_node("ReduceMax", [out], [tensors.FRAME_SCORE], axes=[1, 2], keepdims=0))
    return tensors.scoring_model("vad_convae", window, rows, cols, nodes, inits)
