"""The job's metric group, or a stand-in when Python metrics are switched off.

With ``python.metric.enabled: false`` PyFlink hands operators no metric group at all (None); the
operators then count into no-op metrics, so their code is the same either way."""

from __future__ import annotations

from pyflink.datastream import RuntimeContext


class _NoOp:
    def inc(self, n: int = 1) -> None:
        pass

    def update(self, value: int) -> None:
        pass


class _NoOpGroup:
    def add_group(self, _name: str) -> _NoOpGroup:
        return self

    def counter(self, _name: str) -> _NoOp:
        return _NoOp()

    def distribution(self, _name: str) -> _NoOp:
        return _NoOp()


def vad_metrics(runtime_context: RuntimeContext):
    """The ``vad`` metric group of an operator (a no-op group when Python metrics are off)."""
    group = runtime_context.get_metrics_group()
    return _NoOpGroup() if group is None else group.add_group("vad")
