"""Laying a sampled camera's scores and episodes over per-frame labels (models.evaluate.clip_result)."""

from __future__ import annotations

import numpy as np
import pytest

from models.evaluate import clip_result, metrics, per_clip


def test_every_frame_sampled_is_the_identity():
    s = np.array([0.1, 0.5, 2.0, 0.3])
    r = clip_result("c", s, s, [(1, 2, 3)], [(2, 3)], np.arange(4), 4)
    assert r.scores.tolist() == s.tolist() and r.labels.tolist() == [0, 0, 1, 1] and r.events == [(1, 2, 3)]


def test_sampled_frames_hold_their_score_until_the_next_sample_and_episodes_move_to_positions():
    # Every 3rd of 10 frames sampled: scores per sample, an episode from sample 1 to 3.
    s = np.array([0.0, 1.0, 2.0, 3.0])
    r = clip_result("c", s, s, [(1, 2, 3)], [(4, 8)], np.array([0, 3, 6, 9]), 10)
    assert r.scores.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3]  # causal: never a later sample's score
    assert r.labels.tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 1, 0]
    assert r.events == [(3, 6, 9)]
    assert r.raw is s  # per sampled frame, as streamed


def test_frames_after_the_last_sample_keep_its_score():
    r = clip_result("c", np.array([1.0, 5.0]), np.array([1.0, 5.0]), [], [], np.array([0, 2]), 5)
    assert r.scores.tolist() == [1, 1, 5, 5, 5]


def test_scores_and_positions_must_agree():
    with pytest.raises(ValueError, match="3 scores for 2 sampled frames"):
        clip_result("c", np.zeros(3), np.zeros(3), [], [], np.array([0, 1]), 2)


def _result(name, frames, intervals, events):
    y = np.zeros(frames, np.int8)
    for a, b in intervals:
        y[a : b + 1] = 1
    s = y.astype(np.float64)
    return clip_result(name, s, s, events, intervals, np.arange(frames), frames)


def test_event_quality_counts_episodes_per_interval_false_episodes_and_first_alert_delay():
    # 36,000 frames at 10 fps (an hour), two labelled intervals: the first gets three episodes (the
    # first opening 20 frames late), the second one (open before it starts); two episodes hit nothing.
    r = _result(
        "c",
        36_000,
        [(100, 300), (1000, 1100)],
        [(110, 120, 150), (160, 170, 200), (250, 260, 320), (990, 995, 1050), (5000, 5010, 5020), (9000, 9001, 9002)],
    )
    m = metrics([r], fps=10.0)
    assert m["episodes_per_interval"] == pytest.approx((3 + 1) / 2)
    normal_hours = (36_000 - 201 - 101) / 10 / 3600
    assert m["false_episodes_per_hour"] == pytest.approx(2 / normal_hours)
    assert m["first_alert_delay_s"] == pytest.approx(((120 - 100) / 10 + 0) / 2)
    assert m["median_first_alert_delay_s"] == pytest.approx(1.0)
    assert m["event_recall"] == 1.0
    assert per_clip([r], fps=10.0)["c"]["first_alert_delays_s"] == [2.0, 0.0]


def test_a_missed_interval_counts_zero_episodes_and_no_delay():
    r = _result("c", 1000, [(100, 200), (600, 700)], [(150, 160, 180)])
    m = metrics([r], fps=10.0)
    assert m["episodes_per_interval"] == pytest.approx(0.5)
    assert m["event_recall"] == 0.5 and m["first_alert_delay_s"] == pytest.approx(6.0)
    assert m["median_first_alert_delay_s"] == pytest.approx(6.0)
    assert m["false_episodes_per_hour"] == 0
    assert per_clip([r], fps=10.0)["c"]["first_alert_delays_s"] == [6.0, None]
