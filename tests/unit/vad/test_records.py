"""The typed output records and keyed state: their JSON is what the job has always written, they
round-trip, carry their versions, read state an older job stored, and match the published schemas."""

from __future__ import annotations

import base64
import json
import pickle
import re

import cloudpickle
import jsonschema
import numpy as np
import pytest
from published_schemas import check
from pydantic import ValidationError

from vad.config import REPO_ROOT, DetectConfig
from vad.dead_letter_reasons import DEAD_LETTER_REASONS, MISMATCH_REASONS
from vad.detect import CameraState as DetectorState
from vad.detect import EpisodeDetector, state_to_dict
from vad.records import (
    PUBLISHED,
    CameraState,
    DeadLetter,
    Event,
    ScoreLine,
    json_schemas,
    stale_schemas,
)
from vad.schema import N_CHANNELS, FrameFeatures

CAMERA = "site-1/cam.2:x"
# What the job wrote before the typed records, for the events of `_events()` (json.dumps of the
# detector's dicts): the typed records must write the same bytes. Two values differ on purpose: a
# close's end_frame is the episode's last frame above the close level (3), not the first below it; and
# the event_id is a UUID 5 of camera, start event time and start frame (it was of camera and start
# frame only, which an edge restart repeats).
WIRE_EVENTS = [
    '{"schema":"vad.event/v1","event_id":"34e152a5b9b25f29a169ddac6a5d3221","camera_id":"site-1/cam.2:x",'
    '"phase":"open","seq":1,"start_frame":1,"end_frame":1,"start_ts_ms":1800000000100,"ts_ms":1800000000100,'
    '"peak_score":2.0,"peak_frame":1,"threshold":0.75,"heatmap":[[0.667,0.0],[0.0,-1.235]],'
    '"model_version":"scalep-\\u00e9"}',
    '{"schema":"vad.event/v1","event_id":"34e152a5b9b25f29a169ddac6a5d3221","camera_id":"site-1/cam.2:x",'
    '"phase":"update","seq":2,"start_frame":1,"end_frame":3,"start_ts_ms":1800000000100,"ts_ms":1800000000300,'
    '"peak_score":3.0,"peak_frame":2,"threshold":0.75,"heatmap":[[1.0,0.0],[0.0,-1.235]],'
    '"model_version":"scalep-\\u00e9"}',
    '{"schema":"vad.event/v1","event_id":"34e152a5b9b25f29a169ddac6a5d3221","camera_id":"site-1/cam.2:x",'
    '"phase":"close","seq":3,"start_frame":1,"end_frame":3,"start_ts_ms":1800000000100,"ts_ms":1800000000400,'
    '"peak_score":3.0,"peak_frame":2,"threshold":0.75,"heatmap":[[1.0,0.0],[0.0,-1.235]],'
    '"model_version":"scalep-\\u00e9","close_reason":"score"}',
]
# A camera's keyed state as the job stored it before CameraState (version 1: a dict, the detector
# state a dict too), pickled by PyFlink (cloudpickle): frame 5, two 2x3 grids of 0.25 and 0.5, an
# open episode of "cam-7" from frame 1 (seq 2, peak 5.5 at frame 5, heatmap 0 .. 3.75).
STATE_V1 = base64.b64decode(
    """
gAWVXQQAAAAAAAB9lCiMBWZyYW1llEsFjAVncmlkc5RdlCiME251bXB5Ll9jb3JlLm51bWVyaWOUjAtfZnJvbWJ1ZmZlcpSTlCiW
IAEAAAAAAAAAAIA+AACAPgAAgD4AAIA+AACAPgAAgD4AAIA+AACAPgAAgD4AAIA+AACAPgAAgD4AAIA+AACAPgAAgD4AAIA+AACA
PgAAgD4AAIA+AACAPgAAgD4AAIA+AACAPgAAgD4AAIA+AACAPgAAgD4AAIA+AACAPgAAgD4AAIA+AACAPgAAgD4AAIA+AACAPgAA
gD4AAIA+AACAPgAAgD4AAIA+AACAPgAAgD4AAIA+AACAPgAAgD4AAIA+AACAPgAAgD4AAIA+AACAPgAAgD4AAIA+AACAPgAAgD4A
AIA+AACAPgAAgD4AAIA+AACAPgAAgD4AAIA+AACAPgAAgD4AAIA+AACAPgAAgD4AAIA+AACAPgAAgD4AAIA+AACAPgAAgD6UjAVu
dW1weZSMBWR0eXBllJOUjAJmNJSJiIeUUpQoSwOMATyUTk5OSv////9K/////0sAdJRiSwJLA0sMh5SMAUOUdJRSlGgGKJYgAQAA
AAAAAAAAAD8AAAA/AAAAPwAAAD8AAAA/AAAAPwAAAD8AAAA/AAAAPwAAAD8AAAA/AAAAPwAAAD8AAAA/AAAAPwAAAD8AAAA/AAAA
PwAAAD8AAAA/AAAAPwAAAD8AAAA/AAAAPwAAAD8AAAA/AAAAPwAAAD8AAAA/AAAAPwAAAD8AAAA/AAAAPwAAAD8AAAA/AAAAPwAA
AD8AAAA/AAAAPwAAAD8AAAA/AAAAPwAAAD8AAAA/AAAAPwAAAD8AAAA/AAAAPwAAAD8AAAA/AAAAPwAAAD8AAAA/AAAAPwAAAD8A
AAA/AAAAPwAAAD8AAAA/AAAAPwAAAD8AAAA/AAAAPwAAAD8AAAA/AAAAPwAAAD8AAAA/AAAAPwAAAD8AAAA/AAAAP5RoDUsCSwNL
DIeUaBF0lFKUZYwDZGV0lH2UKIwKbGFzdF9mcmFtZZRLBYwHbGFzdF90c5SKBvRRXBijAYwDZW1hlEdAFgAAAAAAAIwDcnVulEsF
jA9ydW5fc3RhcnRfZnJhbWWUSwGMDHJ1bl9zdGFydF90c5SKBmRQXBijAYwOY29vbGRvd25fdW50aWyUSv////+MBG9wZW6UfZQo
jAhldmVudF9pZJSMIDI2NDQwNGJhNTVkNTUxZGE5MDZjOTdlN2E4NWFlNTY0lIwLc3RhcnRfZnJhbWWUSwGMC3N0YXJ0X3RzX21z
lIoGZFBcGKMBjApwZWFrX3Njb3JllEdAFgAAAAAAAIwKcGVha19mcmFtZZRLBYwHaGVhdG1hcJRoBiiWGAAAAAAAAAAAAAAAAABA
PwAAwD8AABBAAABAQAAAcECUaA1LAksDhpRoEXSUUpSMA3NlcZRLAowRbGFzdF91cGRhdGVfZnJhbWWUSwV1jAdkcm9wcGVklEsA
dXUu
"""
)


