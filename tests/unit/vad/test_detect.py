import pickle
from dataclasses import asdict

import numpy as np

from vad.config import CameraConfig, DetectConfig
from vad.detect import CameraState, EpisodeDetector, event_id


def run(scores, cfg=None, camera="cam", thr=1.0, start=0):
    det = EpisodeDetector(cfg or DetectConfig(ema_alpha=1.0, min_frames=2, cooldown_frames=3, update_every=5), thr)
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
    assert ev[0].start_frame == 5 and ev[-1].end_frame == 17
    assert [e.seq for e in ev] == [1, 2, 3, 4]
    assert ev[-1].peak_score == 2.0 and len(ev[-1].heatmap) == 2


def test_min_frames_ignores_blips_and_hysteresis_holds_open():
    _, _, ev = run([0.1, 2.0, 0.1, 2.0, 0.1])
    assert ev == []
    cfg = DetectConfig(ema_alpha=1.0, min_frames=1, close_ratio=0.5, update_every=100)
    _, st, ev = run([2.0, 0.8, 0.6, 0.8], cfg)  # stays above 0.5: no close
    assert [e.phase for e in ev] == ["open"] and st.open is not None


def test_cooldown_blocks_immediate_reopen():
    cfg = DetectConfig(ema_alpha=1.0, min_frames=1, cooldown_frames=4, update_every=100)
    _, _, ev = run([2, 0, 2, 2, 2, 2, 2, 2], cfg)
    assert [e.phase for e in ev] == ["open", "close", "open"]
    # closed at frame 1: no OPEN before frame 1 + 4; the episode still starts where the run began
    assert ev[2].end_frame == 6 and ev[2].start_frame == 2


def test_event_ids_are_stable_and_distinct():
    _, _, a = run([0.0] * 3 + [3.0] * 4)
    _, _, b = run([0.0] * 3 + [3.0] * 4)
    assert a[0].event_id == b[0].event_id == event_id("cam", 3)
    assert event_id("cam", 3) != event_id("cam", 4) != event_id("other", 3)


def test_duplicates_and_late_frames_are_dropped():
    det = EpisodeDetector(DetectConfig(ema_alpha=1.0, min_frames=1), 1.0)
    st = CameraState()
    assert det.step(st, "c", 5, 0, 3.0)
    assert det.step(st, "c", 5, 0, 3.0) == [] and det.step(st, "c", 4, 0, 3.0) == []
    assert st.dropped == 2


def test_gap_closes_and_resets_smoothing():
    det = EpisodeDetector(DetectConfig(ema_alpha=0.5, min_frames=1), 1.0)
    st = CameraState()
    det.step(st, "c", 0, 0, 4.0)
    ev = det.step(st, "c", 10, 0, 0.0, gap=True)
    assert [e.phase for e in ev] == ["close"] and ev[0].close_reason == "gap"
    assert st.ema == 0.0


def test_masked_cells_are_ignored_and_sensitivity_scales_threshold():
    cams = {"c": CameraConfig(mask=[(0, 0)], sensitivity=2.0)}
    det = EpisodeDetector(DetectConfig(ema_alpha=1.0, min_frames=1), 1.0, cameras=cams)
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

    det, st = EpisodeDetector(DetectConfig(min_frames=1), 1.0, "v"), CameraState()
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
