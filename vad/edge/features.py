"""Motion features at the edge: dense optical flow reduced to a grid of cells (schema v1 layout).

Per sampled frame: resize once to the flow size (a multiple of the grid, so an area resize to the grid
is an exact per-cell mean), normalise lighting at that small size (CLAHE at half size costs a third
of full size), compute flow against the previous sampled frame, then reduce:

- ``dx``, ``dy``, ``mag``, ``fg``: one 4-channel ``cv2.resize(INTER_AREA)`` of [fx, fy, |f|, |I1-I0|];
- ``dir0..7``: one ``np.bincount`` over (cell, direction bin) weighted by magnitude.

OpenCV's area resize slows down ~15x above 4 channels, which is why the histogram does not go through
it (measured: 2.6 ms for a 12-channel map vs 0.18 ms for this split, at 180x120).

Units do not depend on ``flow_scale`` or ``resize``: flow is reported in pixels per sampled frame at
the source's own resolution, ``fg`` on a 0-1 scale. Cells listed in ``mask`` are zeroed.
"""

from __future__ import annotations

import ctypes
import time
from typing import Protocol

import cv2
import numpy as np

from vad.config import EdgeSettings
from vad.schema import DIRECTION_BINS, N_CHANNELS

_DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}
STAGES = ("normalise", "flow", "features")


class FeatureExtractor(Protocol):
    """Turns consecutive grayscale frames into a [rows, cols, N_CHANNELS] float32 grid."""

    timings: dict[str, float]

    def reset(self) -> None:
        """Forget the previous frame (after a gap, the next frame has no motion reference)."""

    def process(self, gray: np.ndarray) -> np.ndarray: ...


def make_dis(cfg: EdgeSettings) -> cv2.DISOpticalFlow:
    dis = cv2.DISOpticalFlow_create(_DIS_PRESETS[cfg.dis_preset])
    if cfg.dis_finest_scale is not None:
        dis.setFinestScale(cfg.dis_finest_scale)
    if cfg.dis_iterations is not None:
        dis.setGradientDescentIterations(cfg.dis_iterations)
    if cfg.dis_refine_iterations is not None:
        dis.setVariationalRefinementIterations(cfg.dis_refine_iterations)
    if cfg.dis_patch_stride is not None:
        dis.setPatchStride(cfg.dis_patch_stride)
    return dis


