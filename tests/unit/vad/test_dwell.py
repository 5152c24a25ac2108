"""The dwell (loitering) detector, its events and its keyed state."""

from __future__ import annotations

import pickle
from types import SimpleNamespace

import numpy as np
import pytest

from vad.config import DetectConfig, load_config
from vad.detect import CameraState as DetectorState
from vad.detect import event_id
from vad.dwell import FG, DwellDetector, DwellState, dwell_event_id
from vad.follow import kind_of
from vad.records import CameraState, Event, _restore_camera_state

CAM, DT = "lobby", 100  # ms between frames


def _grid(*cells, level=0.1) -> np.ndarray:
    f = np.zeros((12, 18, 12), np.float32)
    for r, c in cells:
        f[r, c, FG] = level
    return f


def _detector(idle=None, **zones) -> DwellDetector:
    zs = {
        name: SimpleNamespace(cells=cells, min_dwell_s=2.0, presence_level=0.05, hold_s=1.0)
        for name, cells in zones.items()
    }
    return DwellDetector(DetectConfig(update_every_s=1.0), {CAM: SimpleNamespace(zones=zs)}, idle)


def _run(det, grids, st=None, start=0, gaps=()):
    st = st or DwellState()
    out = []
    for i, g in enumerate(grids, start):
        out += det.step(st, CAM, i, 1_000_000 + DT * i, g, gap=i in gaps, model_version="m1")
    return out, st


def _phases(events):
    return [(e.zone, e.phase, e.close_reason, e.start_frame, e.end_frame) for e in events if e.phase != "update"]


def test_opens_after_min_dwell_and_closes_after_the_hold_time():
    det = _detector(door=[(2, 3)])
    grids = [_grid()] * 5 + [_grid((2, 3))] * 40 + [_grid()] * 15
    events, _ = _run(det, grids)
    # occupied from frame 5; 2 s later (frame 25) it opens, starting at 5; empty from 45, and 1 s
    # after the last occupied frame (44) it closes there.
    assert _phases(events) == [("door", "open", None, 5, 25), ("door", "close", "clear", 5, 44)]
    assert {e.kind for e in events} == {"loitering"} and events[0].ts_ms == 1_000_000 + DT * 25
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert any(e.phase == "update" for e in events)
    assert events[0].event_id == dwell_event_id(CAM, "door", 1_000_000 + DT * 5, 5)
    assert events[0].event_id != event_id(CAM, 1_000_000 + DT * 5, 5)
    assert all(kind_of(Event.parse(e.to_json())) == "loitering" for e in events)


def test_a_short_stay_opens_nothing_and_empty_spells_shorter_than_the_hold_keep_the_stay():
    det = _detector(door=[(2, 3)])
    short, _ = _run(det, [_grid((2, 3))] * 15 + [_grid()] * 20)
    assert short == []
    # occupied 0.5 s, empty 0.5 s, over and over: one stay from frame 0
    flicker = ([_grid((2, 3))] * 5 + [_grid()] * 5) * 4 + [_grid()] * 20
    events, _ = _run(det, flicker)
    assert _phases(events) == [("door", "open", None, 0, 20), ("door", "close", "clear", 0, 34)]


def test_a_gap_closes_the_open_stay_and_starts_afresh():
    det = _detector(door=[(2, 3)])
    events, _ = _run(det, [_grid((2, 3))] * 40, gaps={30})
    assert _phases(events) == [("door", "open", None, 0, 20), ("door", "close", "gap", 0, 29)]
    # a skipped index is a gap too
    st = DwellState()
    _, st = _run(det, [_grid((2, 3))] * 25, st)
    ev2, st = _run(det, [_grid((2, 3))] * 5, st, start=30)
    assert _phases(ev2) == [("door", "close", "gap", 0, 24)]
    assert not st.any_open() and st.stays["door"].start_frame == 30


def test_two_zones_are_independent():
    det = _detector(door=[(2, 3)], desk=[(8, 8), (8, 9)])
    grids = [_grid((2, 3), (8, 9))] * 25 + [_grid((8, 9))] * 20 + [_grid()] * 15
    events, _ = _run(det, grids)
    assert _phases(events) == [
        ("desk", "open", None, 0, 20),
        ("door", "open", None, 0, 20),
        ("door", "close", "clear", 0, 24),
        ("desk", "close", "clear", 0, 44),
    ]
    assert len({e.event_id for e in events}) == 2


