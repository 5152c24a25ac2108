"""Sampling, event time, corrupt frames, reconnect with backoff and gap marking, on scripted sources;
the producer's bounded queue and delivery accounting on an in-memory Kafka producer."""

from __future__ import annotations

import itertools
import logging
import threading

import numpy as np
import pytest
from edge_fakes import LIVE, LIVE_ONCE, FakeCapture, FakeOpener, FakeProducer, edge_config, texture

from vad.config import EdgeSettings, load_config
from vad.edge.producer import linger_for, run_cameras
from vad.edge.sources import SourceError
from vad.edge.stats import CameraStats
from vad.edge.stream import CameraStream, sampled_frames
from vad.schema import decode


def frames_of(opener, clock=lambda: 1_700_000_000.0, **cfg):
    """Frames until the stream ends; a live one ends when reconnecting gives up (the error is returned)."""
    st = CameraStats()
    s = CameraStream("rtsp://cam/x", EdgeSettings(**cfg), st, opener=opener, clock=clock)
    out = []
    try:
        for f in sampled_frames(s):
            out.append(f)
    except SourceError as e:
        return out, st, e
    return out, st, None


def test_event_time_is_pts_anchored_to_wall_clock_and_sampling_keeps_every_nth():
    out, st, _ = frames_of(
        FakeOpener(FakeCapture([10], fps=10, start_pts_ms=5000.0)), reconnect="never", sample_every=3
    )
    assert st.read == 10 and st.sampled == 4
    assert [f.ts_ms for f in out] == [1_700_000_000_000 + k for k in (0, 300, 600, 900)]
    assert [f.position for f in out] == [0, 3, 6, 9]
    assert not any(f.gap for f in out)


def test_the_default_analyses_about_ten_frames_a_second_after_sample_every():
    out, st, _ = frames_of(FakeOpener(FakeCapture([30], fps=30)), reconnect="never")
    assert st.read == 30 and st.sampled == 10  # a 30 fps camera at the defaults' 10 fps
    out, st, _ = frames_of(FakeOpener(FakeCapture([30], fps=30)), reconnect="never", sample_every=2)
    # every 2nd frame (15 fps), then ~10 fps of those on average: 67 and 133 ms steps
    steps = {b.ts_ms - a.ts_ms for a, b in itertools.pairwise(out)}
    assert st.sampled == 10 and steps <= {66, 67, 133, 134}
    _, st, _ = frames_of(FakeOpener(FakeCapture([30], fps=30)), reconnect="never", target_fps=None)
    assert st.sampled == 30


def test_target_fps_samples_by_presentation_time():
    out, st, _ = frames_of(FakeOpener(FakeCapture([30], fps=30)), reconnect="never", target_fps=10)
    assert st.read == 30 and st.sampled == 10
    steps = {b.ts_ms - a.ts_ms for a, b in itertools.pairwise(out)}
    assert steps <= {99, 100, 101}


@pytest.mark.parametrize("fps", [10, 25, 30])
def test_target_fps_tolerates_jittered_timestamps(fps):
    # 2 s of video stamped 0.4 ms late / early in turn: a 10 fps target keeps 20 frames, about 100 ms
    # apart, whatever the source rate (when a frame 0.4 ms short of its due time was dropped, a 10 fps
    # source kept 19 of them, and a 30 fps one was sampled 67 and 133 ms apart).
    n, period = 2 * fps, 1000 / fps
    out, st, _ = frames_of(FakeOpener(FakeCapture([n], fps=fps, jitter_ms=0.4)), reconnect="never", target_fps=10)
    assert st.read == n and st.sampled == 20
    steps = [b.ts_ms - a.ts_ms for a, b in itertools.pairwise(out)]
    assert all(100 - period / 2 - 1 <= d <= 100 + period / 2 + 1 for d in steps)


def test_each_sampled_frame_knows_its_step_in_presentation_time():
    # 25 fps kept at 10 fps: uneven steps, which the extractor scales its flow by (vad.edge.features).
    out, _, _ = frames_of(FakeOpener(FakeCapture([20], fps=25)), reconnect="never", target_fps=10)
    assert [f.step_ms for f in out] == [None, 80, 120, 80, 120, 80, 120, 80]


def test_after_a_reconnect_the_step_starts_afresh_though_event_time_is_pushed_on():
    # The second connection starts only 100 ms of wall clock later than the first, which sent 400 ms
    # of video: event time is pushed on a millisecond a frame, the steps stay the source's own.
    t = iter([1000.0, 1000.1])
    opener = FakeOpener(FakeCapture([4, "drop"]), FakeCapture([3]))
    out, _, _ = frames_of(opener, clock=lambda: next(t), **{**LIVE, "reconnect_attempts": 1})
    assert [f.step_ms for f in out] == [None, 100, 100, 100, None, 100, 100]
    assert [b.ts_ms - a.ts_ms for a, b in itertools.pairwise(out[4:])] == [1, 1]