class FlowFeatureExtractor:
    def __init__(self, cfg: EdgeSettings):
        self.cfg = cfg
        self.rows, self.cols = cfg.grid_rows, cfg.grid_cols
        self._prev: np.ndarray | None = None
        self._clahe = (
            cv2.createCLAHE(clipLimit=cfg.clahe_clip, tileGridSize=(8, 8)) if cfg.normalise == "clahe" else None
        )
        self._dis = make_dis(cfg) if cfg.flow == "dis" else None
        self._geometry: tuple | None = None
        self._mask = np.ones((self.rows, self.cols, 1), np.float32)
        for r, c in cfg.mask:
            self._mask[r, c] = 0.0
        self._masked = bool(cfg.mask)
        self._gate = float(cfg.flow_gate)
        # Accumulated seconds per stage, read by the producer's metrics and the benchmark.
        self.timings = dict.fromkeys(STAGES, 0.0)

    def reset(self) -> None:
        self._prev = None

    def _setup(self, h: int, w: int) -> tuple:
        """Flow size, unit scales and per-pixel histogram indices for one input size (cached)."""
        if self._geometry is not None and self._geometry[0] == (h, w):
            return self._geometry
        bw, bh = self.cfg.resize or (w, h)
        # Round to a multiple of the grid so INTER_AREA to the grid is an exact per-cell mean.
        fh = max(self.rows, round(bh * self.cfg.flow_scale / self.rows) * self.rows)
        fw = max(self.cols, round(bw * self.cfg.flow_scale / self.cols) * self.cols)
        cy = np.arange(fh) * self.rows // fh
        cx = np.arange(fw) * self.cols // fw
        cell_base = ((cy[:, None] * self.cols + cx[None, :]) * DIRECTION_BINS).astype(np.int32)
        # Histogram sums -> per-cell means in source pixels/frame (cells hold fh*fw/(rows*cols) px).
        hist_scale = (self.rows * self.cols) / (fh * fw)
        self._geometry = ((h, w), fh, fw, np.float32(w / fw), np.float32(h / fh), cell_base, hist_scale)
        self._prev = None
        return self._geometry

    def _normalise(self, small: np.ndarray) -> np.ndarray:
        if self._clahe is not None:
            return self._clahe.apply(small)
        if self.cfg.normalise == "equalize":
            return cv2.equalizeHist(small)
        return small

    def process(self, gray: np.ndarray) -> np.ndarray:
        if gray.ndim != 2 or gray.dtype != np.uint8:
            raise ValueError("expected a single-channel uint8 frame")
        t0 = time.thread_time()
        _, fh, fw, sx, sy, cell_base, hist_scale = self._setup(*gray.shape)
        small = self._normalise(cv2.resize(gray, (fw, fh), interpolation=cv2.INTER_AREA))
        prev, self._prev = self._prev, small
        t1 = time.thread_time()
        self.timings["normalise"] += t1 - t0
        if prev is None:
            return np.zeros((self.rows, self.cols, N_CHANNELS), np.float32)
        if self._dis is not None:
            flow = self._dis.calc(prev, small, None)
        else:
            flow = cv2.calcOpticalFlowFarneback(prev, small, None, 0.5, 3, 15, 3, 5, 1.2, 0)
        t2 = time.thread_time()
        self.timings["flow"] += t2 - t1
        out = self.reduce(flow, small, prev, sx, sy, cell_base, hist_scale)
        self.timings["features"] += time.thread_time() - t2
        return out

    def reduce(self, flow, cur, prev, sx, sy, cell_base, hist_scale) -> np.ndarray:
        fd = cv2.absdiff(cur, prev)
        fx, fy = cv2.split(flow)
        if self._gate > 0:
            # Where nothing changed between the frames there is no motion: zero the flow there, which
            # removes DIS's noise on static texture (a cheap foreground cue; research report).
            still = cv2.blur(fd, (3, 3)) < self._gate
            fx[still] = 0.0
            fy[still] = 0.0
        # Back to pixels per frame at the source resolution, so features do not depend on flow size.
        fx *= sx
        fy *= sy
        mag, ang = cv2.cartToPolar(fx, fy)
        # Bins centred on the directions (bin 0 is -22.5..22.5 degrees), so motion along an axis lands
        # in one bin instead of splitting between two at the wrap-around. `& 7` is the modulo 8.
        idx = (ang * np.float32(DIRECTION_BINS / (2 * np.pi)) + np.float32(0.5)).astype(np.int32)
        idx &= DIRECTION_BINS - 1
        idx += cell_base
        hist = np.bincount(idx.ravel(), weights=mag.ravel(), minlength=self.rows * self.cols * DIRECTION_BINS)
        fg = fd.astype(np.float32)
        fg *= np.float32(1 / 255)
        means = cv2.resize(cv2.merge([fx, fy, mag, fg]), (self.cols, self.rows), interpolation=cv2.INTER_AREA)
        out = np.empty((self.rows, self.cols, N_CHANNELS), np.float32)
        out[..., :3] = means[..., :3]
        out[..., 3 : 3 + DIRECTION_BINS] = hist.reshape(self.rows, self.cols, DIRECTION_BINS) * hist_scale
        out[..., -1] = means[..., 3]
        if self._masked:
            out *= self._mask
        return out


def tune_malloc(mmap_threshold: int = 4 << 20) -> bool:
    """Keep glibc from serving each per-frame float temporary (>128 KiB at half size) with a fresh
    mmap: measured here, the page faults doubled the cost of the feature reduction (0.5 vs 0.25 ms).
    Process-wide and harmless to repeat; same as MALLOC_MMAP_THRESHOLD_/MALLOC_TRIM_THRESHOLD_."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to tune
        return False
    libc.mallopt(-3, mmap_threshold)  # M_MMAP_THRESHOLD
    libc.mallopt(-1, 2 * mmap_threshold)  # M_TRIM_THRESHOLD
    return True


def make_extractor(cfg: EdgeSettings) -> FeatureExtractor:
    tune_malloc()
    return FlowFeatureExtractor(cfg)
