"""Laying a sampled camera's scores and episodes over per-frame labels (models.evaluate.clip_result)."""

from __future__ import annotations

import numpy as np
import pytest

from models.evaluate import clip_result


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