def _events() -> list[Event]:
    det = EpisodeDetector(
        DetectConfig(merge_gap_s=0, ema_alpha=1.0, min_duration_s=0, update_every_s=0.2), 0.75, "scalep-é"
    )
    st, out = DetectorState(), []
    for i, s in enumerate([0.1, 2.0, 3.0, 2.5, 0.1]):
        cells = np.array([[s / 3, 1e-5], [0.0, -1.23456]], np.float32)
        out += det.step(st, CAMERA, i, 1_800_000_000_000 + 100 * i, s, cells)
    return out


def test_events_are_typed_and_write_the_same_json_as_before():
    events = _events()
    assert [e.phase for e in events] == ["open", "update", "close"]
    assert [e.to_json() for e in events] == WIRE_EVENTS
    for e, wire in zip(events, WIRE_EVENTS, strict=True):
        assert Event.parse(wire) == e and e.to_dict() == json.loads(wire)
    assert "close_reason" not in events[0].to_dict() and events[-1].close_reason == "score"


def test_events_carry_their_version_and_refuse_what_they_do_not_know():
    wire = json.loads(WIRE_EVENTS[0])
    assert Event.SCHEMA == wire["schema"] == "vad.event/v1"
    bad = [
        {**wire, "schema": "vad.event/v2"},
        {**wire, "extra": 1},
        {**wire, "phase": "opened"},
        {**wire, "seq": 0},
        {**wire, "seq": "1"},  # types are strict: what the JSON Schema says, no coercion
        {**wire, "close_reason": "score"},  # on close events only
        {k: v for k, v in json.loads(WIRE_EVENTS[2]).items() if k != "close_reason"},
        {k: v for k, v in wire.items() if k != "schema"},
    ]
    for d in bad:
        with pytest.raises(ValidationError):
            Event.parse(json.dumps(d))
        with pytest.raises(jsonschema.ValidationError):  # the published schema says the same
            check(Event, json.dumps(d))
    with pytest.raises(ValidationError):
        Event(**{**_events()[-1].model_dump(), "close_reason": "end"})
    with pytest.raises(ValidationError):  # frozen
        _events()[0].seq = 5


