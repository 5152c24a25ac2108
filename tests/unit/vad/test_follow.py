"""`vad events --follow` without a broker: its filters, its output formats, its flags, and what it
commits (Kafka's consumer replaced by a fake that records the commits)."""

from __future__ import annotations

import io
import json
import threading
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from kafka.structs import TopicPartition

from vad import follow
from vad.config import load_config
from vad.detect import event_id
from vad.follow import Filters, Printer, parse_since, table_header, table_row
from vad.records import Event
from vadctl.cli import main, parser

NOW_MS = int(datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp() * 1000)


def _event(camera: str = "cam-a", seq: int = 1, phase: str = "open", ts_ms: int = NOW_MS) -> Event:
    return Event(
        event_id=event_id(camera, 1_000, 3),
        camera_id=camera,
        phase=phase,
        seq=seq,
        start_frame=3,
        end_frame=3 + seq,
        start_ts_ms=1_000,
        ts_ms=ts_ms,
        peak_score=1.23456,
        peak_frame=4,
        threshold=1.0,
        heatmap=[[0.5]],
        model_version="v",
        close_reason="score" if phase == "close" else None,
    )


@pytest.mark.parametrize(
    ("text", "age_ms"),
    [("10m", 600_000), ("30s", 30_000), ("2h", 7_200_000), ("1d", 86_400_000), ("500ms", 500), ("1.5m", 90_000)],
)
def test_since_as_an_age(text, age_ms):
    assert parse_since(text, NOW_MS) == NOW_MS - age_ms


def test_since_as_an_iso_time_is_utc_unless_it_names_an_offset():
    base = int(datetime(2024, 5, 1, 12, tzinfo=UTC).timestamp() * 1000)
    assert parse_since("2024-05-01T12:00:00Z", NOW_MS) == base
    assert parse_since("2024-05-01T12:00:00", NOW_MS) == base
    assert parse_since("2024-05-01T14:00:00+02:00", NOW_MS) == base
    assert parse_since("2024-05-01", NOW_MS) == base - 12 * 3_600_000


@pytest.mark.parametrize("text", ["ten minutes", "10 years", "-5m", "", "12:00 yesterday"])
def test_since_that_reads_as_neither_is_refused_naming_the_flag(text):
    with pytest.raises(ValueError, match="--since"):
        parse_since(text, NOW_MS)


def test_filters_let_through_only_what_matches_each_given_set():
    f = Filters.build(["cam-a", "cam-b"], ["motion"], ["open", "close"], "1m", now_ms=NOW_MS)
    assert f.accepts(_event("cam-a"))
    assert f.accepts(_event("cam-b", 3, "close"))
    assert not f.accepts(_event("cam-c"))
    assert not f.accepts(_event("cam-a", 2, "update"))
    assert not f.accepts(_event("cam-a", ts_ms=NOW_MS - 60_001))
    assert f.accepts(_event("cam-a", ts_ms=NOW_MS - 60_000))
    assert not Filters.build(kinds=["loitering"]).accepts(_event())
    assert Filters().accepts(_event("anything", 2, "update", ts_ms=0))


@pytest.mark.parametrize(
    ("kw", "flag"),
    [
        ({"cameras": ["../x"]}, "--camera"),
        ({"cameras": [""]}, "--camera"),
        ({"kinds": ["Motion!"]}, "--kind"),
        ({"phases": ["opened"]}, "--phase"),
        ({"since": "soon"}, "--since"),
    ],
)
def test_bad_filter_values_are_refused_naming_the_flag(kw, flag):
    with pytest.raises(ValueError, match=flag):
        Filters.build(**kw)


def test_json_format_is_one_event_per_line_as_published():
    out = io.StringIO()
    p = Printer(out, "json")
    events = [_event(), _event(seq=2, phase="close")]
    for e in events:
        p.write(e)
    lines = out.getvalue().splitlines()
    assert [Event.parse(line) for line in lines] == events
    assert json.loads(lines[1])["schema"] == "vad.event/v1"


def test_table_format_has_a_header_then_aligned_rows():
    out = io.StringIO()
    p = Printer(out, "table")
    p.write(_event())
    p.write(_event("a-much-longer-camera-name", 2, "close"))
    header, first, second = out.getvalue().splitlines()
    assert header == table_header() and header.startswith("TIME (UTC)")
    assert first == table_row(_event())
    row = ["2030-01-02", "03:04:05.000", "cam-a", "motion", "open", "1", "1.23456", "1.00000", "3-4"]
    assert first.split() == [*row, _event().event_id]
    assert second.split()[3:5] == ["motion", "close"] and "score" in second.split()
    assert first.index("motion") == header.index("KIND")


def test_an_unknown_format_is_refused():
    with pytest.raises(ValueError, match="--format"):
        Printer(io.StringIO(), "yaml")


class _Consumer:
    """A fake KafkaConsumer: serves prepared poll batches, then empty polls; records commits."""

    def __init__(self, batches: list[dict]):
        self.batches, self.commits, self.closed = list(batches), [], False

    def poll(self, timeout_ms, max_records):
        return self.batches.pop(0) if self.batches else {}

    def commit(self, offsets):
        self.commits.append({tp: o.offset for tp, o in offsets.items()})

    def close(self, autocommit=True):
        assert autocommit is False
        self.closed = True


