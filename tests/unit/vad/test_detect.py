import pickle
from dataclasses import asdict

import numpy as np
import pytest

from vad.config import CameraConfig, ConfigError, DetectConfig, load_config
from vad.detect import CameraState, EpisodeDetector, event_id, starts_afresh


def run(scores, cfg=None, camera="cam", thr=1.0, start=0):
    det = EpisodeDetector(
        cfg or DetectConfig(merge_gap_s=0, ema_alpha=1.0, min_duration_s=0.1, cooldown_s=0.3, update_every_s=0.5), thr
    )
    st, out = CameraState(), []
    for i, s in enumerate(scores, start=start):
        out += det.step(st, camera, i, 1_000 + i * 100, s, np.full((2, 2), s, np.float32))
    return det, st, out


def test_one_event_per_episode_with_lifecycle():
    scores = [0.1] * 5 + [2.0] * 12 + [0.1] * 5
    _, _, ev = run(scores)
    phases = [e.phase for e in ev]
    assert phases == ["open", "update", "update", "close"]
    assert len({e.event_id for e in ev}) == 1
    assert ev[0].start_frame == 5 and ev[-1].end_frame == 16  # the last frame above the close level
    assert [e.seq for e in ev] == [1, 2, 3, 4]
    assert ev[-1].peak_score == 2.0 and len(ev[-1].heatmap) == 2


def test_min_frames_ignores_blips_and_hysteresis_holds_open():
    _, _, ev = run([0.1, 2.0, 0.1, 2.0, 0.1])
    assert ev == []
    cfg = DetectConfig(merge_gap_s=0, ema_alpha=1.0, min_duration_s=0, close_ratio=0.5, update_every_s=10)
    _, st, ev = run([2.0, 0.8, 0.6, 0.8], cfg)  # stays above 0.5: no close
    assert [e.phase for e in ev] == ["open"] and st.open is not None


def test_cooldown_blocks_immediate_reopen():
    cfg = DetectConfig(merge_gap_s=0, ema_alpha=1.0, min_duration_s=0, cooldown_s=0.4, update_every_s=10)
    _, _, ev = run([2, 0, 2, 2, 2, 2, 2, 2], cfg)
    assert [e.phase for e in ev] == ["open", "close", "open"]
    # closed at frame 1: no OPEN before frame 1 + 4; the episode still starts where the run began
    assert ev[2].end_frame == 6 and ev[2].start_frame == 2


def test_event_ids_are_stable_and_distinct():
    _, _, a = run([0.0] * 3 + [3.0] * 4)
    _, _, b = run([0.0] * 3 + [3.0] * 4)
    assert a[0].event_id == b[0].event_id == event_id("cam", 1_300, 3)
    assert len({event_id("cam", 1_300, 3), event_id("cam", 1_300, 4), event_id("other", 1_300, 3)}) == 3
    # The same start frame of a restarted stream, later in event time: another episode, another id.
    assert event_id("cam", 1_300, 3) != event_id("cam", 9_300, 3)


def test_a_restarted_stream_is_scored_and_its_episodes_get_new_ids():
    cfg = DetectConfig(merge_gap_s=0, ema_alpha=1.0, min_duration_s=0, cooldown_s=1, update_every_s=100)
    det, st = EpisodeDetector(cfg, 1.0), CameraState()
    first = [e for i in range(50) for e in det.step(st, "c", i, 1_000 + 100 * i, 3.0 if 10 <= i < 20 else 0.0)]
    assert [e.phase for e in first] == ["open", "close"] and first[0].start_frame == 10
    # The restarted edge counts from 0 again, later in event time, its first record flagged.
    later = [e for i in range(30) for e in det.step(st, "c", i, 20_000 + 100 * i, 3.0 if i >= 10 else 0.0, gap=i == 0)]
    assert [e.phase for e in later] == ["open"] and later[0].start_frame == 10
    assert later[0].event_id != first[0].event_id and st.dropped == 0


