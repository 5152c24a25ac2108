"""Shared pieces of the property-based fuzzing of every decoder (docs/reliability.md): how many inputs
each property gets, the hypothesis profile, and the strategies for valid and mutated records.

``EXAMPLES`` names every fuzzed property and its inputs per run (hypothesis ``max_examples``), so the
total is known without running anything: ``fuzzed_inputs()``. ``VAD_FUZZ_EXAMPLES=<total>`` scales
every property up (never down) so that the sum is about that total, for a long run."""

from __future__ import annotations

import os
import struct
import zlib

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from vad.schema import (
    FLAG_GAP,
    FLAG_HALF,
    FLAG_SPARSE,
    HEADER_SIZE,
    MAGIC,
    MAX_TS_MS,
    MIN_TS_MS,
    N_CHANNELS,
    FrameFeatures,
    SchemaError,
    parse_head,
)

# Inputs per property, by "<test module>::<property>". The JVM's properties are counted by their
# own test (java/src/test/java/io/github/vad/flink/WireFuzzTest.java, TRIES per property).
EXAMPLES: dict[str, int] = {
    "test_schema_fuzz::random_bytes": 1800,
    "test_schema_fuzz::random_headers": 1400,
    "test_schema_fuzz::mutated_records": 2200,
    "test_schema_fuzz::valid_records": 400,
    "test_schema_fuzz::json_text": 500,
    "test_schema_fuzz::mutated_json": 800,
    "test_batch_decode_fuzz::batches": 300,
    "test_records_fuzz::text": 600,
    "test_records_fuzz::mutated_json": 900,
    "test_batches_fuzz::random_blobs": 800,
    "test_batches_fuzz::packed_batches": 500,
    "test_batches_fuzz::dead_letters": 300,
}
DEFAULT_TOTAL = sum(EXAMPLES.values())


def _scale() -> float:
    want = int(os.environ.get("VAD_FUZZ_EXAMPLES", "0") or 0)
    return max(1.0, want / DEFAULT_TOTAL)


def examples(name: str) -> int:
    """Inputs this run gives the property ``name`` (a key of ``EXAMPLES``)."""
    return round(EXAMPLES[name] * _scale())


def fuzzed_inputs() -> int:
    """Inputs a run of the Python fuzz tests generates in all (the sum of ``max_examples``)."""
    return sum(examples(name) for name in EXAMPLES)


