"""The false-episode tail model (models/tail.py): its threshold for a target rate, checked against the
episodes the job's own detector produces on fresh synthetic normal video with a known tail."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.evaluate import detect_clip
from models.tail import EXPONENTIAL_MIN, GPD_MIN, SHAPE_BOUNDS, TailModel, cluster_peaks, fit_tail, sustained
from models.train import _ema
from vad.config import DetectConfig
from vad.detect import EpisodeDetector

FPS = 10
DETECT = DetectConfig()


def _normal_video(
    rng, minutes: float, shape: float = 0.0, every_s: float = 12.0, fps: float = FPS
) -> tuple[np.ndarray, np.ndarray]:
    """Raw frame scores: noise around 1 with a 0.8 s burst every ``every_s`` (jittered) whose height
    above 1.5 is GPD(shape, scale 0.3): a known tail of bursts, at any frame rate."""
    n = int(minutes * 60 * fps)
    raw = 1.0 + 0.05 * rng.standard_normal(n)
    t, k = 5.0, round(0.8 * fps)
    while (i := int(t * fps)) + k < n:
        u = rng.random()
        excess = 0.3 * (-math.log(u) if shape == 0 else (u**-shape - 1) / shape)
        raw[i : i + k] = 1.5 + excess + 0.02 * rng.standard_normal(k)
        t += every_s * (0.8 + 0.4 * rng.random())
    return raw, np.round(np.arange(n) * 1000 / fps).astype(np.int64)


def _fit(clips, detect=DETECT):
    return fit_tail(
        [(_ema(r, detect.ema_alpha), ts) for r, ts in clips],
        ema_alpha=detect.ema_alpha,
        min_duration_s=detect.min_duration_s,
        merge_gap_s=detect.merge_gap_s,
        cooldown_s=detect.cooldown_s,
    )


def _episodes_per_hour(threshold: float, raw: np.ndarray, ts: np.ndarray) -> float:
    events = detect_clip("cam", raw, None, EpisodeDetector(DETECT, threshold), ts)[1]
    return len(events) / ((ts[-1] + ts[1]) / 3.6e6)


@pytest.mark.parametrize("shape, fps", [(0.0, FPS), (0.25, FPS), (0.0, 25.0)])
def test_the_threshold_gives_the_target_rate_of_detector_episodes_on_fresh_video(shape, fps):
    rng = np.random.default_rng(1)
    tail = _fit([_normal_video(rng, 60, shape, fps=fps)])
    assert tail.method == "gpd" and tail.clusters >= GPD_MIN
    assert abs(tail.shape - shape) < 0.2
    raw, ts = _normal_video(rng, 240, shape, fps=fps)
    for target in (20.0, 60.0):
        got = _episodes_per_hour(tail.threshold(target), raw, ts)
        # 4 h of fresh video: 80-240 expected episodes, Poisson noise ~7-11 %; the fit's own error on
        # 300 bursts adds more at the rarer rate.
        assert target / 1.6 < got < target * 1.6, (target, got)
    assert tail.threshold(1.0) > tail.threshold(20.0) > tail.threshold(60.0) > tail.level


def test_a_few_minutes_of_video_still_give_a_finite_threshold_above_what_was_seen():
    rng = np.random.default_rng(2)
    tail = _fit([_normal_video(rng, 2)])  # ~10 bursts
    assert tail.method in ("gpd-pwm", "exponential") and tail.shape >= 0
    thr = tail.threshold(1.0)  # one per hour, from two minutes
    assert math.isfinite(thr) and thr > tail.max_peak
    raw, ts = _normal_video(rng, 120)
    assert _episodes_per_hour(thr, raw, ts) < 10  # bounded: the video has 300 bursts an hour


def test_fewer_peaks_than_the_exponential_needs_fall_back_to_the_exponential():
    rng = np.random.default_rng(3)
    tail = _fit([_normal_video(rng, 1, every_s=15)])  # 3-4 bursts
    assert tail.clusters < EXPONENTIAL_MIN and tail.method == "exponential" and tail.shape == 0
    assert math.isfinite(tail.threshold(0.1)) and tail.threshold(0.1) > tail.level


def test_constant_scores_still_give_a_valid_model_and_threshold():
    ts = np.arange(600, dtype=np.int64) * 100
    tail = _fit([(np.full(600, 0.7), ts)])
    assert tail.scale > 0 and tail.threshold(1.0) >= 0.7 and math.isfinite(tail.threshold(1.0))


def test_several_clips_count_their_hours_and_never_join_across_clips():
    rng = np.random.default_rng(4)
    one = _fit([_normal_video(rng, 3)])
    two = _fit([_normal_video(rng, 3), _normal_video(rng, 3)])
    assert two.hours == pytest.approx(2 * one.hours, rel=0.01)


def test_bounds_of_the_model():
    tail = TailModel(
        method="gpd",
        level=1.0,
        episodes_per_hour_at_level=100.0,
        shape=-0.4,
        scale=0.2,
        clusters=40,
        hours=0.5,
        max_peak=1.4,
        ema_alpha=0.5,
        min_duration_s=0.2,
        merge_gap_s=3.0,
        cooldown_s=1.0,
    )
    # A rate at or above the level's is not modelled: the level.
    assert tail.threshold(100.0) == tail.threshold(500.0) == 1.0
    # A bounded tail (shape < 0) never goes past its endpoint u + sigma / |xi|.
    assert tail.threshold(1e-6) < 1.0 + 0.2 / 0.4
    assert tail.episodes_per_hour(1.0 + 0.2 / 0.4 + 0.01) == 0.0
    for r in (0.5, 5.0, 50.0):
        assert tail.episodes_per_hour(tail.threshold(r)) == pytest.approx(r)
    with pytest.raises(ValueError, match="positive"):
        tail.threshold(0.0)
    with pytest.raises(ValueError):
        TailModel.model_validate({**tail.model_dump(), "shape": SHAPE_BOUNDS[1] + 0.1})
    with pytest.raises(ValueError):
        TailModel.model_validate({**tail.model_dump(), "scale": 0.0})
    with pytest.raises(ValueError, match="no calibration clips"):
        fit_tail([], ema_alpha=0.5, min_duration_s=0.2, merge_gap_s=3.0, cooldown_s=1.0)


def test_sustained_is_the_level_held_for_min_duration_in_event_time():
    s = np.array([1.0, 3.0, 2.0, 5.0, 4.0])
    ts = np.array([0, 100, 200, 300, 400])
    assert sustained(s, ts, 0.0).tolist() == s.tolist()
    got = sustained(s, ts, 0.2)  # the run must span 200 ms: the min over the last three frames
    assert np.isneginf(got[:2]).all() and got[2:].tolist() == [1.0, 2.0, 2.0]


def test_cluster_peaks_merge_runs_closer_than_the_separation():
    levels = np.array([0, 2, 0, 3, 0, 0, 0, 0, 4, 0], float)
    ts = np.arange(10) * 1000
    assert cluster_peaks(levels, ts, 1.0, 2000) == [3.0, 4.0]
    assert cluster_peaks(levels, ts, 1.0, 1000) == [2.0, 3.0, 4.0]
