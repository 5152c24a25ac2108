"""Operators count into the job's `vad` metric group, or into no-ops when Python metrics are off
(``python.metric.enabled: false``: PyFlink then gives no metric group at all)."""

from __future__ import annotations

from udfs.metrics import Announcement, vad_metrics


class _Runtime:
    def __init__(self, group):
        self.group = group

    def get_metrics_group(self):
        return self.group


class _Group:
    def __init__(self):
        self.names = []

    def add_group(self, name):
        self.names.append(name)
        return self


def test_the_vad_group_of_the_runtime_when_metrics_are_on():
    g = _Group()
    assert vad_metrics(_Runtime(g)) is g and g.names == ["vad"]


def test_no_op_metrics_when_python_metrics_are_off():
    g = vad_metrics(_Runtime(None))
    g.add_group("x").counter("records_in").inc(3)
    g.distribution("batch_size").update(64)  # nothing to assert but that it does not raise
    assert g.counter("c").inc() is None


class _Counter:
    def __init__(self):
        self.incs = []

    def inc(self, n: int = 1):
        self.incs.append(n)


def test_an_announcement_counts_each_counter_at_zero_on_its_first_call_only():
    a, b = _Counter(), _Counter()
    announce = Announcement(a, b)
    announce()
    a.inc(2)
    announce()
    assert a.incs == [0, 2] and b.incs == [0]
    Announcement(vad_metrics(_Runtime(None)).counter("vad_dead_letters"))()  # no-ops take it too