def test_a_gap_frame_back_in_event_time_starts_a_new_stream_and_its_own_cooldown():
    cfg = DetectConfig(merge_gap_s=0, ema_alpha=1.0, min_duration_s=0, cooldown_s=60, update_every_s=100)
    det, st = EpisodeDetector(cfg, 1.0), CameraState()
    for i in range(20):
        det.step(st, "c", i, 10_000 + 100 * i, 3.0)
    # A backfilled file restarted within the old stream's event time: it goes back, and would sit in
    # the old episode's cooldown (ending at 10 s + 60 s) if the cooldown were kept.
    out = [e for i in range(5) for e in det.step(st, "c", i, 5_000 + 100 * i, 3.0, gap=i == 0)]
    assert [(e.phase, e.close_reason) for e in out] == [("close", "gap"), ("open", None)]
    assert out[1].start_ts_ms == 5_000 and st.dropped == 0
    # Unflagged frames of it that go back again are late.
    assert det.step(st, "c", 3, 5_300, 3.0) == [] and st.dropped == 1


def test_a_lower_index_later_in_event_time_is_a_new_stream_even_unflagged():
    det = EpisodeDetector(DetectConfig(merge_gap_s=0, ema_alpha=0.5, min_duration_s=0), 1.0)
    st = CameraState()
    det.step(st, "c", 100, 1_000, 4.0)
    ev = det.step(st, "c", 0, 2_000, 0.0)
    assert [e.close_reason for e in ev] == ["gap"] and st.ema == 0.0 and st.last_frame == 0


def test_duplicates_and_late_frames_are_dropped():
    det = EpisodeDetector(DetectConfig(merge_gap_s=0, ema_alpha=1.0, min_duration_s=0), 1.0)
    st = CameraState()
    assert det.step(st, "c", 5, 0, 3.0)
    assert det.step(st, "c", 5, 0, 3.0) == [] and det.step(st, "c", 4, 0, 3.0) == []
    assert st.dropped == 2


def test_gap_closes_and_resets_smoothing():
    det = EpisodeDetector(DetectConfig(merge_gap_s=0, ema_alpha=0.5, min_duration_s=0), 1.0)
    st = CameraState()
    det.step(st, "c", 0, 0, 4.0)
    ev = det.step(st, "c", 10, 0, 0.0, gap=True)
    assert [e.phase for e in ev] == ["close"] and ev[0].close_reason == "gap"
    assert st.ema == 0.0


def test_masked_cells_are_ignored_and_sensitivity_scales_threshold():
    cams = {"c": CameraConfig(mask=[(0, 0)], sensitivity=2.0)}
    det = EpisodeDetector(DetectConfig(merge_gap_s=0, ema_alpha=1.0, min_duration_s=0), 1.0, cameras=cams)
    cells = np.array([[5.0, 0.1], [0.1, 0.1]], np.float32)
    assert det.frame_score("c", 5.0, cells) == np.float32(0.1)
    assert det.frame_score("other", 5.0, cells) == 5.0
    assert det.threshold_for("c") == 0.5
    assert det.step(CameraState(), "c", 0, 0, 5.0, cells) == []


def _plain(st: CameraState) -> dict:
    d = asdict(st)
    if d["open"]:
        d["open"]["heatmap"] = np.asarray(d["open"]["heatmap"]).tolist()
    return d


def test_camera_state_round_trips_through_its_stored_dict():
    from vad.detect import state_from_dict, state_to_dict

    det, st = EpisodeDetector(DetectConfig(merge_gap_s=0, min_duration_s=0), 1.0, "v"), CameraState()
    for i in range(4):
        det.step(st, "c", i, 1000 + 100 * i, 3.0, np.full((2, 3), 0.12345678, np.float32))
    assert st.open is not None and st.open.heatmap.dtype == np.float32
    back = state_from_dict(pickle.loads(pickle.dumps(state_to_dict(st))))
    assert _plain(back) == _plain(st)
    assert state_from_dict(state_to_dict(CameraState())) == CameraState()
    # state written when the heatmap was a list of floats still restores
    old = state_to_dict(st)
    old["open"] = {**old["open"], "heatmap": [[0.5, 1.0, 2.0], [0.0, 0.0, 3.0]]}
    assert state_from_dict(old).open.heatmap.tolist() == [[0.5, 1.0, 2.0], [0.0, 0.0, 3.0]]
    # events carry the heatmap as a list, rounded to 3 decimals
    ev = det.close(back, "c", reason="idle")[0]
    assert ev.heatmap == [[0.123] * 3] * 2