def test_every_reason_the_code_dead_letters_with_is_a_listed_one_and_each_listed_one_is_used():
    """The job counts dead letters per listed reason, and the published schema describes those: a
    reason missing from the list would be counted in the total only, one listed but never raised
    would be a dead series."""
    raised = set()
    for folder in ("vad", "udfs", "models", "jobs"):
        for path in (REPO_ROOT / folder).rglob("*.py"):
            raised |= set(re.findall(r'SchemaError\(\s*"([a-z_0-9]+)"', path.read_text()))
    assert len(raised) >= 15, raised
    assert raised == set(DEAD_LETTER_REASONS)
    assert MISMATCH_REASONS == {"grid_mismatch", "layout_mismatch", "frame_size_mismatch", "edge_settings_mismatch"}


def test_dead_letters_write_the_same_json_as_before_with_a_version(monkeypatch):
    from udfs.batches import dead_letter
    from vad.schema import SchemaError

    monkeypatch.setattr("time.time", lambda: 1_800_000_000.123)
    raw = b"VADF\x01 not a record"
    got = dead_letter(raw, SchemaError("truncated", "21 bytes, header needs 34"))
    before = (
        '"reason": "truncated", "detail": "21 bytes, header needs 34", "camera_id": "", "size": 18, '
        '"payload_b64": "VkFERgEgbm90IGEgcmVjb3Jk", "seen_ms": 1800000000123}'
    )
    assert got == '{"schema": "vad.dead-letter/v1", ' + before
    d = DeadLetter.parse(got)
    assert d.schema_ == DeadLetter.SCHEMA == "vad.dead-letter/v1" and d.to_json() == got
    assert base64.b64decode(d.payload_b64) == raw
    empty = DeadLetter.parse(dead_letter(b"", SchemaError("truncated", "0 bytes")))
    assert (empty.camera_id, empty.size, empty.payload_b64) == (None, 0, "")
    long = DeadLetter.parse(dead_letter(b"x" * 1000, SchemaError("bad_magic", "...")))
    assert long.size == 1000 and len(base64.b64decode(long.payload_b64)) == DeadLetter.SAMPLE_BYTES
    with pytest.raises(ValidationError):
        DeadLetter.parse(got.replace("vad.dead-letter/v1", "vad.dead-letter/v0"))
    with pytest.raises(ValidationError):  # the version is required in the JSON
        DeadLetter.parse("{" + before)


