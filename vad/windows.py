"""Windows of the last T feature grids: one definition for the job's keyed state and for offline
scoring, so a frame gets the same window in both."""

from __future__ import annotations

import numpy as np


def window_at(history: np.ndarray, t: int) -> np.ndarray:
    """The window ending with the newest grid of ``history`` [k, rows, cols, C], length ``t``.

    Before a camera has t grids (stream start, after a gap) the oldest grid is repeated, so the first
    frames are scored at once instead of waiting t frames."""
    k = history.shape[0]
    if k >= t:
        return history[k - t :]
    pad = np.repeat(history[:1], t - k, axis=0)
    return np.concatenate([pad, history], axis=0)


def fill_window(out: np.ndarray, history: list[np.ndarray]) -> None:
    """``window_at(np.stack(history), t)`` written into ``out`` [t, rows, cols, C] in place: the job
    fills one preallocated batch array instead of stacking a window per frame and then the batch."""
    t, k = out.shape[0], len(history)
    if k >= t:
        for i in range(t):
            out[i] = history[k - t + i]
        return
    out[: t - k] = history[0]
    for i in range(k):
        out[t - k + i] = history[i]


def clip_windows(grids: np.ndarray, t: int) -> np.ndarray:
    """Every frame's causal window for a whole clip [n, rows, cols, C] -> [n, t, rows, cols, C]."""
    return np.stack([window_at(grids[max(0, i - t + 1) : i + 1], t) for i in range(grids.shape[0])])
