"""Property-based fuzzing of the frame-feature record's readers (vad.schema): ``decode``,
``parse_head``, ``peek_camera_id`` and ``FrameFeatures.from_json``. Every input is either refused
with a SchemaError whose reason is a documented dead-letter reason, or is a record that validates
and round-trips; any other exception is a bug. Inputs per property: ``fuzzing.EXAMPLES``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from fuzzing import (
    DECODE_REASONS,
    frame_features,
    fuzz,
    mutated_records,
    precisions,
    random_headers,
    raw_shard,
    valid_records,
)
from hypothesis import given
from hypothesis import strategies as st

from jobs.jvm_operators import shard_of
from vad.schema import (
    MAGIC,
    FrameFeatures,
    SchemaError,
    camera_id_ok,
    decode,
    parse_head,
    peek_camera_id,
    wire_values,
)

CORPUS = Path(__file__).resolve().parents[3] / "java/src/test/resources/io/github/vad/flink/wire_corpus.tsv"
CORPUS_SHARDS = (4, 7, 16)  # WireFuzzTest.CORPUS_SHARDS


def assert_same(a: FrameFeatures, b: FrameFeatures) -> None:
    assert (
        a.camera_id,
        a.frame_index,
        a.ts_ms,
        a.frame_width,
        a.frame_height,
        a.flags,
        a.schema_version,
        a.edge_digest,
    ) == (b.camera_id, b.frame_index, b.ts_ms, b.frame_width, b.frame_height, b.flags, b.schema_version, b.edge_digest)
    assert a.features.dtype == b.features.dtype == np.float32
    np.testing.assert_array_equal(a.features, b.features)


def assert_round_trips(rec: FrameFeatures) -> None:
    """A decoded record is valid and comes back the same through both of its forms."""
    rec.validate()
    assert camera_id_ok(rec.camera_id)
    assert_same(decode(rec.encode()), rec)
    assert_same(FrameFeatures.from_json(rec.to_json()), rec)


def check_decode(data: bytes) -> FrameFeatures | None:
    """The fuzzed property of one input: a clean SchemaError, or a record that round-trips and that
    every reader (the header parser, the dead-letter key, the JVM's shard) reads the same way."""
    peeked = peek_camera_id(data)
    assert peeked is None or isinstance(peeked, str)
    try:
        rec = decode(data)
    except SchemaError as e:
        assert e.reason in DECODE_REASONS, e
        return None
    assert_round_trips(rec)
    head = parse_head(data)
    assert (head.camera_id, head.frame_index, head.ts_ms) == (rec.camera_id, rec.frame_index, rec.ts_ms)
    assert peeked == rec.camera_id
    for shards in (1, 4, 7, 16):
        assert raw_shard(data, shards) == shard_of(rec.camera_id, shards)
    return rec


@fuzz("test_schema_fuzz::random_bytes")
@given(st.binary(max_size=300) | st.binary(max_size=300).map(lambda b: MAGIC + b))
def test_random_bytes_are_refused_cleanly(data):
    check_decode(data)


@fuzz("test_schema_fuzz::random_headers")
@given(random_headers())
def test_random_headers_are_refused_cleanly_or_decode(data):
    check_decode(data)


@fuzz("test_schema_fuzz::mutated_records")
@given(mutated_records())
def test_mutated_records_are_refused_cleanly_or_round_trip(data):
    check_decode(data)


@fuzz("test_schema_fuzz::valid_records")
@given(frame_features(), precisions)
def test_valid_records_decode_to_what_was_sent(rec, precision):
    back = check_decode(rec.encode(precision))
    assert back is not None
    want = rec if precision == "float32" else FrameFeatures(**{**rec.__dict__, "features": _sent(rec, precision)})
    assert_same(back, want)


def _sent(rec: FrameFeatures, precision: str) -> np.ndarray:
    # float16 is only written by version 3; older versions stay float32 whatever is asked.
    return wire_values(rec.features, precision) if rec.schema_version >= 3 else rec.features


def check_from_json(text) -> None:
    try:
        rec = FrameFeatures.from_json(text)
    except SchemaError as e:
        assert e.reason in DECODE_REASONS, e
        return
    assert_round_trips(rec)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


@fuzz("test_schema_fuzz::json_text")
@given(
    st.text(max_size=200)
    | st.binary(max_size=200)
    | json_values.map(json.dumps)
    | st.integers(1, 100_000).map(lambda d: "[" * d + "]" * d)
)
def test_any_json_text_is_refused_cleanly(text):
    check_from_json(text)


# Values JSON readers trip on: no int for Infinity or NaN, no float for a huge int, no UTF-8 for a lone
# surrogate (deep nesting: test_any_json_text_is_refused_cleanly).
_JSON_SPECIAL = [float("inf"), float("nan"), 10**400, -(10**400), "\ud800", "a\nb", "a/../b", [[1e39] * 12]]
_JSON_FIELDS = ["schema_version", "camera_id", "frame_index", "ts_ms", "frame_size", "flags", "features"]


@fuzz("test_schema_fuzz::mutated_json")
@given(
    frame_features(),
    st.sampled_from(_JSON_FIELDS),
    json_values | st.sampled_from(_JSON_SPECIAL),
    st.sampled_from(["set", "drop", "cut"]),
)
def test_mutated_json_records_are_refused_cleanly_or_round_trip(rec, key, value, how):
    d = json.loads(rec.to_json())
    if how == "set":
        d[key] = value
    elif how == "drop":
        del d[key]
    text = json.dumps(d)
    check_from_json(text[: len(text) // 2] if how == "cut" else text)


# Inputs the fuzzing found that raised something other than SchemaError, kept as regression tests:
# (input, the reason it is refused with now).
FROM_JSON_REGRESSIONS = {
    # int() of a JSON Infinity: OverflowError
    "inf_int": (
        '{"schema_version":3,"camera_id":"a","frame_index":Infinity,"ts_ms":1,"frame_size":[1,1],"features":[]}',
        "bad_json",
    ),
    # a JSON integer beyond float among the features: OverflowError
    "huge_int": (
        '{"schema_version":3,"camera_id":"a","frame_index":0,"ts_ms":1,"frame_size":[1,1],"features":[1'
        + "0" * 400
        + "]}",
        "bad_json",
    ),
    # a lone surrogate in the camera id: UnicodeEncodeError when its UTF-8 length was measured
    "surrogate": (
        '{"schema_version":3,"camera_id":"\\ud800","frame_index":0,"ts_ms":1,"frame_size":[1,1],"features":[]}',
        "bad_camera_id",
    ),
    # nesting deeper than Python's recursion limit: RecursionError
    "deep": ("[" * 100_000 + "]" * 100_000, "bad_json"),
}


@pytest.mark.parametrize(("text", "reason"), FROM_JSON_REGRESSIONS.values(), ids=FROM_JSON_REGRESSIONS.keys())
def test_from_json_regressions_are_refused_with_a_reason(text, reason):
    with pytest.raises(SchemaError) as e:
        FrameFeatures.from_json(text)
    assert e.value.reason == reason


def test_the_shared_corpus_is_what_the_python_decoder_says():
    """The corpus the JVM's test reads (WireFuzzTest): Python's verdict and its shards of each record."""
    lines = [line.split("\t") for line in CORPUS.read_text().splitlines() if line and not line.startswith("#")]
    assert sum(v == "ok" for _, v, *_ in lines) >= 50 and sum(v != "ok" for _, v, *_ in lines) >= 50
    for hexed, verdict, *shards in lines:
        data = bytes.fromhex(hexed)
        rec = check_decode(data)
        if rec is None:
            with pytest.raises(SchemaError) as e:
                decode(data)
            assert e.value.reason == verdict
            assert [int(s) for s in shards] == [raw_shard(data, n) for n in CORPUS_SHARDS]
        else:
            assert verdict == "ok"
            assert [int(s) for s in shards] == [shard_of(rec.camera_id, n) for n in CORPUS_SHARDS]


def write_corpus(path: Path = CORPUS, n: int = 240) -> None:
    """Writes a new shared corpus: n/2 records the decoder accepts and n/2 it refuses, drawn from the
    strategies above (run from the repository: ``.venv/bin/python -c "import sys;
    sys.path[:0] = ['tests', 'tests/unit/vad']; import test_schema_fuzz as t; t.write_corpus()"``)."""
    ok, bad = [], []
    while len(ok) < n // 2 or len(bad) < n // 2:
        data = (valid_records | mutated_records() | random_headers()).example()
        try:
            decode(data)
            verdict = "ok"
        except SchemaError as e:
            verdict = e.reason
        (ok if verdict == "ok" else bad).append((data, verdict))
    lines = ["# hex record, vad.schema.decode's verdict, shard of 4, 7 and 16 (CRC-32 of the id bytes)"]
    for data, verdict in ok[: n // 2] + bad[: n // 2]:
        lines.append("\t".join([data.hex(), verdict, *(str(raw_shard(data, s)) for s in CORPUS_SHARDS)]))
    path.write_text("\n".join(lines) + "\n")


def test_the_fuzz_budget_is_at_least_ten_thousand_inputs_and_every_property_is_counted(monkeypatch):
    import fuzzing

    assert fuzzing.DEFAULT_TOTAL >= 10_000 and fuzzing.fuzzed_inputs() >= fuzzing.DEFAULT_TOTAL
    tests = Path(__file__).resolve().parents[2]
    sources = "".join(p.read_text() for p in sorted(tests.glob("unit/**/test_*_fuzz.py")))
    assert sorted(re.findall(r'^@fuzz\("([^"]+)"\)$', sources, re.M)) == sorted(fuzzing.EXAMPLES)
    monkeypatch.setenv("VAD_FUZZ_EXAMPLES", str(10 * fuzzing.DEFAULT_TOTAL))
    assert fuzzing.fuzzed_inputs() == 10 * fuzzing.DEFAULT_TOTAL
    assert (
        fuzzing.fuzz("test_schema_fuzz::random_bytes").max_examples
        == 10 * fuzzing.EXAMPLES["test_schema_fuzz::random_bytes"]
    )