def test_a_replay_gives_the_same_events_and_a_pickled_state_resumes():
    det = _detector(door=[(2, 3)])
    grids = [_grid((2, 3))] * 30 + [_grid()] * 15
    whole, _ = _run(det, grids)
    again, _ = _run(det, grids)
    assert [e.to_json() for e in again] == [e.to_json() for e in whole]
    first, st = _run(det, grids[:25])
    entry = pickle.loads(pickle.dumps(CameraState(24, [], DetectorState(), 1_000_000 + DT * 24, st)))
    rest, _ = _run(det, grids[25:], entry.dwell, start=25)
    assert [e.to_json() for e in first + rest] == [e.to_json() for e in whole]


def test_idle_camera_and_close_all():
    det = _detector(idle=2000, door=[(2, 3)])
    st = DwellState()
    _run(det, [_grid((2, 3))] * 25, st)
    late = det.step(st, CAM, 25, 1_000_000 + DT * 24 + 5000, _grid((2, 3)), model_version="m1")
    assert _phases(late) == [("door", "close", "idle", 0, 24)]
    _run(det, [_grid((2, 3))] * 25, st2 := DwellState())
    assert _phases(det.close(st2, CAM, "idle")) == [("door", "close", "idle", 0, 24)] and not st2.stays


def test_cameras_without_zones_cost_nothing():
    det = DwellDetector(DetectConfig(), {"plain": SimpleNamespace(zones={})})
    assert not det.watches("plain") and det.step(DwellState(), "plain", 0, 0, _grid()) == []


def test_a_version_3_state_restores_without_dwell_state():
    det = {**vars(DetectorState()), "open": None}
    restored = _restore_camera_state(3, 7, [np.zeros((2, 2, 12), np.float32)], det, 1234)
    assert (restored.frame, restored.ts, restored.dwell) == (7, 1234, None)
    assert restored.det.last_frame == -1
    again = pickle.loads(pickle.dumps(restored))
    assert again.VERSION == 4 and again.dwell is None and again.ts == 1234


def test_old_events_parse_as_motion_and_motion_events_are_written_as_before():
    old = (
        '{"schema":"vad.event/v1","event_id":"' + "a" * 32 + '","camera_id":"c","phase":"open","seq":1,'
        '"start_frame":0,"end_frame":1,"start_ts_ms":0,"ts_ms":1,"peak_score":0.1,"peak_frame":0,'
        '"threshold":0.02,"heatmap":[],"model_version":"m"}'
    )
    e = Event.parse(old)
    assert (e.kind, e.zone, kind_of(e)) == ("motion", None, "motion") and e.to_json() == old
    with pytest.raises(ValueError, match="zone"):
        Event.parse(old.replace('"phase"', '"kind":"loitering","phase"'))
    with pytest.raises(ValueError, match="zone"):
        Event.parse(old.replace('"phase"', '"zone":"door","phase"'))
    with pytest.raises(ValueError):
        Event.parse(old.replace('"phase"', '"kind":"parking","phase"'))


def test_zone_config_refusals_name_the_field():
    ok = load_config(env={"VAD_CAMERAS": "{a: {zones: {door: {cells: [[1, 2]], min_dwell_s: 5}}}}"})
    assert ok.cameras["a"].zones["door"].min_dwell_s == 5 and ok.cameras["a"].zones["door"].hold_s == 3.0
    bad = {
        "{a: {zones: {door: {cells: [[12, 0]]}}}}": "cameras.a.zones.door.cells: cells [(12, 0)] outside",
        "{a: {mask: [[0, 0]], zones: {door: {cells: [[0, 0]]}}}}": "every cell is in cameras.a.mask",
        "{a: {zones: {door: {cells: []}}}}": "cells",
        "{a: {zones: {door: {cells: [[0, 0]], min_dwell_s: 0}}}}": "min_dwell_s",
        "{a: {zones: {door: {cells: [[0, 0]], colour: red}}}}": "colour",
        "{a: {zones: {'bad zone': {cells: [[0, 0]]}}}}": "bad zone",
    }
    for cams, want in bad.items():
        with pytest.raises(Exception) as info:
            load_config(env={"VAD_CAMERAS": cams})
        assert want in str(info.value), (cams, str(info.value))