def fuzz(name: str):
    """The settings of one fuzzed property: its number of inputs, no deadline (the machine is shared,
    so one slow input is no bug), and no example database (nothing written into the source tree: a
    failure prints the input, which then becomes an explicit regression test)."""
    return settings(
        max_examples=examples(name),
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# The reasons the job's dead letters carry for an undecodable record, written out apart from
# vad.dead_letter_reasons.DEAD_LETTER_REASONS (test_records_fuzz checks they are its non-mismatch ones).
DECODE_REASONS = frozenset(
    {
        "bad_type",
        "oversize",
        "truncated",
        "bad_magic",
        "unsupported_version",
        "bad_flags",
        "bad_shape",
        "bad_length",
        "bad_camera_id",
        "non_finite",
        "bad_frame_index",
        "bad_timestamp",
        "bad_frame_size",
        "bad_edge_digest",
        "bad_json",
    }
)

_ID_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:-"
_SEGMENT = st.text(_ID_CHARS, min_size=1, max_size=10).filter(lambda s: s not in (".", ".."))
camera_ids = st.builds(
    lambda first, rest: "/".join([first, *rest]),
    st.text(_ID_CHARS[:62], min_size=1, max_size=1).flatmap(lambda c: _SEGMENT.map(lambda s: c + s) | st.just(c)),
    st.lists(_SEGMENT, max_size=3),
).filter(lambda s: len(s) <= 128)

# Values a reader must carry exactly: signed zeros, subnormals, float16's edges, float32's largest.
_SPECIAL = [-0.0, 1e-45, 6e-8, 65504.0, 65520.0, -3.4e38, 1.5, -2.25]


@st.composite
def frame_features(draw) -> FrameFeatures:
    rows, cols = draw(st.integers(1, 4)), draw(st.integers(1, 5))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    density = draw(st.sampled_from([0.0, 0.1, 0.5, 1.0]))
    f = rng.normal(scale=draw(st.sampled_from([1.0, 100.0, 1e5])), size=(rows, cols, N_CHANNELS))
    f[rng.random(f.shape) >= density] = 0.0
    f = f.astype(np.float32)
    flat = f.reshape(-1)
    for i, v in draw(st.lists(st.tuples(st.integers(0, flat.size - 1), st.sampled_from(_SPECIAL)), max_size=3)):
        flat[i] = v
    version = draw(st.sampled_from([1, 2, 3, 4, 4]))
    return FrameFeatures(
        camera_id=draw(camera_ids),
        frame_index=draw(st.integers(0, 2**63 - 1)),
        ts_ms=draw(st.integers(MIN_TS_MS, MAX_TS_MS)),
        frame_width=draw(st.integers(1, 65535)),
        frame_height=draw(st.integers(1, 65535)),
        features=f,
        flags=draw(st.sampled_from([0, FLAG_GAP])),
        schema_version=version,
        edge_digest=draw(st.sampled_from([0, 1, 2**32 - 1]) | st.integers(0, 2**32 - 1)) if version >= 4 else 0,
    )


precisions = st.sampled_from(["float32", "float16"])
valid_records = st.builds(lambda r, p: r.encode(p), frame_features(), precisions)

# Camera id bytes a header may carry: illegal ids, invalid UTF-8, an escape from a path, a forged line.
_BAD_IDS = [
    b"",
    b"a/../x",
    b"..",
    b"cam/..",
    b"cam\n",
    b"cam\nfake log line",
    b"cam\x00",
    b"\xff\xfe",
    b"\xc3",
    b"cam\xed\xa0\x80",  # an encoded surrogate: not UTF-8
    "café".encode(),
    b"a" * 129,
    b"/abs",
    b"a//b",
]
_NON_FINITE = [b"\x00\x00\xc0\x7f", b"\x00\x00\x80\xff", b"\x00\x7e\x00\x7e", b"\x00\x7c\x00\xfc"]


def _f32(v: float) -> bytes:
    return struct.pack("<f", v)


_FIELDS = {  # header field: (offset, struct format)
    "version": (4, "<B"),
    "flags": (5, "<B"),
    "id_length": (6, "<H"),
    "frame_index": (8, "<Q"),
    "ts_ms": (16, "<q"),
    "width": (24, "<H"),
    "height": (26, "<H"),
    "rows": (28, "<H"),
    "cols": (30, "<H"),
    "channels": (32, "<H"),
}


def _set_field(data: bytes, name: str, value: int) -> bytes:
    offset, fmt = _FIELDS[name]
    if len(data) < offset + struct.calcsize(fmt):
        return data
    b = bytearray(data)
    struct.pack_into(fmt.upper(), b, offset, value % 256 ** struct.calcsize(fmt))  # any bits, even ts_ms
    return bytes(b)


def _with_camera_id(data: bytes, cam: bytes, keep_length: bool) -> bytes:
    if len(data) < HEADER_SIZE:
        return data
    old = struct.unpack_from("<H", data, 6)[0]
    head = data[:HEADER_SIZE] if keep_length else _set_field(data[:HEADER_SIZE], "id_length", len(cam))
    return head + cam + data[HEADER_SIZE + old :]


def _values_at(data: bytes) -> tuple[int, int]:
    """(offset of a record's first value, bytes per value); the end of the header if unreadable."""
    try:
        hd = parse_head(data)
    except SchemaError:
        return HEADER_SIZE, 4
    item = 2 if hd.dtype == "<f2" else 4
    return hd.start + ((hd.size + 7) // 8 if hd.flags & FLAG_SPARSE else 0), item


def _position(n: int) -> st.SearchStrategy[int]:
    """An offset in 0..n, in the header or past it equally often: hypothesis often draws small
    integers, which would put most edits into the magic."""
    if n <= HEADER_SIZE:
        return st.integers(0, max(n, 0))
    return st.sampled_from(range(HEADER_SIZE)) | st.integers(0, 2**32 - 1).map(
        lambda i: HEADER_SIZE + i % (n - HEADER_SIZE + 1)
    )


@st.composite
def mutation(draw, data: bytes) -> bytes:
    """One edit of a record: bit flips, truncation, extension, splicing, a header field, the camera
    id, a value (NaN, infinity or any float)."""
    kinds = ["flip", "truncate", "extend", "splice", "field", "camera_id", "non_finite", "value"]
    kind = draw(st.sampled_from(kinds))
    n = len(data)
    if kind == "flip":
        b = bytearray(data)
        for _ in range(draw(st.integers(1, 4)) if n else 0):
            b[draw(_position(n)) % n] ^= 1 << draw(st.integers(0, 7))
        return bytes(b)
    if kind == "truncate":
        return data[: draw(_position(n))]
    if kind == "extend":
        return data + draw(st.binary(min_size=1, max_size=16))
    if kind == "splice":
        at, other = draw(_position(n)), draw(st.binary(max_size=40) | valid_records)
        return data[:at] + other[draw(st.integers(0, len(other))) :]
    if kind in ("non_finite", "value"):  # NaN or infinity (float32 or float16), or any finite float32
        start, item = _values_at(data)
        at = start + item * (draw(st.integers(0, 2**32 - 1)) % max((n - start) // item, 1))
        new = draw(st.sampled_from(_NON_FINITE) if kind == "non_finite" else st.floats(width=32).map(_f32))
        return data[:at] + new + data[at + 4 :]
    if kind == "field":
        name = draw(st.sampled_from(sorted(_FIELDS)))
        special = [0, 1, 2, 3, 4, 7, 12, 13, 255, 256, 65535, 2**63 - 1, 2**63, 2**64 - 1, MIN_TS_MS - 1, MAX_TS_MS + 1]
        return _set_field(data, name, draw(st.sampled_from(special) | st.integers(0, 2**64 - 1)))
    cam = draw(st.sampled_from(_BAD_IDS) | camera_ids.map(str.encode) | st.binary(max_size=20))
    return _with_camera_id(data, cam, keep_length=draw(st.booleans()))


@st.composite
def mutated_records(draw) -> bytes:
    data = draw(valid_records)
    for _ in range(draw(st.sampled_from([1, 1, 1, 2, 3]))):
        data = draw(mutation(data))
    return data


@st.composite
def random_headers(draw) -> bytes:
    """The magic, then any header field values, a camera id and as many value bytes as the header
    asks for (half the time; random bytes rarely get past the magic or the length check)."""
    # Mostly what a reader knows, so that inputs get past the first checks to the later ones.
    version = draw(st.sampled_from([1, 2, 3, 4, 4, 4, 0, 5, 255]))
    flags = draw(st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7, 8, 255]))
    rows, cols = draw(st.sampled_from([1, 2, 3, 0])), draw(st.sampled_from([1, 2, 3, 0]))
    channels = draw(st.sampled_from([N_CHANNELS] * 4 + [0, 11, 13, 65535]))
    cam = draw(camera_ids.map(str.encode) | st.sampled_from(_BAD_IDS) | st.binary(max_size=20))
    head = struct.pack(
        "<4sBBHQqHHHHH",
        MAGIC,
        version,
        flags,
        draw(st.just(len(cam)) | st.integers(0, 65535)),
        draw(st.integers(0, 2**64 - 1)),
        draw(st.integers(MIN_TS_MS, MAX_TS_MS) | st.integers(-(2**63), 2**63 - 1)),
        draw(st.integers(0, 65535)),
        draw(st.integers(0, 65535)),
        rows,
        cols,
        channels,
    )
    dense = (2 if flags & FLAG_HALF else 4) * rows * cols * channels
    exact = dense <= 4096 and draw(st.booleans())
    digest = draw(st.binary(min_size=4, max_size=4)) if version == 4 and exact else b""
    return head + cam + digest + draw(st.binary(min_size=dense, max_size=dense) if exact else st.binary(max_size=600))


def raw_shard(data: bytes, shards: int) -> int:
    """``ShardedRecords.shardOf`` of the JVM, reimplemented: CRC-32 of at most 128 camera id bytes
    from offset 34, cut where the record ends, modulo the shard count."""
    if len(data) < 8:
        return zlib.crc32(b"") % shards
    declared = struct.unpack_from("<H", data, 6)[0]
    return zlib.crc32(data[HEADER_SIZE : HEADER_SIZE + min(declared, 128)]) % shards
