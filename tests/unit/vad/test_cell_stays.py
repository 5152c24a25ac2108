"""The per-cell stay rule shared by training (normal dwell times) and the learned loitering detector."""

from __future__ import annotations

import numpy as np

from vad.cell_stays import FG, NONE, CellStays, longest_stays_ms


def _grid(*cells, rows=2, cols=3, level=0.1) -> np.ndarray:
    f = np.zeros((rows, cols, 12), np.float32)
    for r, c in cells:
        f[r, c, FG] = level
    return f


def test_a_stay_lasts_through_empty_spells_shorter_than_the_hold_and_ends_after_it():
    s = CellStays.empty(2, 3)
    # occupied at 0..4 s, empty 5..6 s (2 s < hold 3 s), occupied 7..8 s, then empty for good.
    occupied = [True] * 5 + [False] * 2 + [True] * 2 + [False] * 5
    seen = []
    for i, occ in enumerate(occupied):
        s.step(_grid((1, 2)) if occ else _grid(), i, 1000 * i, 0.05, 3000)
        seen.append(int(s.durations_ms()[1, 2]))
    assert seen[:9] == [0, 1000, 2000, 3000, 4000, 4000, 4000, 7000, 8000]
    # 3 s after the last occupied frame (8) the stay ends: frame 11 at 11 s.
    assert seen[9:11] == [8000, 8000] and seen[11:] == [0, 0, 0]
    assert s.start_ts[1, 2] == NONE and (s.durations_ms()[[0, 1], [0, 1]] == 0).all()


def test_below_the_level_is_empty_and_each_cell_keeps_its_own_stay():
    s = CellStays.empty(2, 3)
    s.step(_grid((0, 0), level=0.04), 0, 0, 0.05, 1000)
    assert s.start_ts[0, 0] == NONE
    s.step(_grid((0, 0)), 1, 100, 0.05, 1000)
    s.step(_grid((0, 0), (0, 1)), 2, 200, 0.05, 1000)
    assert s.start_frame[0, 0] == 1 and s.start_frame[0, 1] == 2
    assert s.durations_ms()[0].tolist() == [100, 0, 0]
    restored = CellStays.from_dict(s.to_dict())
    assert all((getattr(restored, k) == getattr(s, k)).all() for k in ("start_ts", "start_frame", "last_ts"))
    s.clear()
    assert (s.start_ts == NONE).all()


def test_the_longest_stay_per_cell_counts_one_still_running_at_the_clip_end():
    grids = np.stack([_grid((0, 0))] * 3 + [_grid()] * 4 + [_grid((0, 0), (1, 1))] * 6)
    longest = longest_stays_ms(grids, np.arange(len(grids)) * 500, 0.05, 1000)
    # (0, 0): 0-1 s, ends; again 3.5-6 s (2.5 s, running at the end). (1, 1): 3.5-6 s.
    assert longest.tolist() == [[2500, 0, 0], [0, 2500, 0]]
