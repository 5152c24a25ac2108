"""`vad dead-letters`' counting and printing (the real topic and job: tests/integration/test_pipeline.py)."""

from __future__ import annotations

import argparse
import io
import json
import time
from collections import namedtuple

import pytest
from kafka import TopicPartition
from kafka.errors import KafkaTimeoutError

from vad.config import load_config
from vad.dead_letters import DETAIL_WIDTH, UNREADABLE, Tally, add_arguments, print_table, read, run
from vad.records import DeadLetter

T0 = 1_800_000_000_000


def letter(camera: str | None, reason: str, seen_ms: int, detail: str = "what") -> bytes:
    return (
        DeadLetter(reason=reason, detail=detail, camera_id=camera, size=3, payload_b64="YWJj", seen_ms=seen_ms)
        .to_json()
        .encode()
    )


def test_counts_per_camera_and_reason_with_the_first_and_last_time_and_the_newest_detail():
    t = Tally(0)
    t.add(letter("a", "edge_settings_mismatch", T0 + 200, "newest"), T0)
    t.add(letter("a", "edge_settings_mismatch", T0, "oldest"), T0)  # read after, seen before
    t.add(letter("a", "edge_settings_mismatch", T0 + 100, "middle"), T0)
    t.add(letter("a", "truncated", T0 + 50), T0)
    t.add(letter(None, "bad_magic", T0 + 10), T0)
    s = t.summary(complete=True)
    assert s.records == 5 and s.complete
    assert [(g.camera_id, g.reason, g.count) for g in s.groups] == [
        ("a", "edge_settings_mismatch", 3),  # most first
        (None, "bad_magic", 1),
        ("a", "truncated", 1),
    ]
    g = s.groups[0]
    assert (g.first_seen_ms, g.last_seen_ms, g.detail) == (T0, T0 + 200, "newest")


def test_only_the_cameras_and_reasons_asked_for_are_counted():
    t = Tally(0, cameras=["a"], reasons=["truncated"])
    for cam, reason in [("a", "truncated"), ("b", "truncated"), ("a", "grid_mismatch"), ("a", "truncated")]:
        t.add(letter(cam, reason, T0), T0)
    s = t.summary(complete=True)
    assert s.records == 2 and [(g.camera_id, g.reason, g.count) for g in s.groups] == [("a", "truncated", 2)]


def test_a_message_that_is_no_dead_letter_is_counted_as_unreadable_at_its_kafka_time():
    t = Tally(0)
    t.add(b"not json", T0 + 5)
    t.add(json.dumps({"schema": "vad.dead-letter/v1", "reason": "Bad Reason"}).encode(), T0 + 9)
    (g,) = t.summary(complete=True).groups
    assert (g.camera_id, g.reason, g.count, g.first_seen_ms, g.last_seen_ms) == (None, UNREADABLE, 2, T0 + 5, T0 + 9)
    assert g.detail.startswith("not a vad.dead-letter/v1 record: ")


def test_the_table_truncates_details_and_says_when_counts_are_partial():
    t = Tally(T0 - 3_600_000)
    long = "x" * (DETAIL_WIDTH + 50)
    t.add(letter("cam-with-a-long-id", "edge_settings_mismatch", T0, long), T0)
    out = io.StringIO()
    print_table(t.summary(complete=False), out)
    head, row, total, partial = out.getvalue().splitlines()
    assert head.split() == ["camera", "reason", "count", "first", "seen", "last", "seen", "detail"]
    assert head.index("reason") == row.index("edge_settings_mismatch")  # columns line up
    assert row.split()[:3] == ["cam-with-a-long-id", "edge_settings_mismatch", "1"]
    assert "2027-01-15 08:00:00Z" in row and row.endswith("x" * (DETAIL_WIDTH - 3) + "...")
    assert total == "1 dead letters since 2027-01-15 07:00:00Z" and "partial" in partial
    empty = io.StringIO()
    print_table(Tally(T0).summary(complete=True), empty)
    assert empty.getvalue() == "no dead letters since 2027-01-15 08:00:00Z\n"
    whole = io.StringIO()
    print_table(Tally(0).summary(complete=True), whole)
    assert whole.getvalue() == "no dead letters in the whole topic\n"


def test_letters_the_job_rejected_before_since_are_not_counted():
    t = Tally(T0)
    t.add(letter("a", "truncated", T0 - 1), T0 + 5)  # a Kafka time after since, rejected before it
    t.add(letter("a", "truncated", T0), T0 - 5)
    t.add(b"not json", T0 - 1)  # no dead letter: its Kafka time decides
    (g,) = t.summary(complete=True).groups
    assert (g.reason, g.count, g.first_seen_ms) == ("truncated", 1, T0)


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_arguments(p)
    return p.parse_args(argv)


