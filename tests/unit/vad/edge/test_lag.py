"""The backlog watch on scripted send lags: an anchor offset, clock drift and a reconnect are not
falling behind; a growing lag is, once per episode, with hysteresis."""

from __future__ import annotations

import pytest

from vad.edge.lag import LagWatch


def feed(watch, lags_ms, period_ms=100.0, t0=1_700_000_000_000.0, connection=0):
    """Records every ``period_ms`` of event time, each handed over ``lag`` ms after it; the changes."""
    out = []
    for i, lag in enumerate(lags_ms):
        ts = t0 + i * period_ms
        change = watch.observe(ts, ts + lag, connection)
        if change:
            out.append((i, change))
    return out


def test_a_constant_offset_from_the_anchor_is_not_a_backlog():
    # A stream that waited 1.5 s for its first keyframe after the anchor was taken.
    w = LagWatch(500)
    assert feed(w, [1500 + (7 if i % 3 else -4) for i in range(600)]) == []
    assert w.late == 0 and w.episodes == 0 and w.max_ms == 1507 and w.backlog_max_ms <= 11


def test_a_growing_lag_warns_once_and_catches_up_under_half_the_limit():
    # 80 % of the needed speed for 40 frames (+25 ms a frame), then draining (-50 ms a frame).
    lags = [5 + 25 * i for i in range(40)] + [980 - 50 * i for i in range(1, 20)]
    w = LagWatch(500)
    changes = feed(w, lags)
    first_late = next(i for i, lag in enumerate(lags) if lag - 5 > 500)
    first_back = next(i for i, lag in enumerate(lags) if i > first_late and lag - 5 <= 250)
    assert changes == [(first_late, "behind"), (first_back, "caught_up")]
    assert w.late == sum(lag - 5 > 500 for lag in lags) and w.episodes == 1 and not w.behind
    # The floor may rise 0.1 ms a frame (clock drift allowance), so the backlog is a little under lag - 5.
    assert w.episode_max_ms == w.backlog_max_ms and 965 < w.backlog_max_ms < 975
    assert w.episode_s == pytest.approx((first_back - first_late) * 0.1)


def test_hovering_at_the_limit_is_one_episode_and_a_second_fall_is_another():
    w = LagWatch(500)
    hover = [0] + [600 if i % 2 else 400 for i in range(50)]
    assert [c for _, c in feed(w, hover + [100] + [700] * 3)] == ["behind", "caught_up", "behind"]
    assert w.episodes == 2 and w.behind and w.as_dict()["behind"] is True


def test_camera_clock_drift_is_not_falling_behind_but_a_slow_fall_is():
    # Twelve hours at 1 fps of a camera clock 100 ppm slow: the lag grows by 4.3 s in all.
    slow_clock = LagWatch(500)
    assert feed(slow_clock, [0.1 * i for i in range(12 * 3600)], period_ms=1000.0) == []
    assert slow_clock.max_ms > 4000 and slow_clock.episodes == 0
    # Decoding at 98 % of the frame rate: 20 ms more a second, behind within the minute.
    slow_edge = LagWatch(500)
    ((i, change),) = feed(slow_edge, [20.0 * i for i in range(120)], period_ms=1000.0)
    assert change == "behind" and 25 <= i <= 30


def test_a_new_connection_starts_a_new_floor():
    # Reconnected: the new anchor comes 2 s before the first frame (a keyframe wait).
    rebased = LagWatch(500)
    feed(rebased, [3] * 50)
    assert feed(rebased, [2003] * 50, t0=1_700_000_010_000.0, connection=1) == []
    # The same jump on the same connection is two seconds of backlog.
    same = LagWatch(500)
    feed(same, [3] * 50)
    assert feed(same, [2003] * 50, t0=1_700_000_010_000.0) == [(0, "behind")]
