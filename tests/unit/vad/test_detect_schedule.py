"""The detector under a camera's schedule: a disabling window closes the open episode and opens none,
a rule's sensitivity changes what opens, and only the frames' event time decides."""

from datetime import UTC, datetime

import numpy as np

from vad.config import CameraConfig, DetectConfig
from vad.detect import CameraState, EpisodeDetector

CFG = DetectConfig(merge_gap_s=0, ema_alpha=1.0, min_duration_s=0.2, cooldown_s=0, update_every_s=100)
T0 = int(datetime(2026, 3, 2, 21, 59, tzinfo=UTC).timestamp() * 1000)  # a Monday, 21:59 UTC
DT = 100  # ms between frames: 10 fps


def frames(scores):
    return [(i, T0 + DT * i, s) for i, s in enumerate(scores)]


def run(cams, scores, camera="c"):
    det, st = EpisodeDetector(CFG, 1.0, "m1", cams), CameraState()
    out = []
    for i, ts, s in frames(scores):
        out += det.step(st, camera, i, ts, s, np.full((2, 2), s, np.float32))
    return det, st, out


def night(**kw):
    # Disabled from 22:00 to 22:01 UTC: frames 600..1199 of the run above.
    return {"c": CameraConfig(schedule=[{"start": "22:00", "end": "22:01", "enabled": False}], **kw)}


def test_a_disabling_window_closes_the_open_episode_at_the_frame_before_it():
    scores = [0.0] * 500 + [3.0] * 1000  # high from frame 500 (21:59:50) to the end
    _, st, ev = run(night(), scores)
    phases = [(e.phase, e.close_reason) for e in ev]
    assert phases == [("open", None), ("close", "schedule"), ("open", None)]
    opened, closed, reopened = ev
    assert opened.start_frame == 500 and closed.event_id == opened.event_id
    assert closed.end_frame == 599 and closed.ts_ms == T0 + 599 * DT  # the last frame before 22:00
    # No episode inside the window: the next run starts at its end, 22:01, and needs min_duration.
    assert reopened.start_frame == 1200 and reopened.end_frame == 1202
    assert reopened.event_id != opened.event_id and st.open is not None
    # Without the schedule: one episode throughout.
    _, _, plain = run({"c": CameraConfig()}, scores)
    assert [e.phase for e in plain] == ["open"]


def test_no_episode_opens_inside_a_disabled_window_but_frames_are_still_smoothed():
    scores = [0.0] * 700 + [3.0] * 300 + [0.0] * 500  # a burst wholly inside the window
    _, st, ev = run(night(), scores)
    assert ev == []
    _, _, plain = run({"c": CameraConfig()}, scores)
    assert [e.phase for e in plain] == ["open", "close"]
    # The smoothing went on through the window (the last score, not the value before it).
    assert st.ema == 0.0 and st.last_frame == 1499


def test_a_rule_sensitivity_changes_what_opens():
    scores = [0.0] * 650 + [0.8] * 50 + [0.0] * 100  # 0.8 at 22:00:05: below the base threshold 1
    rule = {"start": "22:00", "end": "22:01", "sensitivity": 2.0}  # threshold 0.5 in the window
    _, _, ev = run({"c": CameraConfig(schedule=[rule])}, scores)
    assert [e.phase for e in ev] == ["open", "close"] and ev[0].threshold == 0.5
    assert ev[1].threshold == 0.5  # the close reports the threshold in force at its frame
    _, _, plain = run({"c": CameraConfig()}, scores)
    assert plain == []
    # Lowered: 0.5 makes the threshold 2, and a 1.5 burst that alerts by default does not.
    burst = [0.0] * 650 + [1.5] * 50 + [0.0] * 100
    low = {"c": CameraConfig(schedule=[{**rule, "sensitivity": 0.5}])}
    assert run(low, burst)[2] == []
    assert [e.phase for e in run({"c": CameraConfig()}, burst)[2]] == ["open", "close"]


def test_the_rule_in_force_follows_event_time_in_the_cameras_time_zone():
    # 22:00 UTC is 23:00 in Berlin (UTC+1 in March): a Berlin 23:00-23:01 rule covers the same frames.
    rule = {"start": "23:00", "end": "23:01", "enabled": False}
    cams = {"c": CameraConfig(timezone="Europe/Berlin", schedule=[rule])}
    scores = [0.0] * 500 + [3.0] * 1000
    assert run(cams, scores)[2] == run(night(), scores)[2]
    # A camera without a schedule is unaffected by another's.
    _, _, other = run(night(), scores, camera="d")
    assert [e.phase for e in other] == ["open"]


def test_a_replay_gives_the_same_events_and_the_cache_is_not_state():
    scores = [0.0] * 500 + [3.0] * 1000
    _, _, first = run(night(), scores)
    _, _, again = run(night(), scores)
    assert first == again
    # A detector restored mid-stream (new instance, empty cache) carries on the same.
    det2, st2, out = EpisodeDetector(CFG, 1.0, "m1", night()), CameraState(), []
    for i, ts, s in frames(scores)[:550]:
        out += det2.step(st2, "c", i, ts, s)
    det3 = EpisodeDetector(CFG, 1.0, "m1", night())
    for i, ts, s in frames(scores)[550:]:
        out += det3.step(st2, "c", i, ts, s)
    assert [(e.event_id, e.phase, e.end_frame) for e in out] == [(e.event_id, e.phase, e.end_frame) for e in first]


def test_an_idle_close_reports_the_threshold_at_the_last_frame():
    rule = {"start": "22:00", "end": "22:01", "sensitivity": 4.0}
    det, st, ev = run({"c": CameraConfig(schedule=[rule])}, [0.0] * 650 + [0.5] * 10)
    assert [e.phase for e in ev] == ["open"]
    (closed,) = det.close(st, "c", reason="idle")
    assert closed.threshold == 0.25 and closed.ts_ms == T0 + 659 * DT


def test_the_schedule_is_asked_once_per_window_not_per_frame(monkeypatch):
    from vad.schedule import Schedule

    calls = []
    at = Schedule.at
    monkeypatch.setattr(Schedule, "at", lambda self, ts: calls.append(ts) or at(self, ts))
    # 1500 frames (21:59:00 to 22:01:30) over the night rule's two boundaries, 22:00 and 22:01.
    # Once per window, and twice more at the disabling boundary: the schedule's close reports the
    # threshold at the frame before it, in the previous window.
    run(night(), [0.0] * 500 + [3.0] * 1000)
    assert len(calls) == 5, calls