def test_missing_timestamps_fall_back_to_the_frame_rate():
    out, _, _ = frames_of(FakeOpener(FakeCapture([3], fps=4, pts=False)), reconnect="never")
    assert [f.ts_ms - out[0].ts_ms for f in out] == [0, 250, 500]


def test_corrupt_frame_is_counted_skipped_and_marks_a_gap():
    out, st, _ = frames_of(FakeOpener(FakeCapture([3, "corrupt", 2])), reconnect="never")
    assert st.corrupt == 1 and st.sampled == 5
    assert [f.gap for f in out] == [False, False, False, True, False]
    # Positions count the corrupt frame, so per-frame labels of the file still line up.
    assert [f.position for f in out] == [0, 1, 2, 4, 5]


def test_dropped_stream_reconnects_with_gap_and_monotonic_time():
    t = iter([1000.0, 1000.1])  # the second connection starts 100 ms of wall clock later
    opener = FakeOpener(FakeCapture([4, "drop"]), SourceError("down"), FakeCapture([3]))
    out, st, err = frames_of(opener, clock=lambda: next(t), **{**LIVE, "reconnect_attempts": 3})
    # the third open (after a failed one) succeeded; when that connection ended too, no more opens
    assert st.reconnects == 2 and opener.opens == 6 and "gave up after 3" in str(err)
    assert [f.gap for f in out] == [False] * 4 + [True, False, False]
    ts = [f.ts_ms for f in out]
    assert ts == sorted(ts) and len(set(ts)) == len(ts)


def test_gives_up_after_the_configured_attempts():
    opener = FakeOpener(FakeCapture([2, "drop"]))
    st = CameraStats()
    s = CameraStream("rtsp://cam/x", EdgeSettings(**LIVE), st, opener=opener)
    with pytest.raises(SourceError, match="gave up after 3"):
        list(sampled_frames(s))
    assert opener.opens == 1 + 3


def test_first_open_failure_is_immediate_and_clear():
    with pytest.raises(SourceError, match="cannot open"):
        CameraStream("rtsp://cam/x", EdgeSettings(**LIVE), CameraStats(), opener=FakeOpener())


def test_too_many_corrupt_frames_count_as_a_drop():
    opener = FakeOpener(FakeCapture([1, *["corrupt"] * 5, 1]), FakeCapture([2]))
    out, st, err = frames_of(opener, **{**LIVE, "max_consecutive_corrupt": 5})
    assert err is not None and st.corrupt == 5 and st.reconnects >= 1 and [f.gap for f in out][:2] == [False, True]


def _run(producer, script, limit=None, **edge):
    cfg = edge_config(**edge)
    (w,) = run_cameras(
        cfg, [("cam-1", "clip.mp4", cfg.edge.settings_for(None))], limit, producer, FakeOpener(FakeCapture(script))
    )
    return cfg, w


def test_records_are_keyed_decodable_and_counted():
    p = FakeProducer()
    cfg, w = _run(p, [12], limit=10)
    assert w.error is None and w.stats.sent == 10 and w.stats.sampled == 10
    recs = [decode(v) for _, _, v, _ in p.records]
    assert {t for t, *_ in p.records} == {cfg.kafka.topics.features}
    assert {k for _, k, _, _ in p.records} == {b"cam-1"}
    assert [r.frame_index for r in recs] == list(range(10))
    assert recs[5].features[..., 2].max() > 1.0  # the fake's patch moves 2 px/frame


def test_a_cameras_mask_from_the_config_zeroes_its_cells_at_the_edge():
    cells = [[r, c] for r in range(12) for c in range(9)]  # the left half of the 12x18 grid
    cfg = load_config(env={"VAD_EDGE__PROGRESS": "false", "VAD_CAMERAS__CAM-1__MASK": str(cells)})
    for cam, masked in (("cam-1", True), ("cam-2", False)):
        p = FakeProducer()
        (w,) = run_cameras(cfg, [(cam, "clip.mp4", cfg.edge_settings(cam))], 6, p, FakeOpener(FakeCapture([8])))
        feats = np.stack([decode(v).features for *_, v, _ in p.records])
        assert w.error is None and feats[:, :, 9:].any()  # the fake's patch moves across both halves
        assert (not feats[:, :, :9].any()) is masked


def test_full_queue_drops_newest_counts_and_flags_the_next_record_as_gap():
    p = FakeProducer(delay_s=0.02)  # a slow broker
    _, w = _run(p, [60], queue_size=2, realtime="false", reconnect="always", queue_block_ms=0, reconnect_attempts=0)
    st = w.stats
    assert st.dropped > 0 and st.sent + st.dropped == st.sampled
    recs = [decode(v) for _, _, v, _ in p.records]
    idx = [r.frame_index for r in recs]
    for prev, r in zip(idx, recs[1:], strict=False):
        assert r.gap == (r.frame_index != prev + 1)  # a hole in the indices is always flagged
    assert st.gaps == sum(r.gap for r in recs) > 0


