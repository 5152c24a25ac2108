"""The edge's watch on a Kafka client that stopped reporting deliveries (vad/edge/stall.py): stuck only
when records are outstanding and none was acknowledged or failed for longer than the limit."""

from __future__ import annotations

from vad.edge.stall import StallWatch


def test_outstanding_records_without_any_report_past_the_limit_are_stuck():
    w = StallWatch(150, now=0)
    assert w.stuck(handed=10, done=10, now=1) == 0
    assert w.stuck(handed=30, done=10, now=2) == 0
    assert w.stuck(handed=50, done=10, now=151) == 0  # 149 s since the last report
    assert w.stuck(handed=60, done=10, now=153) == 50


def test_any_report_restarts_the_clock():
    w = StallWatch(150, now=0)
    w.stuck(handed=30, done=10, now=1)
    assert w.stuck(handed=40, done=11, now=140) == 0  # one record expired: the client still works
    assert w.stuck(handed=50, done=11, now=289) == 0
    assert w.stuck(handed=50, done=11, now=291) == 39


def test_nothing_outstanding_is_never_stuck():
    w = StallWatch(150, now=0)
    assert w.stuck(handed=10, done=10, now=1000) == 0
    assert w.stuck(handed=11, done=10, now=1100) == 0  # the clock starts with the outstanding record
    assert w.stuck(handed=11, done=10, now=1151) == 1