def test_score_lines_are_the_hand_formatted_json_and_parse_exactly():
    score = float(np.float32(0.123456789))
    frames = [
        FrameFeatures(c, i, 1_800_000_000_000 + i, 360, 240, np.zeros((1, 1, N_CHANNELS), np.float32))
        for c, i in ((CAMERA, 7), ('q"\\é', 8))
    ]
    text = ScoreLine.join_frames(frames, [score, 2.0])
    lines = text.split("\n")
    assert lines[0] == f'{{"camera_id":"{CAMERA}","frame_index":7,"ts_ms":1800000000007,"score":{score!r}}}'
    assert [json.loads(x) for x in lines] == [
        {"camera_id": CAMERA, "frame_index": 7, "ts_ms": 1_800_000_000_007, "score": score},
        {"camera_id": 'q"\\é', "frame_index": 8, "ts_ms": 1_800_000_000_008, "score": 2.0},
    ]
    parsed = [ScoreLine.parse(x) for x in lines]
    assert parsed[0].score == score  # exact: the float32 value survives the text
    assert [p.to_json() for p in parsed] == lines
    assert ScoreLine.SCHEMA == "vad.score/v1"
    with pytest.raises(ValidationError):
        ScoreLine.parse(lines[0].replace('"score"', '"scor"'))


def _detector_state() -> DetectorState:
    det, st = (
        EpisodeDetector(DetectConfig(merge_gap_s=0, ema_alpha=1.0, min_duration_s=0.1, update_every_s=0.3), 1.0, "v"),
        DetectorState(),
    )
    for i in range(6):
        det.step(st, "cam-7", i, 1_800_000_000_000 + 100 * i, 0.5 + i, np.full((2, 3), i, np.float32))
    return st


def _same_detector_state(a: DetectorState, b: DetectorState) -> bool:
    def plain(st):
        d = {**vars(st), "open": dict(vars(st.open)) if st.open else None}
        if d["open"]:
            d["open"]["heatmap"] = d["open"]["heatmap"].tolist()
        return d

    return plain(a) == plain(b)


@pytest.mark.parametrize("dumps", [pickle.dumps, cloudpickle.dumps])  # PyFlink pickles state with cloudpickle
def test_camera_state_pickles_with_its_version(dumps):
    grids = [np.full((2, 3, N_CHANNELS), g, np.float32) for g in (0.25, 0.5)]
    st = CameraState(5, grids, _detector_state(), 1_800_000_000_500)
    assert st.det.open is not None and st.det.open.heatmap.dtype == np.float32
    blob = dumps(st)
    assert b"_restore_camera_state" in blob
    back = pickle.loads(blob)
    assert type(back) is CameraState and (back.frame, back.ts) == (5, 1_800_000_000_500)
    assert [g.tolist() for g in back.grids] == [g.tolist() for g in grids]
    assert _same_detector_state(back.det, st.det)
    assert CameraState.load(back) is back
    empty = pickle.loads(dumps(CameraState()))
    assert (empty.frame, empty.grids, empty.det, empty.ts) == (None, [], None, None)
    assert not hasattr(st, "__dict__")  # slotted


def test_camera_state_version_2_takes_its_last_event_time_from_the_detector():
    from vad.records import _restore_camera_state

    det = _detector_state()
    st = _restore_camera_state(2, 5, [], state_to_dict(det))
    assert (st.frame, st.ts) == (5, det.last_ts) and det.last_ts == 1_800_000_000_500
    assert _restore_camera_state(2, None, [], None).ts is None


