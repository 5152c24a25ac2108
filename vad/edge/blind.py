"""A camera that cannot see: its lens covered or painted over, its lights out, or its picture
washed out to one grey.

Such a camera sends features of no motion, and no motion scores as normal: the job raises nothing,
and nothing tells the operator that the camera has stopped watching. The picture of a working
camera has texture (edges, objects, noise), so the spread of its grey levels stays well above a few
levels; the picture of a covered one does not. The check reads a lattice of every eighth pixel:
3-4 µs a frame at 360x240 with OpenCV's meanStdDev, against 26 µs for numpy's std of the same view.

A camera counts as blind once every frame of ``blind_after_s`` seconds of its stream (event time)
has been that flat, and sees again at its first frame with twice that spread: a hand passing in
front of the lens, a light switched off for a moment, or the first dark frames of a scene fading in
are not a blind camera, and a dim scene hovering at the bound is not warned about every few seconds.
A feed that repeats one frame is not checked here: an encoder sends a still scene as identical
frames too.
"""

from __future__ import annotations

import cv2
import numpy as np

from vad.config import EdgeSettings

LATTICE_STEP = 8
# A blind camera sees again at this multiple of the bound, not at the bound itself.
CLEAR_FACTOR = 2.0


def contrast(gray: np.ndarray) -> float:
    """The standard deviation of the frame's grey levels over a lattice of every eighth pixel."""
    return float(cv2.meanStdDev(gray[::LATTICE_STEP, ::LATTICE_STEP])[1][0, 0])


class BlindWatch:
    """Fed each sampled frame, says whether the camera has been blind for ``after_s`` seconds.

    ``episodes`` counts the times it went blind, ``frames`` the frames seen while blind, and
    ``changed`` is true on the frame where the state flipped (so the caller logs once per episode).
    """

    def __init__(self, after_s: float, min_contrast: float):
        self.after_ms = after_s * 1000.0
        self.min_contrast = min_contrast
        self.blind = False
        self.changed = False
        self.episodes = 0
        self.frames = 0
        self.last_contrast = 0.0
        self._flat_since: int | None = None  # event time (ms) of the first flat frame of the current run

    def update(self, gray: np.ndarray, ts_ms: int, gap: bool = False) -> bool:
        """``gap``: frames were lost before this one (a reconnect, a drop), so the run starts afresh."""
        c = self.last_contrast = contrast(gray)
        was = self.blind
        if gap:
            self._flat_since = None
        if self.blind:
            self.blind = c < CLEAR_FACTOR * self.min_contrast
            if not self.blind:
                self._flat_since = None
        elif c >= self.min_contrast:
            self._flat_since = None
        else:
            if self._flat_since is None:
                self._flat_since = ts_ms
            if ts_ms - self._flat_since >= self.after_ms:
                self.blind = True
                self.episodes += 1
        self.frames += self.blind
        self.changed = self.blind != was
        return self.blind


def blind_watch(settings: EdgeSettings) -> BlindWatch | None:
    """The camera's watch, or None where ``blind_after_s`` is null."""
    if settings.blind_after_s is None:
        return None
    return BlindWatch(settings.blind_after_s, settings.blind_contrast)
