"""The job's metric group, or a stand-in when Python metrics are switched off.

With ``python.metric.enabled: false`` PyFlink hands operators no metric group at all (None); the
operators then count into no-op metrics, so their code is the same either way.

A Python counter reaches Flink with the first bundle that updates it, and only then: a job without
dead letters would have no ``vad_dead_letters`` metric at all, rather than one at 0 (dashboards show no
data; Prometheus's rate() and increase() miss the first count of a series that starts at 1). An
operator therefore counts its counters once at 0 in its first element, inside a bundle, where
Beam keeps the cell for every later bundle (``Announcement``)."""

from __future__ import annotations

from pyflink.datastream import RuntimeContext


class _NoOp:
    def inc(self, n: int = 1) -> None:
        pass

    def update(self, value: int) -> None:
        pass


class _NoOpGroup:
    def add_group(self, _name: str, _extra: str | None = None) -> _NoOpGroup:
        return self

    def counter(self, _name: str) -> _NoOp:
        return _NoOp()

    def distribution(self, _name: str) -> _NoOp:
        return _NoOp()

    def gauge(self, _name: str, _obj) -> None:
        pass


def vad_metrics(runtime_context: RuntimeContext):
    """The ``vad`` metric group of an operator (a no-op group when Python metrics are off)."""
    group = runtime_context.get_metrics_group()
    return _NoOpGroup() if group is None else group.add_group("vad")


class Announcement:
    """Counts each of its counters once at 0, on its first call only, so Flink registers them
    before their first real count. Call it while processing an element: outside a bundle the
    count goes to no operator's metrics."""

    def __init__(self, *counters):
        self._pending = counters

    def __call__(self) -> None:
        for c in self._pending:
            c.inc(0)
        self._pending = ()