def test_bad_arguments_are_refused_before_any_connection(capsys):
    assert run(None, _args("--since", "yesterday")) == 2  # type: ignore[arg-type]  # no config needed
    assert "--since 'yesterday'" in capsys.readouterr().err
    assert run(None, _args("--timeout", "0")) == 2  # type: ignore[arg-type]
    assert "must be positive" in capsys.readouterr().err
    # A misspelt reason would read as "no dead letters".
    assert run(None, _args("--reason", "edge_setting_mismatch", "--reason", "truncated")) == 2  # type: ignore[arg-type]
    err = capsys.readouterr().err
    assert "unknown --reason edge_setting_mismatch;" in err and "edge_settings_mismatch" in err


Record = namedtuple("Record", "offset timestamp value")


class FakeConsumer:
    """The part of KafkaConsumer ``read`` uses, over in-memory partitions of (Kafka time, value);
    ``arriving`` is appended to partition 0 once the ends are taken, as a flood would be."""

    def __init__(self, parts, arriving=(), stuck=False):
        self.parts = {p: list(recs) for p, recs in parts.items()}
        self.arriving, self.stuck = list(arriving), stuck
        self.pos, self.paused, self.closed, self.polls = {}, set(), False, 0

    def partitions_for_topic(self, topic):
        return set(self.parts) if topic == "dlq" else None

    def assign(self, tps):
        self.tps = tps

    def end_offsets(self, tps):
        ends = {tp: len(self.parts[tp.partition]) for tp in tps}
        self.parts[0] += self.arriving
        return ends

    def offsets_for_times(self, times):
        out = {}
        for tp, since in times.items():
            first = [i for i, (ts, _) in enumerate(self.parts[tp.partition]) if ts >= since]
            out[tp] = namedtuple("O", "offset timestamp")(first[0], since) if first else None
        return out

    def seek(self, tp, offset):
        self.pos[tp] = offset

    def position(self, tp):
        return self.pos[tp]

    def pause(self, tp):
        self.paused.add(tp)

    def poll(self, timeout_ms, max_records):
        self.polls += 1
        out = {}
        for tp in self.tps:
            if tp in self.paused or self.stuck:
                continue
            recs = self.parts[tp.partition][self.pos[tp] : self.pos[tp] + min(max_records, 2)]
            if recs:
                out[tp] = [Record(self.pos[tp] + i, ts, v) for i, (ts, v) in enumerate(recs)]
                self.pos[tp] += len(recs)
                max_records -= len(recs)
        if not out:
            time.sleep(timeout_ms / 1000)  # as a real poll waits for records
        return out

    def close(self):
        self.closed = True


CFG = load_config(env={"VAD_KAFKA__TOPICS__DEAD_LETTER": "dlq"})


def _part(*letters):
    return [(seen, letter(cam, reason, seen)) for cam, reason, seen in letters]


def test_read_counts_from_since_to_the_ends_at_the_start_over_every_partition():
    old = ("a", "truncated", T0 - 10)
    parts = {
        0: _part(old, ("a", "truncated", T0), ("b", "grid_mismatch", T0 + 1), ("a", "truncated", T0 + 2)),
        1: [],  # empty
        2: _part(old),  # nothing since
        3: _part(("c", "bad_magic", T0 + 3)),
    }
    flood = _part(("a", "truncated", T0 + 9), ("a", "truncated", T0 + 9))
    consumer = FakeConsumer(parts, arriving=flood)
    s = read(CFG, Tally(T0), timeout_s=10, max_records=100, consumer=consumer)
    assert s.complete and consumer.closed
    assert {(g.camera_id, g.reason): g.count for g in s.groups} == {
        ("a", "truncated"): 2,  # not the old one, nor what arrived after the start
        ("b", "grid_mismatch"): 1,
        ("c", "bad_magic"): 1,
    }
    assert s.records == 4 and consumer.paused == {TopicPartition("dlq", p) for p in range(4)}


def test_read_stops_at_its_record_bound_or_its_deadline_and_says_the_count_is_partial():
    parts = {0: _part(*[("a", "truncated", T0 + i) for i in range(10)])}
    cut = read(CFG, Tally(T0), timeout_s=10, max_records=4, consumer=FakeConsumer(parts))
    assert not cut.complete and cut.records == 4
    stuck = FakeConsumer(parts, stuck=True)  # e.g. waiting on an open transaction
    late = read(CFG, Tally(T0), timeout_s=1.2, max_records=100, consumer=stuck)
    assert not late.complete and late.records == 0 and 2 <= stuck.polls <= 4


def test_read_names_a_missing_topic_and_turns_kafka_errors_into_one_line():
    with pytest.raises(ValueError, match=r"no topic vad.dead-letter \(kafka.topics.dead_letter\) on 127.0.0.1:9092"):
        read(load_config(env={}), Tally(0), 10, 100, consumer=FakeConsumer({0: []}))

    class Down(FakeConsumer):
        def partitions_for_topic(self, topic):
            raise KafkaTimeoutError("Failed to update metadata after 60.0 secs.")

    down = Down({0: []})
    with pytest.raises(RuntimeError, match=r"Kafka at 127\.0\.0\.1:9092: KafkaTimeoutError: Failed to update metadata"):
        read(CFG, Tally(0), 10, 100, consumer=down)
    assert down.closed
