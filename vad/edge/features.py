"""Motion features at the edge: dense optical flow reduced to a grid of cells (schema v1 layout).

Per sampled frame: resize once to the flow size (a multiple of the grid, so an area resize to the grid
is an exact per-cell mean), normalise lighting at that small size (CLAHE at half size costs a third
of full size), compute flow against the previous sampled frame, then reduce:

- ``dir0..7``: one ``np.bincount`` over (cell, direction bin) weighted by magnitude; ``dx``, ``dy``:
  two more over the cells; ``mag`` is the sum of a cell's direction bins; ``fg``: an area resize of
  |I1-I0| to the grid (an exact per-cell mean).

Only moving pixels enter the sums: the gate zeroes the flow wherever the frame difference is small
(on Ped2 ~85% of the pixels), and zero flow adds nothing to any sum, so the reduction gathers the
moving pixels once and works on those instead of zeroing, splitting and merging full-size maps:
half the time (edge bench at 180x120, 0.23 -> 0.12 ms per frame). The sums are float64; the result
equals the full-map computation up to float32 rounding (tests/unit/edge/test_features.py checks it).

Units do not depend on ``flow_scale`` or ``resize``: flow is reported in pixels at the source's own
resolution per sampled frame, ``fg`` on a 0-1 scale. With ``target_fps`` and the frames' event times,
a sampled frame means 1/target_fps seconds: a source whose rate is no multiple of the target is
sampled at uneven steps (25 fps to 10: 80, 120, 80 ms ...), and flow over each step (its length in
the source's own presentation times) is scaled to that interval, so a walker's speed does not swing
by half from one frame to the next. The camera's own motion (shake, pans) is subtracted from the
flow first (``compensate_camera_motion``, vad/edge/camera_motion.py). The camera's mask
cells (``cameras.<id>.mask``) are zeroed.
"""

from __future__ import annotations

import ctypes
import math
import time
from collections.abc import Iterable
from typing import NamedTuple, Protocol

import cv2
import numpy as np

from vad.config import EdgeSettings
from vad.edge.camera_motion import compensate
from vad.schema import DIRECTION_BINS, N_CHANNELS

_DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}
STAGES = ("normalise", "flow", "features")
# Bounds of the flow's time scale: steps from 5x to a fifth of 1/target_fps (vad.edge.stream keeps
# frames at least half a source frame apart, and a longer step is a stall).
MIN_TIME_SCALE, MAX_TIME_SCALE = 0.2, 5.0


class FeatureExtractor(Protocol):
    """Turns consecutive grayscale frames into a [rows, cols, N_CHANNELS] float32 grid."""

    timings: dict[str, float]
    camera_motion_frames: int

    def reset(self) -> None:
        """Forget the previous frame (after a gap, the next frame has no motion reference)."""

    def process(self, gray: np.ndarray, step_ms: float | None = None) -> np.ndarray:
        """The frame's features against the previous one; ``step_ms``: the time between the two (ms),
        when known."""


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


def flow_scale_for(cfg: EdgeSettings, height: int) -> float:
    """The fraction of the (resized) frame the flow is computed at: ``flow_scale``, raised so the
    flow has at least ``flow_min_height`` rows, never above full size."""
    return max(cfg.flow_scale, min(1.0, cfg.flow_min_height / height))


class _Geometry(NamedTuple):
    frame: tuple[int, int]  # input (h, w) this was computed for
    fh: int  # flow size, a multiple of the grid
    fw: int
    sx: np.float32  # flow px -> source px
    sy: np.float32
    bin_base: np.ndarray  # intp [fh*fw]: each pixel's first histogram slot (cell * DIRECTION_BINS)
    mean_scale: float  # 1 / pixels per cell