def _times(scores, cfg, fps=10.0, thr=1.0):
    det, st, out = EpisodeDetector(cfg, thr), CameraState(), []
    for i, s in enumerate(scores):
        out += det.step(st, "cam", i, 1_000 + round(i * 1000 / fps), s)
    return st, out


def test_a_dip_shorter_than_the_merge_gap_stays_one_event():
    # Hot 10 frames, calm 2 s, hot again: one event at a 3 s merge gap, two at 1 s.
    scores = [0.0] * 3 + [2.0] * 10 + [0.0] * 20 + [2.0] * 10 + [0.0] * 40
    one = DetectConfig(ema_alpha=1.0, min_duration_s=0.2, merge_gap_s=3.0, cooldown_s=0, update_every_s=100)
    _, ev = _times(scores, one)
    assert [e.phase for e in ev] == ["open", "close"]
    assert ev[0].start_frame == 3 and ev[-1].end_frame == 42  # the last hot frame of the second run
    # The close is sent once the score has been low for the merge gap: 3 s after frame 43.
    assert ev[-1].ts_ms == 1_000 + (43 + 30) * 100
    two = one.model_copy(update={"merge_gap_s": 1.0})
    _, ev = _times(scores, two)
    assert [e.phase for e in ev] == ["open", "close", "open", "close"]
    assert [(e.start_frame, e.end_frame) for e in ev if e.phase == "close"] == [(3, 12), (33, 42)]


def test_durations_are_in_event_time_whatever_the_frame_rate():
    cfg = DetectConfig(ema_alpha=1.0, min_duration_s=0.5, merge_gap_s=0, cooldown_s=0, update_every_s=100)
    for fps in (4.0, 10.0, 20.0):
        hot = round(0.5 * fps)  # frames spanning 0.5 s: not yet long enough
        _, ev = _times([2.0] * hot, cfg, fps)
        assert ev == [], fps
        _, ev = _times([2.0] * (hot + 1), cfg, fps)
        assert [e.phase for e in ev] == ["open"] and ev[0].end_frame == hot, fps


def test_cooldown_and_updates_follow_event_time():
    cfg = DetectConfig(ema_alpha=1.0, min_duration_s=0, merge_gap_s=0, cooldown_s=1.0, update_every_s=0.5)
    _, ev = _times([2.0] * 12 + [0.0] + [2.0] * 20, cfg, fps=10.0)
    assert [e.phase for e in ev][:4] == ["open", "update", "update", "close"]
    assert [e.end_frame for e in ev if e.phase == "update"][:2] == [5, 10]
    reopened = [e for e in ev if e.phase == "open"][1]
    assert reopened.end_frame == 23  # closed at frame 12 (t = 1.2 s): no open until after 2.2 s


def test_old_frame_based_detect_keys_are_refused_naming_the_new_ones():
    with pytest.raises(ConfigError, match=r"detect.min_frames: moved to `detect.min_duration_s`"):
        load_config(env={"VAD_DETECT__MIN_FRAMES": "3"})


@pytest.mark.parametrize(
    ("gap", "frame", "last", "afresh"),
    [
        (False, 8, 7, False),  # the next index
        (False, 9, 7, True),  # one skipped: a record that never arrived
        (False, 3, 7, True),  # back: a new stream the edge did not flag
        (True, 8, 7, True),  # flagged
        (False, 0, None, False),  # the camera's first record
        (True, 0, None, True),
    ],
)
def test_starts_afresh(gap, frame, last, afresh):
    assert starts_afresh(gap, frame, last) is afresh