def test_camera_state_an_older_job_stored_still_restores():
    """The savepoint of a job from before CameraState: its entries are dicts, read as version 1."""
    stored = cloudpickle.loads(STATE_V1)
    assert isinstance(stored, dict)
    st = CameraState.load(stored)
    assert st.frame == 5 and [g[0, 0, 0] for g in st.grids] == [0.25, 0.5]
    det = st.det
    assert (det.last_frame, det.last_ts, det.ema, det.run, det.cooldown_until) == (5, 1_800_000_000_500, 5.5, 5, -1)
    ev = det.open
    # The open episode keeps the id it was opened with (the older UUID 5 of camera and start frame).
    old_id = "264404ba55d551da906c97e7a85ae564"
    assert (ev.event_id, ev.start_frame, ev.seq, ev.peak_score, ev.peak_frame) == (old_id, 1, 2, 5.5, 5)
    assert ev.heatmap.dtype == np.float32 and ev.heatmap.tolist() == [[0.0, 0.75, 1.5], [2.25, 3.0, 3.75]]
    # The episode goes on where it was: the next frames update, then close it, as one event.
    d = EpisodeDetector(DetectConfig(merge_gap_s=0, ema_alpha=1.0, min_duration_s=0.1, update_every_s=0.3), 1.0, "v")
    out = []
    for i, s in ((6, 6.0), (7, 6.0), (8, 6.0), (9, 0.1)):
        out += d.step(det, "cam-7", i, 1_800_000_000_000 + 100 * i, s)
    assert [(e.phase, e.seq, e.event_id) for e in out] == [("update", 3, ev.event_id), ("close", 4, ev.event_id)]
    # written back, it is version 3 from then on, with the last frame's event time (as restored)
    assert st.ts == 1_800_000_000_500
    back = pickle.loads(cloudpickle.dumps(st))
    assert type(back) is CameraState and back.ts == st.ts
    assert CameraState.load({"frame": None, "grids": [], "det": None}).det is None
    with pytest.raises(TypeError):
        CameraState.load([1, 2])


def test_camera_state_of_an_unknown_version_is_refused():
    from vad.records import _restore_camera_state

    with pytest.raises(ValueError, match="version 5"):
        _restore_camera_state(5, None, [], None)


def test_committed_schemas_are_what_the_classes_generate():
    folder = REPO_ROOT / "docs" / "schemas"
    assert stale_schemas(folder) == [], "docs/schemas is out of date: run `vad schemas`"
    assert sorted(p.name for p in folder.glob("*.json")) == sorted(PUBLISHED)


def test_every_field_of_the_published_schemas_is_described():
    for name, text in json_schemas().items():
        schema = json.loads(text)
        assert schema["description"] and schema["additionalProperties"] is False
        assert set(schema["required"]) >= set(schema["properties"]) - {"close_reason", "kind", "zone"}, name
        for field, prop in schema["properties"].items():
            assert len(prop.get("description", "")) > 10, f"{name}: {field} has no description"


def test_the_schema_validator_fails_on_a_bad_event_and_passes_good_records():
    for wire in WIRE_EVENTS:
        check(Event, wire)
    bad = json.loads(WIRE_EVENTS[0])
    bad["heatmap"] = [["hot"]]
    with pytest.raises(jsonschema.ValidationError, match="'hot' is not of type 'number'"):
        check(Event, json.dumps(bad))
    with pytest.raises(jsonschema.ValidationError):
        check(Event, WIRE_EVENTS[2].replace(',"close_reason":"score"', ""))
    with pytest.raises(jsonschema.ValidationError):
        check(DeadLetter, '{"reason": "truncated"}')
    with pytest.raises(jsonschema.ValidationError):
        check(ScoreLine, '{"camera_id":"a","frame_index":-1,"ts_ms":0,"score":1.0}')
    check(ScoreLine, '{"camera_id":"a","frame_index":1,"ts_ms":0,"score":1}')


def test_event_json_is_ascii_and_holds_the_events_values():
    # Floats below 1e-4 and text beyond ASCII: the two places the encoder could differ from json.dumps.
    e = _events()[-1].model_copy(update={"peak_score": 1e-05, "threshold": 1.5e-7, "model_version": "m-é-✓"})
    wire = e.to_json()
    assert wire.isascii() and json.loads(wire) == e.to_dict() and Event.parse(wire) == e
    assert list(json.loads(wire)) == list(json.loads(_events()[-1].to_json()))  # same fields, same order


def test_ascii_event_json_is_the_bytes_json_dumps_wrote():
    # WIRE_EVENTS carry a non-ASCII model version, so they take the escaping path; this is the other one.
    for e in _events():
        e = e.model_copy(update={"model_version": "scalep-1"})
        assert e.to_json() == json.dumps(e.to_dict(), separators=(",", ":"))