def test_a_disabling_schedule_closes_open_stays_and_starts_none():
    from vad.config.schedule import ScheduleRule

    off = ScheduleRule.model_validate({"start": "00:00", "end": "23:59", "enabled": False})
    zones = {"door": SimpleNamespace(cells=[(2, 3)], min_dwell_s=2.0, presence_level=0.05, hold_s=1.0)}
    cam = SimpleNamespace(zones=zones, schedule=[off], timezone="UTC", sensitivity=1.0)
    det = DwellDetector(DetectConfig(update_every_s=1.0), {CAM: cam})
    events, st = _run(det, [_grid((2, 3))] * 40)
    assert events == [] and not st.stays
    # enabled for the first stay (another camera entry, same state), then disabled: closed as schedule
    free = _detector(door=[(2, 3)])
    opened, st = _run(free, [_grid((2, 3))] * 25)
    closed, _ = _run(det, [_grid((2, 3))] * 5, st, start=25)
    assert _phases(opened) == [("door", "open", None, 0, 20)]
    assert _phases(closed) == [("door", "close", "schedule", 0, 24)]


def _norms(longest_s: float = 0.0, busy=()):
    from models.card import DwellNorms

    grid = [[0.0] * 18 for _ in range(12)]
    for r, c in busy:
        grid[r][c] = longest_s
    return DwellNorms(presence_level=0.05, hold_s=1.0, seconds=600.0, longest_s=grid)


def _learned(factor=3.0, min_dwell_s=2.0, zones=None) -> DwellDetector:
    cam = SimpleNamespace(zones=zones or {}, loitering=SimpleNamespace(factor=factor, min_dwell_s=min_dwell_s))
    return DwellDetector(DetectConfig(update_every_s=1.0), {CAM: cam})


def _run_learned(det, grids, norms, st=None, start=0, gaps=()):
    st = st or DwellState()
    out = []
    for i, g in enumerate(grids, start):
        out += det.step(st, CAM, i, 1_000_000 + DT * i, g, gap=i in gaps, model_version="m1", norms=norms)
    return out, st


def test_learned_loitering_compares_each_cells_stay_with_its_normal_longest():
    det = _learned(factor=3.0, min_dwell_s=2.0)
    assert det.watches(CAM) and not det.watches("other")
    # (5, 5) saw stays of 1.5 s in normal video: it needs 4.5 s; (2, 3) none: the 2 s floor.
    norms = _norms(1.5, busy=[(5, 5)])
    busy = [_grid((5, 5))] * 40 + [_grid()] * 20  # 3.9 s in the busy cell: normal enough
    events, _ = _run_learned(det, busy, norms)
    assert events == []
    events, _ = _run_learned(det, [_grid((5, 5))] * 50 + [_grid()] * 20, norms)  # 4.9 s: over from 4.5 s
    assert _phases(events) == [("*", "open", None, 0, 45), ("*", "close", "clear", 0, 49)]
    quiet = [_grid()] * 3 + [_grid((2, 3))] * 30 + [_grid()] * 20  # 2.9 s where nobody stays
    events, _ = _run_learned(det, quiet, norms)
    assert _phases(events) == [("*", "open", None, 3, 23), ("*", "close", "clear", 3, 32)]
    opened = events[0]
    assert opened.kind == "loitering" and opened.zone == "*" and opened.threshold == 3.0
    assert opened.event_id == dwell_event_id(CAM, "*", 1_000_000 + DT * 3, 3)
    # The ratio: a stay over its cell's need, in units of need / factor; the heatmap has it per cell.
    close = events[-1]
    assert close.peak_score == pytest.approx(3.0 * 2.9 / 2.0)
    assert close.heatmap[2][3] == pytest.approx(close.peak_score, abs=1e-3)
    assert len(close.heatmap) == 12 and close.heatmap[5][5] == 0
    assert Event.parse(close.to_json()) == close