def test_delivery_errors_are_counted():
    p = FakeProducer(fail_every=4)
    _, w = _run(p, [20])
    assert w.stats.failed == 5 and w.stats.sent == 15


def test_stop_event_ends_a_live_camera():
    stop = threading.Event()
    cfg = edge_config()
    cap = FakeCapture([10_000])
    threading.Timer(0.3, stop.set).start()
    (w,) = run_cameras(
        cfg, [("cam-1", "rtsp://x", EdgeSettings(**LIVE))], None, FakeProducer(), FakeOpener(cap), stop=stop
    )
    assert 0 < w.stats.sampled < 10_000 and w.error is None and cap.closed


def test_sigterm_stops_capture_flushes_and_returns():
    import os
    import signal

    cfg = edge_config()
    cap, p = FakeCapture([10_000]), FakeProducer()
    threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM)).start()
    (w,) = run_cameras(cfg, [("cam-1", "rtsp://x", EdgeSettings(**LIVE))], None, p, FakeOpener(cap))
    assert 0 < w.stats.sampled < 10_000 and w.error is None and cap.closed
    assert p.flushed and w.stats.sent == len(p.records) == w.stats.queued
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored


def test_realtime_paces_a_file_at_its_native_rate():
    import time

    t0 = time.monotonic()
    _, st, _ = frames_of(FakeOpener(FakeCapture([6], fps=20)), reconnect="never", realtime=True, target_fps=None)
    assert st.sampled == 6 and time.monotonic() - t0 >= 0.25  # 5 intervals of 50 ms


def test_linger_is_the_backfill_one_only_when_every_source_is_a_backfilled_file():
    cfg = load_config(env={"VAD_EDGE__LINGER_MS": "7", "VAD_EDGE__BACKFILL_LINGER_MS": "70"})
    fast, paced = EdgeSettings(), EdgeSettings(realtime=True)
    assert linger_for(cfg, [("a", "clips/a.mp4", fast), ("b", "/data/b.mp4", fast)]) == 70
    assert linger_for(cfg, [("a", "clips/a.mp4", fast), ("b", "rtsp://cam/b", fast)]) == 7
    assert linger_for(cfg, [("a", "clips/a.mp4", paced)]) == 7
    assert linger_for(cfg, [("a", "0", fast)]) == 7  # a V4L2 device is live


def _live(cap, **edge):
    cfg, settings = edge_config(**edge), EdgeSettings(**LIVE_ONCE)
    (w,) = run_cameras(cfg, [("cam-1", "rtsp://cam/x", settings)], None, FakeProducer(), FakeOpener(cap))
    return w


def test_a_live_camera_read_slower_than_it_delivers_is_warned_about_once_until_it_catches_up(caplog):
    # 100 fps; the first 40 frames take 30 ms to read (backlog +20 ms a frame), then the buffer drains.
    small = texture(120, 180)
    cap = FakeCapture([300], fps=100, bg=small, delay=lambda i: 0.03 if i < 40 else 0.0)
    with caplog.at_level(logging.INFO, logger="vad.edge.producer"):
        w = _live(cap, lag_warn_ms=400)
    lag = w.stats.lag
    warned = [r for r in caplog.records if "falling behind" in r.getMessage()]
    assert len(warned) == 1 and warned[0].levelno == logging.WARNING and "cam-1" in warned[0].getMessage()
    assert any("caught up" in r.getMessage() for r in caplog.records)
    assert lag.episodes == 1 and not lag.behind and 0 < lag.late < 300 and lag.backlog_max_ms > 400
    assert w.stats.as_dict()["behind_episodes"] == 1 and w.stats.sent == 300


def test_a_live_camera_that_keeps_up_is_watched_but_not_warned_about(caplog):
    cap = FakeCapture([60], fps=100, bg=texture(120, 180), delay=lambda i: 0.01)
    with caplog.at_level(logging.INFO, logger="vad.edge.producer"):
        w = _live(cap, lag_warn_ms=400)
    assert not [r for r in caplog.records if "falling behind" in r.getMessage()]
    # Each read takes the frame period, so every record is handed over at least that after its frame.
    assert w.stats.lag.episodes == 0 and w.stats.lag.late == 0 and w.stats.lag.max_ms >= 10


def test_a_backfilled_file_has_no_pace_to_keep():
    _, w = _run(FakeProducer(), [12])
    assert w.stats.lag is None and "send_lag_ms" not in w.stats.as_dict()
