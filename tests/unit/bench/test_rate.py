"""The job benchmark's rate arithmetic: which checkpoint commits bound the measured window."""

from __future__ import annotations

import pytest

from bench import common as c
from bench.job import _rate, summarise


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


def run_at(cpu_rate: float, wall_rate: float) -> dict:
    return {"records_per_cpu_s": cpu_rate, "records_per_s": wall_rate}


def test_goal_keys_are_the_means_of_the_two_runs_of_each_job():
    tp = {
        "default": run_at(24_000, 23_000),
        "per_record_map": run_at(5_000, 4_900),
        "passthrough": run_at(99_000, 99_000),  # not part of either mean
        "per_record_map_2": run_at(4_000, 3_900),
        "default_2": run_at(20_000, 19_000),
    }
    s = summarise(tp)
    assert s["job_records_per_s_per_core"] == 22_000
    assert s["job_records_per_s"] == 21_000
    # A drift that slowed both second runs cancels: 22,000 / 4,500, not 24,000 / 5,000 or 20,000 / 4,000.
    assert s["job_vs_per_record_ratio"] == pytest.approx(22_000 / 4_500, abs=0.01)
    assert s["job_vs_per_record_ratio_wall"] == pytest.approx(21_000 / 4_400, abs=0.01)


def test_a_run_without_a_rate_leaves_the_mean_to_the_other():
    tp = {
        "default": run_at(24_000, 23_000),
        "per_record_map": {"error": "fewer than two checkpoints committed offsets"},
        "per_record_map_2": run_at(4_000, 3_900),
        "default_2": run_at(20_000, 19_000),
    }
    assert summarise(tp)["job_vs_per_record_ratio"] == pytest.approx(22_000 / 4_000, abs=0.01)


def test_no_goal_keys_without_a_per_record_rate():
    tp = {"default": run_at(24_000, 23_000), "per_record_map": {"error": "x"}, "default_2": run_at(20_000, 19_000)}
    assert summarise(tp) == {}