def test_learned_loitering_is_one_stay_for_many_cells_and_closes_on_a_gap_and_when_unconfigured():
    det = _learned(min_dwell_s=1.0)
    norms = _norms()
    grids = [_grid((1, 1))] * 5 + [_grid((1, 1), (1, 2))] * 20 + [_grid((1, 2))] * 20
    events, st = _run_learned(det, grids, norms)
    # (1, 1) goes over at frame 10 (1 s); (1, 2) joins; one open stay from frame 0 throughout.
    assert [(e.phase, e.start_frame) for e in events if e.phase != "update"] == [("open", 0)]
    more, _ = _run_learned(det, [_grid((1, 2))] * 3, norms, st, start=45, gaps={45})
    assert _phases(more) == [("*", "close", "gap", 0, 44)]
    # A camera whose model has no normal dwell times is not watched by the learned detector.
    assert _run_learned(det, grids, None)[0] == []


def test_learned_state_survives_a_restore():
    det = _learned(min_dwell_s=1.0)
    norms = _norms()
    events, st = _run_learned(det, [_grid((4, 4))] * 15, norms)
    assert [e.phase for e in events] == ["open"]
    entry = CameraState(14, [], DetectorState(), 1_000_000 + DT * 14, st)
    back = pickle.loads(pickle.dumps(entry)).dwell
    assert back.learned is not None and (back.cells.start_ts == st.cells.start_ts).all()
    later, _ = _run_learned(det, [_grid()] * 15, norms, back, start=15)
    assert _phases(later) == [("*", "close", "clear", 0, 14)]


def test_a_learned_stay_closes_when_the_cameras_model_has_no_dwell_times_any_more():
    det = _learned(min_dwell_s=1.0)
    events, st = _run_learned(det, [_grid((4, 4))] * 15, _norms())
    assert [e.phase for e in events] == ["open"]
    later, st = _run_learned(det, [_grid((4, 4))] * 3, None, st, start=15)
    assert _phases(later) == [("*", "close", "clear", 0, 14)] and not st.any_open() and st.cells is None


def test_stays_of_zones_that_left_the_config_close_with_reason_config():
    det = _detector(door=[(2, 3)], gate=[(5, 5)])
    events, st = _run(det, [_grid((2, 3), (5, 5))] * 30)
    assert {(e.zone, e.phase) for e in events if e.phase == "open"} == {("door", "open"), ("gate", "open")}
    door_id = next(e.event_id for e in events if e.zone == "door")
    # Restored into a job whose config dropped "door": its next record closes door's stay, once.
    restored = pickle.loads(pickle.dumps(st))
    later, _ = _run(_detector(gate=[(5, 5)]), [_grid((2, 3), (5, 5))] * 3, restored, start=30)
    closes = [e for e in later if e.phase == "close"]
    assert _phases(closes) == [("door", "close", "config", 0, 29)]
    assert closes[0].event_id == door_id and closes[0].threshold == 0.05
    assert all(e.zone == "gate" for e in later if e.phase != "close")
    # A camera left with no zones at all: the same, and an idle close does it too.
    for step in (
        lambda d, s: d.step(s, CAM, 30, 1_000_000 + DT * 30, _grid(), model_version="m1"),
        lambda d, s: d.close(s, CAM, "idle", "m1"),
    ):
        out = step(_detector(), pickle.loads(pickle.dumps(st)))
        assert sorted(_phases(out)) == [("door", "close", "config", 0, 29), ("gate", "close", "config", 0, 29)]


def test_a_learned_stay_closes_with_reason_config_when_the_camera_has_no_loitering_any_more():
    norms = _norms()
    events, st = _run_learned(_learned(min_dwell_s=1.0), [_grid((1, 1))] * 20, norms)
    assert [e.phase for e in events if e.phase != "update"] == ["open"]
    later = _learned_off().step(st, CAM, 20, 1_000_000 + DT * 20, _grid((1, 1)), model_version="m1", norms=norms)
    assert _phases(later) == [("*", "close", "config", 0, 19)] and later[0].threshold == 3.0
    assert st.learned is None and st.cells is None and not st.any_open()


def _learned_off() -> DwellDetector:
    return DwellDetector(DetectConfig(update_every_s=1.0), {CAM: SimpleNamespace(zones={}, loitering=None)})
