"""A view's normal dwell times for its model card: the longest stay per cell over the clips."""

from __future__ import annotations

import numpy as np
import pytest

from models.dwell_norms import HOLD_S, PRESENCE_LEVEL, dwell_norms
from vad.cell_stays import FG


def _clip(frames: int, stays: dict[tuple[int, int], range]) -> np.ndarray:
    g = np.zeros((frames, 2, 3, 12), np.float32)
    for (r, c), span in stays.items():
        g[list(span), r, c, FG] = PRESENCE_LEVEL
    return g


def test_the_longest_stay_per_cell_over_all_clips_in_seconds():
    # 10 frames per second; the hold bridges (0, 0)'s 1 s gap in clip a.
    a = _clip(100, {(0, 0): range(0, 20), (1, 2): range(50, 55)})
    a[20:30, 0, 0, FG] = 0
    a[30:40, 0, 0, FG] = PRESENCE_LEVEL
    b = _clip(50, {(1, 2): range(0, 50)})
    norms = dwell_norms({"a": a, "b": b}, {"a": np.arange(100) * 100, "b": 5000 + np.arange(50) * 100})
    assert HOLD_S > 1 and norms.presence_level == PRESENCE_LEVEL and norms.hold_s == HOLD_S
    assert norms.longest_s == [[3.9, 0.0, 0.0], [0.0, 0.0, 4.9]]
    assert norms.seconds == pytest.approx(9.9 + 4.9)


def test_no_clips_is_refused():
    with pytest.raises(ValueError, match="no clips"):
        dwell_norms({}, {})