def _records(tp: TopicPartition, values: list, first_offset: int = 0) -> dict:
    return {tp: [SimpleNamespace(value=v, offset=first_offset + i) for i, v in enumerate(values)]}


@pytest.fixture
def fake(monkeypatch):
    # The CLI's stop signals would replace pytest's own SIGINT handling.
    monkeypatch.setattr(follow, "stop_on_signals", threading.Event)
    made = {}

    def install(batches):
        made["consumer"] = _Consumer(batches)

        def make_consumer(kcfg, topic, group_id=None, **kw):
            made["topic"], made["group"] = topic, group_id
            return made["consumer"]

        monkeypatch.setattr("vad.kafka_clients.make_consumer", make_consumer)
        return made

    return install


def test_follow_prints_the_filtered_events_and_commits_what_it_handled(fake):
    tp = TopicPartition("t", 0)
    a, b, c = _event("cam-a").to_json(), _event("cam-b").to_json(), _event("cam-a", 2, "update").to_json()
    made = fake([_records(tp, [a.encode(), b.encode(), b"not json", None, c.encode()], first_offset=10)])
    cfg = load_config(env={})
    out, warnings = io.StringIO(), []
    n = follow.follow(cfg, Filters.build(["cam-a"]), Printer(out), group="g1", idle_exit_s=0.01, warn=warnings.append)
    assert n == 2
    assert out.getvalue().splitlines() == [a, c]
    assert made["topic"] == cfg.kafka.topics.events and made["group"] == "g1"
    # Filtered-out and unreadable records are committed past too, else a resume would meet them again.
    assert made["consumer"].commits == [{tp: 15}]
    assert [w.split(":")[1].strip() for w in warnings] == ["skipping record 0/12", "skipping record 0/13"]
    assert made["consumer"].closed


def test_max_events_commits_up_to_the_last_printed_record_only(fake):
    tp0, tp1 = TopicPartition("t", 0), TopicPartition("t", 1)
    batch = {
        **_records(tp0, [_event("cam-a", s).to_json().encode() for s in (1, 2, 3)]),
        **_records(tp1, [_event("cam-b").to_json().encode()]),
    }
    made = fake([batch])
    out = io.StringIO()
    assert follow.follow(load_config(env={}), Filters(), Printer(out), max_events=2) == 2
    assert len(out.getvalue().splitlines()) == 2
    # The third record of partition 0 and partition 1's record were not printed: not committed.
    assert made["consumer"].commits == [{tp0: 2}]


def test_a_closed_output_commits_nothing_it_may_not_have_delivered(fake):
    class Gone(io.StringIO):
        def flush(self):
            raise BrokenPipeError

    made = fake([_records(TopicPartition("t", 0), [_event().to_json().encode()])])
    follow.follow(load_config(env={}), Filters(), Printer(Gone()), idle_exit_s=5)
    assert made["consumer"].commits == [] and made["consumer"].closed


def test_a_stop_request_ends_the_loop_after_the_current_poll(fake):
    made = fake([])
    stop = threading.Event()
    timer = threading.Timer(0.2, stop.set)
    timer.start()
    try:
        assert follow.follow(load_config(env={}), Filters(), Printer(io.StringIO()), stop=stop) == 0
    finally:
        timer.cancel()
    assert made["consumer"].closed


def test_the_cli_wires_the_flags_and_the_defaults(fake, capsys):
    made = fake([_records(TopicPartition("t", 0), [_event("x").to_json().encode()])])
    assert main(["events", "--follow", "--format", "table", "--max-events", "1"]) == 0
    assert made["group"] == follow.DEFAULT_GROUP
    assert capsys.readouterr().out.splitlines()[0] == table_header()
    args = parser().parse_args(["events", "--follow", "--camera", "a", "--camera", "b", "--phase", "open"])
    assert args.camera == ["a", "b"] and args.phase == ["open"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--camera", "a"], "--camera needs --follow"),
        (["--format", "table"], "--format needs --follow"),
        (["--follow", "--max-events", "0"], "--max-events"),
        (["--follow", "--idle-exit", "0"], "--idle-exit"),
        (["--follow", "--group", " "], "--group"),
        (["--follow", "--since", "later"], "--since"),
    ],
)
def test_bad_follow_flags_are_refused_before_any_read(fake, capsys, argv, message):
    made = fake([])
    assert main(["events", *argv]) == 1
    assert message in capsys.readouterr().err
    assert "consumer" in made and made.get("topic") is None


def test_without_follow_flags_vad_events_reads_once_as_before(fake, monkeypatch, capsys):
    made = fake([])
    calls = []

    def read_events(cfg, timeout_s, expect):
        calls.append((timeout_s, expect))
        return {"kafka": [_event()], "redis": []}

    monkeypatch.setattr("vad.consumer.read_events", read_events)
    assert main(["events", "--timeout", "3", "--expect", "1", "--quiet"]) == 0
    assert calls == [(3.0, 1)] and made.get("topic") is None
    assert json.loads(capsys.readouterr().out)["kafka"]["events"] == 1
