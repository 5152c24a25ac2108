"""How long something has stayed in each cell of a camera's grid: the one rule that both the training
side (the model card's normal dwell times, models/dwell_norms.py) and the job's learned loitering
detector (vad/dwell.py) apply, so a stay means the same in both.

A cell is occupied on a frame when its foreground cue ``fg`` (the mean absolute frame difference,
vad/edge/features.py) is at or above ``level``. A stay starts at a cell's first occupied frame and
lasts while the cell is occupied, empty spells shorter than ``hold_ms`` of event time included
(someone keeping still moves no pixels for a moment). Its duration is from its first to its last
occupied frame."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vad.schema import CHANNELS

FG = CHANNELS.index("fg")
NONE = -1  # no stay in progress


@dataclass
class CellStays:
    """Per cell: the stay in progress (its first and last occupied frame's event time and index)."""

    start_ts: np.ndarray  # int64 [R, C], NONE where the cell is empty
    start_frame: np.ndarray  # int64 [R, C]
    last_ts: np.ndarray  # int64 [R, C]

    @classmethod
    def empty(cls, rows: int, cols: int) -> CellStays:
        return cls(*(np.full((rows, cols), NONE, np.int64) for _ in range(3)))

    def step(self, features: np.ndarray, frame: int, ts_ms: int, level: float, hold_ms: int) -> None:
        occupied = features[..., FG] >= level
        new = occupied & (self.start_ts == NONE)
        self.start_ts[new], self.start_frame[new] = ts_ms, frame
        self.last_ts[occupied] = ts_ms
        ended = ~occupied & (self.start_ts != NONE) & (ts_ms - self.last_ts >= hold_ms)
        self.start_ts[ended] = self.start_frame[ended] = self.last_ts[ended] = NONE

    def durations_ms(self) -> np.ndarray:
        """Each cell's stay so far (first to last occupied frame), 0 where none is in progress."""
        return np.where(self.start_ts == NONE, 0, self.last_ts - self.start_ts)

    def clear(self) -> None:
        for a in (self.start_ts, self.start_frame, self.last_ts):
            a.fill(NONE)

    def to_dict(self) -> dict:
        return {k: getattr(self, k).tolist() for k in ("start_ts", "start_frame", "last_ts")}

    @classmethod
    def from_dict(cls, d: dict) -> CellStays:
        return cls(*(np.asarray(d[k], np.int64) for k in ("start_ts", "start_frame", "last_ts")))


def longest_stays_ms(grids: np.ndarray, times_ms: np.ndarray, level: float, hold_ms: int) -> np.ndarray:
    """The longest stay per cell over one clip's feature grids [n, R, C, F] (a stay still in progress
    at the clip's end counts with its length so far)."""
    n, rows, cols = grids.shape[:3]
    stays, longest = CellStays.empty(rows, cols), np.zeros((rows, cols), np.int64)
    for i in range(n):
        stays.step(grids[i], i, int(times_ms[i]), level, hold_ms)
        np.maximum(longest, stays.durations_ms(), out=longest)
    return longest
