"""The camera's own motion in a flow field: shake, sway on a pole, a pan or tilt.

When the camera moves, every textured pixel moves with it, and per-cell speeds measured against the
scene's normal motion see the whole frame as fast: on the development clips shaken by half a pixel
to two pixels a frame, the default model raised an alarm on every clip and its frame AUC fell to
chance on Ped1 (docs/edge.md, "Camera motion"). The camera's motion is the flow that most of the
frame shares, so it is estimated as the median of the flow over a sparse lattice of pixels and
subtracted, leaving each object's motion relative to the scene, and the previous frame is moved by
it before the frame difference is taken.

It is subtracted only when it is unmistakable. It must be larger than ``DEADBAND_PX``: on the still
cameras of the development clips the median stayed at or below 0.062 px, objects and flow noise
included, so their features are left exactly as they were (a noisier camera whose median passes it
would be corrected on still frames too, which ``vad_edge_camera_motion_frames_total`` shows). And at
least ``AGREE_MIN`` of the lattice must share it within ``AGREE_PX``: crowds and objects that cover
less than half the view leave it alone; one object filling most of the view is taken for the camera.
The lattice covers the whole frame, the camera's mask cells included. Translation only: zoom and
roll are not modelled.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

DEADBAND_PX = 0.1  # flow pixels (at the flow's size) per sampled step, before the time scale
AGREE_PX = 0.5
AGREE_MIN = 0.5
LATTICE_STEP = 4  # every 4th pixel in each direction: 1/16 of the field


def _lattice(flow: np.ndarray) -> np.ndarray:
    """Every LATTICE_STEP-th pixel of the field in each direction: a strided view [h', w', 2]."""
    s = LATTICE_STEP
    return flow[s // 2 :: s, s // 2 :: s]


def median_motion(flow: np.ndarray) -> tuple[float, float]:
    """The per-component median of the flow over the lattice ((0, 0) for an empty field), before
    any dead band or agreement check."""
    lattice = _lattice(flow)
    # One copy per component, partitioned in place: half the cost of np.partition on the pairs
    # (17 against 35 µs at 180 x 120), and this runs on every frame of every camera.
    x, y = lattice[..., 0].flatten(), lattice[..., 1].flatten()
    if x.size == 0:
        return 0.0, 0.0
    k = x.size // 2
    x.partition(k)
    y.partition(k)
    return float(x[k]), float(y[k])


def estimate(flow: np.ndarray) -> tuple[float, float] | None:
    """The (dx, dy) most of the frame moves by, in the flow's pixels, or None when the camera is
    still or its motion is not clear. ``flow``: float32 [h, w, 2]."""
    dx, dy = median_motion(flow)
    if dx * dx + dy * dy < DEADBAND_PX * DEADBAND_PX:
        return None
    lattice = _lattice(flow)
    ex, ey = lattice[..., 0] - dx, lattice[..., 1] - dy
    if np.count_nonzero(ex * ex + ey * ey <= AGREE_PX * AGREE_PX) < AGREE_MIN * ex.size:
        return None
    return dx, dy


def compensate(flow: np.ndarray, prev: np.ndarray, cur: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """(flow without the camera's motion, the previous frame moved onto the current one, whether
    there was any): the same arrays when the camera was still. The previous frame is moved too
    because the frame difference, which gates the flow and is the foreground cue, would otherwise
    light up every edge of the scene that only moved with the camera. The band that entered the view
    has no previous frame: it takes the current frame's pixels there, so no difference and no flow
    passes the gate in it. (The flow stays indexed by the previous frame's pixels, the difference by
    the current one's: d apart, under a cell for a shake.)"""
    motion = estimate(flow)
    if motion is None:
        return flow, prev, False
    dx, dy = motion
    shift = np.float32([[1, 0, dx], [0, 1, dy]])
    aligned = cv2.warpAffine(prev, shift, prev.shape[::-1], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    bx, by = math.ceil(abs(dx)), math.ceil(abs(dy))
    cols = slice(0, bx) if dx > 0 else slice(aligned.shape[1] - bx, None)
    rows = slice(0, by) if dy > 0 else slice(aligned.shape[0] - by, None)
    if bx:
        aligned[:, cols] = cur[:, cols]
    if by:
        aligned[rows] = cur[rows]
    # (dx, dy) pairs as one complex64 each: one pass, where broadcasting over the last axis of 2
    # takes over ten times as long (about 170 against 7-13 µs at 180 x 120).
    pairs = np.ascontiguousarray(flow).view(np.complex64)
    return (pairs - np.complex64(complex(dx, dy))).view(np.float32), aligned, True
