"""The job benchmark's rate arithmetic: which checkpoint commits bound the measured window."""

from __future__ import annotations

import pytest

from bench import common as c
from bench.job import _rate


class OneCore:
    def cores_between(self, t0_ms: float, t1_ms: float) -> float:
        return 1.0


def commits_every(interval_s: float, rate: float, until_s: float, cap: int | None = None) -> list[tuple[float, int]]:
    out, t = [], interval_s
    while t <= until_s:
        o = int(rate * t)
        out.append((t * 1000, o if cap is None else min(o, cap)))
        t += interval_s
    return out


def test_rate_is_read_between_commits_after_the_warm_up():
    commits = commits_every(5, 10_000, 70)  # first commit at 5 s
    r = _rate(commits, 10**9, OneCore(), {}, 30, 25)
    assert r["records_per_s"] == pytest.approx(10_000)
    assert r["window_s"] == pytest.approx(25)  # 35 s -> 60 s
    assert r["checkpoints_in_window"] == 5
    assert r["backlog_ran_out"] is False
    assert r["records_per_cpu_s"] == pytest.approx(10_000)


def test_warm_up_commits_do_not_count():
    # Slow for the first 30 s (JIT), then 20,000/s: only the fast part is measured.
    commits = [(t * 1000, 5_000 * t if t <= 30 else 150_000 + 20_000 * (t - 30)) for t in range(5, 75, 5)]
    assert _rate(commits, 10**9, OneCore(), {}, 25, 25)["records_per_s"] == pytest.approx(20_000)


def test_backlog_running_out_is_flagged():
    commits = commits_every(5, 10_000, 70, cap=500_000)
    r = _rate(commits, 500_000, OneCore(), {}, 30, 25)
    assert r["backlog_ran_out"] is True
    assert r["records_per_s"] < 10_000


def test_too_few_commits_is_an_error_not_a_rate():
    assert "error" in _rate([(1000, 10)], 100, OneCore(), {}, 30, 25)
    assert "error" in _rate(commits_every(5, 100, 20), 10**9, OneCore(), {}, 30, 25)


def test_commits_are_the_points_where_the_offset_moves():
    s = c.OffsetSampler.__new__(c.OffsetSampler)
    s.samples = [(0, 0), (200, 0), (400, 50), (600, 50), (800, 120), (1000, 120)]
    assert s.commits() == [(400, 50), (800, 120)]
    assert s.first_commit_ms() == 400
    assert s.last == 120
