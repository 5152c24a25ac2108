"""The live edge bench's lag bookkeeping: what it takes per record and what it leaves out."""

from __future__ import annotations

import numpy as np
import pytest

from bench import edge_live


class _Future:
    def __init__(self):
        self.callbacks = []

    def add_callback(self, fn):
        self.callbacks.append(fn)


class _Inner:
    """Stands in for the Kafka client: keeps the futures so the test acknowledges them when it likes."""

    def __init__(self):
        self.futures, self.calls = [], []

    def send(self, topic, key, value, timestamp_ms):
        self.calls.append((topic, key, value, timestamp_ms))
        self.futures.append(_Future())
        return self.futures[-1]


def test_timed_producer_passes_records_on_and_takes_send_and_ack_times(monkeypatch):
    clock = {"now": 10.0}
    monkeypatch.setattr(edge_live.time, "time", lambda: clock["now"])
    inner = _Inner()
    p = edge_live.TimedProducer(inner)
    fut = p.send("t", key=b"cam", value=b"v", timestamp_ms=9_950)
    assert inner.calls == [("t", b"cam", b"v", 9_950)]
    assert p.sent == [(9_950, 10_000.0)] and p.acked == []
    clock["now"] = 10.03
    for cb in fut.callbacks:
        cb(None)
    assert p.acked == [(9_950, pytest.approx(10_030.0))]


def test_lags_leave_out_the_first_two_seconds_of_event_time():
    pairs = [(1_000.0, 1_500.0), (2_999.0, 3_000.0), (3_000.0, 3_004.0), (4_000.0, 4_100.0)]
    # Event times 1,000 and 2,999 fall in the warm-up (before 1,000 + 2,000); the others give wall - event.
    assert list(edge_live._lags(pairs)) == [4.0, 100.0]
    assert edge_live._lags([]).size == 0


def test_percentiles_of_nothing_are_none_not_an_error():
    assert edge_live._pct(np.zeros(0), 99) is None
    assert edge_live._pct(np.array([1.0, 3.0]), 50) == 2.0


def test_frame_period_follows_the_target_rate_and_ped2s_when_every_frame_is_kept():
    from vad.config import EdgeConfig

    s = EdgeConfig().settings_for(None)
    assert edge_live.frame_period_s(s.model_copy(update={"target_fps": 25.0})) == pytest.approx(0.04)
    assert edge_live.frame_period_s(s.model_copy(update={"target_fps": None})) == pytest.approx(0.1)


def test_an_edge_override_is_refused_with_its_field_before_any_server_starts(monkeypatch, capsys):
    from bench import common

    def no_servers():
        raise AssertionError("the stack was started for a config that cannot load")

    monkeypatch.setattr(common, "stack_up", no_servers)
    assert edge_live._edge_override("flow_scale=0.25") == ("flow_scale", "0.25")
    for argv, says in (
        (["--edge", "flow_scale"], "expected FIELD=VALUE"),
        (["--edge", "flow_scale=7"], "edge.flow_scale"),
    ):
        with pytest.raises(SystemExit) as e:
            edge_live.main(argv)
        assert e.value.code == 2 and says in capsys.readouterr().err
