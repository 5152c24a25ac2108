"""The camera's own motion in a flow field: shake, sway on a pole, a pan or tilt.

When the camera moves, every textured pixel moves with it, and per-cell speeds measured against the
scene's normal motion see the whole frame as fast: on the development clips shaken by half a pixel
to two pixels a frame, the default model raised an alarm on every clip and its frame AUC fell to
chance on Ped1 (docs/edge.md, "Camera motion"). The camera's motion is the flow that most of the
frame shares, so it is estimated as the median of the flow over a sparse lattice of pixels and
subtracted, leaving each object's motion relative to the scene.

It is subtracted only when it is unmistakable: larger than ``DEADBAND_PX`` (on still cameras the
median stays below about 0.06 px, objects and flow noise included, so their features are left
exactly as they were) and shared by at least ``AGREE_MIN`` of the lattice within ``AGREE_PX``
(crowds and objects that cover less than half the view leave it alone; one object filling most of
the view is taken for the camera). Translation only: zoom and roll are not modelled.
"""

from __future__ import annotations

import cv2
import numpy as np

DEADBAND_PX = 0.1  # flow pixels (at the flow's size) per frame
AGREE_PX = 0.5
AGREE_MIN = 0.5
LATTICE_STEP = 4  # every 4th pixel in each direction: 1/16 of the field, ~25 µs at 180x120


def _lattice(flow: np.ndarray) -> np.ndarray:
    s = LATTICE_STEP
    return flow[s // 2 :: s, s // 2 :: s].reshape(-1, 2)


def median_motion(flow: np.ndarray) -> tuple[float, float]:
    """The per-component median of the flow over the lattice (0, 0 for an empty field)."""
    lattice = _lattice(flow)
    k = lattice.shape[0] // 2
    if lattice.shape[0] == 0:
        return 0.0, 0.0
    # np.partition per component: a fifth of np.median's cost on these sizes.
    return float(np.partition(lattice[:, 0], k)[k]), float(np.partition(lattice[:, 1], k)[k])


def camera_motion(flow: np.ndarray) -> tuple[float, float] | None:
    """The (dx, dy) most of the frame moves by, in the flow's pixels, or None when the camera is
    still or its motion is not clear. ``flow``: float32 [h, w, 2]."""
    dx, dy = median_motion(flow)
    if dx * dx + dy * dy < DEADBAND_PX * DEADBAND_PX:
        return None
    lattice = _lattice(flow)
    n = lattice.shape[0]
    ex, ey = lattice[:, 0] - dx, lattice[:, 1] - dy
    if np.count_nonzero(ex * ex + ey * ey <= AGREE_PX * AGREE_PX) < AGREE_MIN * n:
        return None
    return dx, dy


def compensate(flow: np.ndarray, prev: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """(flow without the camera's motion, the previous frame moved onto the current one, whether
    there was any): the same arrays when the camera was still. The previous frame is moved too
    because the frame difference, which gates the flow and is the foreground cue, would otherwise
    light up every edge of the scene that only moved with the camera."""
    motion = camera_motion(flow)
    if motion is None:
        return flow, prev, False
    dx, dy = motion
    shift = np.float32([[1, 0, dx], [0, 1, dy]])
    aligned = cv2.warpAffine(prev, shift, prev.shape[::-1], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return flow - np.array(motion, np.float32), aligned, True