class FlowFeatureExtractor:
    def __init__(self, cfg: EdgeSettings, mask: Iterable[tuple[int, int]] = ()):
        self.cfg = cfg
        self.rows, self.cols = cfg.grid_rows, cfg.grid_cols
        self._prev: np.ndarray | None = None
        self._target_ms = 1000.0 / cfg.target_fps if cfg.target_fps else None
        self._clahe = (
            cv2.createCLAHE(clipLimit=cfg.clahe_clip, tileGridSize=(8, 8)) if cfg.normalise == "clahe" else None
        )
        self._dis = make_dis(cfg) if cfg.flow == "dis" else None
        self._geometry: _Geometry | None = None
        self._mask = np.ones((self.rows, self.cols, 1), np.float32)
        cells = list(mask)
        for r, c in cells:
            if not (0 <= r < self.rows and 0 <= c < self.cols):
                raise ValueError(f"mask cell {(r, c)} outside the {self.rows}x{self.cols} grid")
            self._mask[r, c] = 0.0
        self._masked = bool(cells)
        self._gate = float(cfg.flow_gate)
        self._gate_u8 = np.uint8(math.ceil(self._gate))
        # Accumulated seconds per stage, read by the producer's metrics and the benchmark.
        self.timings = dict.fromkeys(STAGES, 0.0)
        self.camera_motion_frames = 0  # frames whose flow had the camera's own motion subtracted

    def reset(self) -> None:
        self._prev = None

    def _time_scale(self, step_ms: float | None) -> float:
        """Flow over a step of ``step_ms`` -> flow per 1/target_fps seconds. Bounded: a step far from
        the target's is a stall, and its flow is no speed to stretch."""
        if self._target_ms is None or step_ms is None or step_ms <= 0:
            return 1.0
        return min(max(self._target_ms / step_ms, MIN_TIME_SCALE), MAX_TIME_SCALE)

    def _setup(self, h: int, w: int) -> _Geometry:
        """Flow size, unit scales and per-pixel cell indices for one input size (cached)."""
        if self._geometry is not None and self._geometry.frame == (h, w):
            return self._geometry
        bw, bh = self.cfg.resize or (w, h)
        scale = flow_scale_for(self.cfg, bh)
        # Round to a multiple of the grid so INTER_AREA to the grid is an exact per-cell mean.
        fh = max(self.rows, round(bh * scale / self.rows) * self.rows)
        fw = max(self.cols, round(bw * scale / self.cols) * self.cols)
        cy = np.arange(fh) * self.rows // fh
        cx = np.arange(fw) * self.cols // fw
        cell = (cy[:, None] * self.cols + cx[None, :]).ravel().astype(np.intp)
        # Sums -> per-cell means in source pixels/frame (cells hold fh*fw/(rows*cols) px).
        mean_scale = (self.rows * self.cols) / (fh * fw)
        self._geometry = _Geometry(
            (h, w), fh, fw, np.float32(w / fw), np.float32(h / fh), cell * DIRECTION_BINS, mean_scale
        )
        self._prev = None
        return self._geometry

    def _normalise(self, small: np.ndarray) -> np.ndarray:
        if self._clahe is not None:
            return self._clahe.apply(small)
        if self.cfg.normalise == "equalize":
            return cv2.equalizeHist(small)
        return small

    def process(self, gray: np.ndarray, step_ms: float | None = None) -> np.ndarray:
        if gray.ndim != 2 or gray.dtype != np.uint8:
            raise ValueError("expected a single-channel uint8 frame")
        t0 = time.thread_time()
        g = self._setup(*gray.shape)
        small = self._normalise(cv2.resize(gray, (g.fw, g.fh), interpolation=cv2.INTER_AREA))
        prev, self._prev = self._prev, small
        t1 = time.thread_time()
        self.timings["normalise"] += t1 - t0
        if prev is None:
            return np.zeros((self.rows, self.cols, N_CHANNELS), np.float32)
        if self._dis is not None:
            flow = self._dis.calc(prev, small, None)
        else:
            flow = cv2.calcOpticalFlowFarneback(prev, small, None, 0.5, 3, 15, 3, 5, 1.2, 0)
        if self.cfg.compensate_camera_motion:
            flow, prev, moved = compensate(flow, prev, small)
            self.camera_motion_frames += moved
        t2 = time.thread_time()
        self.timings["flow"] += t2 - t1
        out = self.reduce(flow, small, prev, g, self._time_scale(step_ms))
        self.timings["features"] += time.thread_time() - t2
        return out

    def reduce(
        self, flow: np.ndarray, cur: np.ndarray, prev: np.ndarray, g: _Geometry, time_scale: float = 1.0
    ) -> np.ndarray:
        rows, cols, n = self.rows, self.cols, self.rows * self.cols
        fd = cv2.absdiff(cur, prev)
        # (dx, dy) pairs as one complex64 each, so one gather moves both components.
        f = np.ascontiguousarray(flow).view(np.complex64).ravel()
        base = g.bin_base
        if self._gate > 0:
            # Where nothing changed between the frames there is no motion: only pixels whose
            # 3x3-blurred difference reaches the gate count, which removes DIS's noise on static
            # texture (a cheap foreground cue; research report). The blur is integer, so comparing
            # with ceil(gate) in uint8 is the same test without a float64 pass.
            moving = (cv2.blur(fd, (3, 3)) >= self._gate_u8).ravel().nonzero()[0]
            f, base = f.take(moving), base.take(moving)
        sums = np.zeros((n, 3 + DIRECTION_BINS))  # float64: dx, dy, mag, dir0..7
        if f.size:
            # Back to pixels per frame at the source resolution, so features do not depend on flow size.
            fx = f.real * (g.sx * np.float32(time_scale))
            fy = f.imag * (g.sy * np.float32(time_scale))
            mag, ang = cv2.cartToPolar(fx, fy)
            mag = mag.ravel()
            # Bins centred on the directions (bin 0 is -22.5..22.5 degrees), so motion along an axis
            # lands in one bin instead of splitting between two at the wrap-around. `& 7` is the modulo 8.
            idx = (ang.ravel() * np.float32(DIRECTION_BINS / (2 * np.pi)) + np.float32(0.5)).astype(np.intp)
            idx &= DIRECTION_BINS - 1
            idx += base
            hist = np.bincount(idx, weights=mag, minlength=n * DIRECTION_BINS).reshape(n, DIRECTION_BINS)
            sums[:, 3:] = hist
            sums[:, 2] = cv2.reduce(hist, 1, cv2.REDUCE_SUM).ravel()  # a cell's magnitude: its bins' sum
            # dx, dy: binned on each cell's first slot (no second index array to gather), one per cell.
            sums[:, 0] = np.bincount(base, weights=fx, minlength=n * DIRECTION_BINS)[::DIRECTION_BINS]
            sums[:, 1] = np.bincount(base, weights=fy, minlength=n * DIRECTION_BINS)[::DIRECTION_BINS]
        out = np.empty((rows, cols, N_CHANNELS), np.float32)
        np.multiply(sums, g.mean_scale, out=out.reshape(n, N_CHANNELS)[:, :-1], casting="same_kind")
        fg = cv2.resize(fd.astype(np.float32), (cols, rows), interpolation=cv2.INTER_AREA)
        np.multiply(fg, np.float32(1 / 255), out=out[..., -1])
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


def make_extractor(cfg: EdgeSettings, mask: Iterable[tuple[int, int]] = ()) -> FeatureExtractor:
    tune_malloc()
    return FlowFeatureExtractor(cfg, mask)
