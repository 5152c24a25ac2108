"""Property-based fuzzing of the downstream consumers' decoders (``vad.consumer.parse``, i.e.
``Event``/``DeadLetter``/``ScoreLine.parse``): any text is either refused with pydantic's
ValidationError, or is a record that round-trips through its wire form and satisfies its published
JSON Schema. Inputs per property: ``fuzzing.EXAMPLES``."""

from __future__ import annotations

import json

import pytest
from fuzzing import DECODE_REASONS, fuzz
from hypothesis import given
from hypothesis import strategies as st
from published_schemas import check
from pydantic import ValidationError

from vad.consumer import parse
from vad.dead_letter_reasons import DEAD_LETTER_REASONS, MISMATCH_REASONS
from vad.records import DeadLetter, Event, ScoreLine

KINDS = [Event, DeadLetter, ScoreLine]
VALID = {
    Event: {
        "schema": "vad.event/v1",
        "event_id": "34e152a5b9b25f29a169ddac6a5d3221",
        "camera_id": "site-1/cam.2:x",
        "phase": "close",
        "seq": 3,
        "start_frame": 1,
        "end_frame": 3,
        "start_ts_ms": 1800000000100,
        "ts_ms": 1800000000400,
        "peak_score": 3.0,
        "peak_frame": 2,
        "threshold": 0.75,
        "heatmap": [[1.0, 0.0], [0.0, -1.235]],
        "model_version": "scalep-é",
        "close_reason": "score",
    },
    DeadLetter: {
        "schema": "vad.dead-letter/v1",
        "reason": "bad_magic",
        "detail": "magic b'XXXX' is not b'VADF'",
        "camera_id": None,
        "size": 40,
        "payload_b64": "WFhYWA==",
        "seen_ms": 1800000000000,
    },
    ScoreLine: {"camera_id": "cam-1", "frame_index": 7, "ts_ms": 1800000000000, "score": 0.125},
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


def check_parse(kind: type, text: str | bytes) -> None:
    try:
        rec = parse(kind, text)
    except ValidationError:
        return
    wire = rec.to_json()
    assert parse(kind, wire) == rec
    check(kind, wire)  # what the job writes satisfies the published schema
    check(kind, text)  # and so does everything a consumer accepts


@fuzz("test_records_fuzz::text")
@given(
    st.sampled_from(KINDS),
    st.text(max_size=200)
    | st.binary(max_size=200)
    | json_values.map(json.dumps)
    | st.integers(1, 100_000).map(lambda d: "[" * d + "]" * d),
)
def test_any_text_is_refused_cleanly(kind, text):
    check_parse(kind, text)


@fuzz("test_records_fuzz::mutated_json")
@given(st.sampled_from(KINDS), st.data())
def test_mutated_records_are_refused_cleanly_or_round_trip(kind, data):
    d = dict(VALID[kind])
    how = data.draw(st.sampled_from(["set", "drop", "add", "cut", "special"]))
    key = data.draw(st.sampled_from(sorted(d)))
    if how == "set":
        d[key] = data.draw(json_values)
    elif how == "drop":
        del d[key]
    elif how == "add":
        d[data.draw(st.text(max_size=12))] = data.draw(json_values)
    elif how == "special":
        d[key] = data.draw(st.sampled_from(SPECIAL_VALUES))
    text = json.dumps(d)
    check_parse(kind, text[: data.draw(st.integers(0, len(text)))] if how == "cut" else text)


# Values a field may carry that JSON has no standard form for (NaN, Infinity), or that a lenient
# reader would coerce (strings of numbers, floats where an int is due, huge integers).
SPECIAL_VALUES = [float("nan"), float("inf"), -float("inf"), "1", 1.0, 1.5, 2**64, -1, "", "a" * 200, [], {}]


def test_every_decode_reason_is_documented_for_dead_letter_consumers():
    documented = DeadLetter.model_fields["reason"].description
    assert all(r in documented for r in DECODE_REASONS)
    # The job counts dead letters per listed reason: the decoder's are the list but the model's.
    assert DECODE_REASONS == set(DEAD_LETTER_REASONS) - MISMATCH_REASONS


# Inputs the fuzzing found that parsed but did not round-trip (NaN != NaN) or were not JSON at all
# by the published schema's standard, kept as regression tests.
NON_FINITE_REGRESSIONS = [
    (ScoreLine, '{"camera_id":"a","frame_index":1,"ts_ms":1,"score":NaN}'),
    (ScoreLine, '{"camera_id":"a","frame_index":1,"ts_ms":1,"score":Infinity}'),
    (Event, json.dumps({**VALID[Event], "peak_score": float("nan")})),
    (Event, json.dumps({**VALID[Event], "threshold": float("inf")})),
    (Event, json.dumps({**VALID[Event], "heatmap": [[float("-inf")]]})),
]


@pytest.mark.parametrize(("kind", "text"), NON_FINITE_REGRESSIONS)
def test_non_finite_numbers_are_refused(kind, text):
    with pytest.raises(ValidationError):
        parse(kind, text)
