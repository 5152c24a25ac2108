"""`vad dead-letters`' counting and printing (the real topic and job: tests/integration/test_pipeline.py)."""

from __future__ import annotations

import argparse
import io
import json

from vad.dead_letters import DETAIL_WIDTH, UNREADABLE, Tally, add_arguments, print_table, run
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


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_arguments(p)
    return p.parse_args(argv)


def test_bad_arguments_are_refused_before_any_connection(capsys):
    assert run(None, _args("--since", "yesterday")) == 2  # type: ignore[arg-type]  # no config needed
    assert "--since 'yesterday'" in capsys.readouterr().err
    assert run(None, _args("--timeout", "0")) == 2  # type: ignore[arg-type]
    assert "must be positive" in capsys.readouterr().err
