"""The flow-settings study: its synthetic anomaly moves as asked, and on real normal clips a setting
that hides motion (flow computed, then gated away everywhere) scores clearly worse than the default."""

from __future__ import annotations

import numpy as np
import pytest

from research.flow_study import moving_patch, study


def test_moving_patch_travels_at_the_requested_speed_and_stays_in_the_frame():
    frames = [np.zeros((120, 180), np.uint8) for _ in range(30)]
    out = moving_patch(frames, seed=3, speed=5.0)
    centres = []
    for g in out:
        ys, xs = np.nonzero(g)
        assert ys.min() >= 0 and xs.max() < 180 and ys.max() < 120
        centres.append((xs.mean(), ys.mean()))
    steps = np.linalg.norm(np.diff(np.array(centres), axis=0), axis=1)
    # Straight-line steps of ~5 px; a bounce off an edge shortens one step.
    assert 4.0 <= np.median(steps) <= 6.0
    assert not any(f.any() for f in frames)  # the input frames are left alone


def test_study_separates_a_blinded_setting_from_the_default(ped2):
    report = study(ped2, {"default": {}, "blind": {"flow_gate": 255.0}}, max_clips=3, boot=50)
    v = report["variants"]
    assert report["clips"] == 3
    assert v["default"]["proxy_auc"] > 0.95
    assert v["blind"]["proxy_auc"] < v["default"]["proxy_auc"] - 0.1
    assert v["blind"]["p_at_least_first"] < 0.05


def test_direction_study_lane_texture_moves_against_the_lane_and_crosses_the_walkway():
    from research.direction_study import LANES, cross_patch, lane_patch

    frames = [np.zeros((240, 360), np.uint8) for _ in range(40)]
    for lane, (_, usual) in enumerate(LANES):
        for wrong in (False, True):
            xs = [np.nonzero(g)[1].mean() for g in lane_patch(frames, 1, 2.0, lane, wrong)]
            step = np.median(np.diff(xs))
            assert step == pytest.approx(2.0 * (-usual if wrong else usual), abs=0.6)
    ys = [np.nonzero(g)[0].mean() for g in cross_patch(frames, 2, 1.0)]
    assert np.median(np.abs(np.diff(ys))) == pytest.approx(1.0, abs=0.5)
    assert not any(f.any() for f in frames)
