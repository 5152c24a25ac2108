"""The scoring operator across an edge restart: frames ordered by (event time, frame index), a new
stream's first record (GAP) starting the camera afresh, event ids that differ between streams and
repeat on a replay. The Flink runtime is replaced by the fakes of test_score_detect."""

from __future__ import annotations

import numpy as np
from test_score_detect import operator, run

from vad.schema import FLAG_GAP, N_CHANNELS, FrameFeatures

T0 = 1_800_000_000_000


def rec(i, ts, value=0.0, gap=False, cam="a") -> bytes:
    f = np.full((12, 18, N_CHANNELS), value, np.float32)
    return FrameFeatures(cam, i, ts, 360, 240, f, FLAG_GAP if gap else 0).encode()


def stream(t0, n, hot_from, gap_first=True):
    """A producer stream: frames 0..n-1, 100 ms apart from t0, hot from frame ``hot_from``."""
    return [rec(i, t0 + 100 * i, 50.0 if i >= hot_from else 0.0, gap=gap_first and i == 0) for i in range(n)]


def test_a_restarted_edge_is_scored_and_its_episode_has_a_new_id():
    op = operator(update_every_s=100, cooldown_s=0)
    first, second = stream(T0, 40, hot_from=10), stream(T0 + 60_000, 30, hot_from=10)
    scores, events, _ = run(op, first + second, flush=False, batch=16)
    # Every frame of both streams is scored: none of the second is taken for a late one.
    assert len(scores) == 70 and [s["frame_index"] for s in scores[40:]] == list(range(30))
    opens = [e for e in events if e["phase"] == "open"]
    assert [(e["start_frame"], e["start_ts_ms"]) for e in opens] == [(10, T0 + 1_000), (10, T0 + 61_000)]
    assert opens[0]["event_id"] != opens[1]["event_id"]
    # The first stream's episode is closed by the restart, not carried into the new stream.
    closes = [e for e in events if e["phase"] == "close"]
    assert closes[0]["event_id"] == opens[0]["event_id"] and closes[0]["end_frame"] == 39


def test_event_ids_repeat_on_a_replay_of_the_same_records():
    records = stream(T0, 40, hot_from=10) + stream(T0 + 60_000, 30, hot_from=10)
    ids = []
    for _ in range(2):
        _, events, _ = run(operator(update_every_s=100, cooldown_s=0), records, flush=False, batch=16)
        ids.append([(e["event_id"], e["seq"]) for e in events])
    assert ids[0] == ids[1] and len({i for i, _ in ids[0]}) == 2


def test_a_restart_back_in_event_time_is_a_new_stream_but_unflagged_old_frames_are_late():
    op = operator(update_every_s=100, cooldown_s=600)
    # A backfilled file restarted within the event time of its previous run: the new stream goes
    # back; its GAP record starts it afresh, cooldown included.
    first, second = stream(T0, 40, hot_from=10), stream(T0 + 2_000, 30, hot_from=10)
    scores, events, _ = run(op, first + second, flush=False, batch=16)
    assert len(scores) == 70
    assert [e["start_ts_ms"] for e in events if e["phase"] == "open"] == [T0 + 1_000, T0 + 3_000]
    # A record of the new stream again (a duplicate) and one of the old stream (late) are dropped.
    scores, _, _ = run(op, [rec(5, T0 + 2_500), rec(39, T0 + 3_900, 50.0)], flush=False)
    assert scores == []


def test_an_unflagged_stream_later_in_event_time_resets_the_window():
    op = operator(update_every_s=100, cooldown_s=0)
    first, second = stream(T0, 20, hot_from=5), stream(T0 + 3_000, 10, hot_from=99, gap_first=False)
    scores, events, _ = run(op, first + second, flush=False, batch=8)
    assert len(scores) == 30
    assert [(e["phase"], e.get("close_reason")) for e in events][-1] == ("close", "gap")


def test_within_a_batch_frames_are_reordered_by_event_time_between_gap_records():
    op = operator(update_every_s=100, cooldown_s=0)
    first, second = stream(T0, 6, hot_from=99), stream(T0 + 200, 4, hot_from=99)
    # Frames 3 and 4 swapped in transit; the new stream (back in event time) after the old one.
    order = [first[0], first[1], first[2], first[4], first[3], first[5], *second]
    scores, _, _ = run(op, order, flush=False)
    assert [s["frame_index"] for s in scores] == [0, 1, 2, 3, 4, 5, 0, 1, 2, 3]


def test_a_skipped_index_without_a_flag_is_a_gap():
    op = operator(update_every_s=100, cooldown_s=0)
    # A hot stream loses frames 20-24 in delivery; the edge could not flag frame 25.
    records = stream(T0, 40, hot_from=5)
    scores, events, _ = run(op, records[:20] + records[25:], flush=False, batch=8)
    assert len(scores) == 35
    summary = [(e["phase"], e["start_frame"], e.get("close_reason")) for e in events]
    assert [e["end_frame"] for e in events if e["phase"] == "close"] == [19]
    assert [s for s in summary if s[0] != "update"] == [
        ("open", 5, None),
        ("close", 5, "gap"),
        ("open", 25, None),
    ]
