import json
import struct

import numpy as np
import pytest

from vad.schema import (
    FLAG_GAP,
    FLAG_HALF,
    FLAG_SPARSE,
    HEADER_SIZE,
    N_CHANNELS,
    SCHEMA_VERSION,
    FrameFeatures,
    SchemaError,
    camera_id_ok,
    decode,
    validate_camera_id,
    wire_values,
)

DIGEST = 4  # bytes of the edge digest after the camera id (version 4)
MASK = HEADER_SIZE + len("cam-1") + DIGEST  # where record()'s values (or sparse mask) start


def record(**kw) -> FrameFeatures:
    rng = np.random.default_rng(0)
    base = dict(
        camera_id="cam-1",
        frame_index=7,
        ts_ms=1_800_000_000_000,
        frame_width=360,
        frame_height=240,
        features=rng.normal(size=(12, 18, N_CHANNELS)).astype(np.float32),
    )
    base.update(kw)
    return FrameFeatures(**base)


def test_round_trip_is_exact_and_compact():
    r = record(flags=FLAG_GAP)
    data = r.encode()
    assert len(data) == HEADER_SIZE + len("cam-1") + DIGEST + 12 * 18 * N_CHANNELS * 4
    back = decode(data)
    assert back.camera_id == "cam-1" and back.frame_index == 7 and back.ts_ms == r.ts_ms
    assert back.gap and back.grid_shape == (12, 18)
    np.testing.assert_array_equal(back.features, r.features)


def test_json_debug_form_round_trips():
    r = record()
    back = FrameFeatures.from_json(r.to_json())
    np.testing.assert_array_equal(back.features, r.features)
    assert json.loads(r.to_json())["channels"][2] == "mag"


def _patch(data: bytes, offset: int, fmt: str, value) -> bytes:
    b = bytearray(data)
    struct.pack_into(fmt, b, offset, value)
    return bytes(b)


# (mutation of a valid dense record, the reason it is rejected); also run through decode_batch.
MALFORMED = [
    (lambda d: d[:10], "truncated"),
    (lambda d: b"XXXX" + d[4:], "bad_magic"),
    (lambda d: _patch(d, 4, "<B", 9), "unsupported_version"),
    (lambda d: d + b"\0\0\0\0", "bad_length"),
    (lambda d: _patch(d, 32, "<H", 5), "bad_shape"),
    (lambda d: _patch(d, 16, "<q", 5), "bad_timestamp"),
    (lambda d: _patch(d, 5, "<B", 0x80), "bad_flags"),
    (lambda d: d[:-4] + struct.pack("<f", float("nan")), "non_finite"),
    (lambda d: d[:-4] + struct.pack("<f", float("inf")), "non_finite"),
    (lambda d: d + b"\0" * (1 << 20), "oversize"),
    (lambda d: d[:HEADER_SIZE] + b"\xff\xfe\xfd\xfc\xfb" + d[HEADER_SIZE + 5 :], "bad_camera_id"),
    (lambda d: d[:HEADER_SIZE] + b"c m-1" + d[HEADER_SIZE + 5 :], "bad_camera_id"),
    (lambda d: d[:HEADER_SIZE] + b"cam-\n" + d[HEADER_SIZE + 5 :], "bad_camera_id"),
    (lambda d: d[:HEADER_SIZE] + b"a/../" + d[HEADER_SIZE + 5 :], "bad_camera_id"),
    (lambda d: _patch(d, 24, "<H", 0), "bad_frame_size"),
]


@pytest.mark.parametrize("mutate, reason", MALFORMED)
def test_malformed_records_are_rejected_with_a_reason(mutate, reason):
    with pytest.raises(SchemaError) as e:
        decode(mutate(record().encode()))
    assert e.value.reason == reason


def test_encode_refuses_invalid_records():
    with pytest.raises(SchemaError, match="bad_camera_id"):
        record(camera_id="has space").encode()
    with pytest.raises(SchemaError, match="bad_shape"):
        record(features=np.zeros((12, 18, 3), np.float32)).encode()
    with pytest.raises(SchemaError, match="non_finite"):
        f = np.zeros((2, 2, N_CHANNELS), np.float32)
        f[0, 0, 0] = np.nan
        record(features=f).encode()


LEGAL_CAMERA_IDS = [
    "cam-1",
    "gate-3",
    "ped2-test004",
    "recent",
    "a:events",
    "x:recent",
    "site.a/gate_3",
    "rtsp:cam/1/zone-2",
    "a/.b",
    "a/..b",
    "a.",
    "9",
    "a" * 128,
]
ILLEGAL_CAMERA_IDS = [
    "cam\n",  # "$" matches before a final newline: the id set is matched whole
    "cam-1\n",
    "\ncam",
    "a/../x",
    "a/..",
    "../a",
    "a/./b",
    "a/.",
    "/a",
    "a/",
    "a//b",
    "",
    "-x",
    ".a",
    "has space",
    "cam\x00",
    "cam\t1",
    "cam\r",
    "cam\x7f",
    "café",
    "камера",
    "cam\u2028",
    "a{b}",
    "a" * 129,
    "é" * 64,  # 64 characters, 128 bytes: not ASCII
]


@pytest.mark.parametrize("camera_id", LEGAL_CAMERA_IDS)
def test_legal_camera_ids_pass_everywhere(camera_id):
    assert validate_camera_id(camera_id) == camera_id and camera_id_ok(camera_id)
    assert decode(record(camera_id=camera_id).encode()).camera_id == camera_id


def _with_camera_id(data: bytes, camera_id: bytes) -> bytes:
    """A wire record with its camera id replaced by arbitrary bytes (the encoder refuses illegal ids)."""
    old = struct.unpack_from("<H", data, 6)[0]
    head = _patch(data[:HEADER_SIZE], 6, "<H", len(camera_id))
    return head + camera_id + data[HEADER_SIZE + old :]


@pytest.mark.parametrize("camera_id", ILLEGAL_CAMERA_IDS)
def test_illegal_camera_ids_are_refused_by_the_validator_the_encoder_and_the_decoder(camera_id):
    with pytest.raises(SchemaError) as e:
        validate_camera_id(camera_id)
    assert e.value.reason == "bad_camera_id"
    assert not camera_id_ok(camera_id)
    with pytest.raises(SchemaError, match="bad_camera_id"):
        record(camera_id=camera_id).encode()
    with pytest.raises(SchemaError) as e:
        decode(_with_camera_id(record().encode(), camera_id.encode()))
    assert e.value.reason == "bad_camera_id"


def test_a_camera_id_that_is_not_a_string_is_refused():
    for camera_id in (None, 7, b"cam-1"):
        with pytest.raises(SchemaError, match="bad_camera_id"):
            validate_camera_id(camera_id)


def _sparse_features() -> np.ndarray:
    # Like real motion grids: most cells hold no moving pixels, so most values are exactly zero.
    f = np.zeros((12, 18, N_CHANNELS), np.float32)
    f[3:5, 7:10] = np.random.default_rng(1).uniform(0.1, 4.0, size=(2, 3, N_CHANNELS))
    f[0, 0, 0] = -2.5
    return f


def test_mostly_zero_features_travel_sparse_and_round_trip_exactly():
    r = record(features=_sparse_features(), flags=FLAG_GAP)
    data = r.encode()
    n = 12 * 18 * N_CHANNELS
    nnz = int(np.count_nonzero(r.features))
    assert data[5] == FLAG_GAP | FLAG_SPARSE
    assert len(data) == HEADER_SIZE + len("cam-1") + DIGEST + (n + 7) // 8 + 4 * nnz
    back = decode(data)
    np.testing.assert_array_equal(back.features, r.features)
    assert back.gap and back.flags == FLAG_GAP  # the wire encoding is not a record property
    assert decode(back.encode()).features.tobytes() == r.features.tobytes()


def test_dense_features_stay_dense_and_version_1_records_are_still_read():
    dense = record().encode()  # random normal values: no zeros, the mask would only add bytes
    assert dense[4] == SCHEMA_VERSION and not dense[5] & FLAG_SPARSE
    v1 = record(features=_sparse_features(), schema_version=1).encode()
    assert v1[4] == 1 and not v1[5] & FLAG_SPARSE
    assert len(v1) == HEADER_SIZE + len("cam-1") + 12 * 18 * N_CHANNELS * 4
    back = decode(v1)
    assert back.schema_version == 1
    np.testing.assert_array_equal(back.features, _sparse_features())


# The same for a valid sparse record.
MALFORMED_SPARSE = [
    (lambda d: d[:-4], "bad_length"),  # a value missing
    (lambda d: d + b"\0\0\0\0", "bad_length"),  # one too many
    (lambda d: _patch(d, MASK, "<B", d[MASK] ^ 0x01), "bad_length"),  # mask vs values
    (lambda d: _patch(d, MASK + 323, "<B", 0x80), "bad_length"),  # a bit without its value
    (lambda d: d[: MASK + 15], "bad_length"),  # cut inside the mask
    (lambda d: _patch(d, 4, "<B", 1), "bad_flags"),  # SPARSE does not exist in version 1
    (lambda d: d[:-4] + struct.pack("<f", float("nan")), "non_finite"),
]


@pytest.mark.parametrize("mutate, reason", MALFORMED_SPARSE)
def test_malformed_sparse_records_are_rejected_with_a_reason(mutate, reason):
    data = record(features=_sparse_features()).encode()
    assert data[5] & FLAG_SPARSE
    with pytest.raises(SchemaError) as e:
        decode(mutate(data))
    assert e.value.reason == reason


def test_a_record_cannot_claim_the_wire_flag():
    with pytest.raises(SchemaError, match="bad_flags"):
        record(flags=FLAG_SPARSE).encode()


def test_sparse_padding_bits_past_the_last_value_must_be_clear():
    f = np.zeros((1, 1, N_CHANNELS), np.float32)  # 12 values: the mask's second byte has 4 padding bits
    f[0, 0, 3] = 1.5
    data = record(features=f).encode()
    assert data[5] & FLAG_SPARSE
    np.testing.assert_array_equal(decode(data).features, f)
    mask_end = MASK + 2
    bad = _patch(data, mask_end - 1, "<B", data[mask_end - 1] | 0x80)  # a bit beyond value 11
    with pytest.raises(SchemaError) as e:
        decode(bad)
    assert e.value.reason == "bad_length"


# float16 values on the wire (schema version 3, HALF): what the edge sends by default.
MALFORMED_HALF = [
    (lambda d: d[:-2], "bad_length"),  # a value missing
    (lambda d: d + b"\0\0", "bad_length"),
    (lambda d: d[:-2] + struct.pack("<e", float("nan")), "non_finite"),
    (lambda d: d[:-2] + struct.pack("<e", float("inf")), "non_finite"),
    (lambda d: _patch(d, 4, "<B", 2), "bad_flags"),  # HALF does not exist in version 2
]


def test_float16_records_carry_half_the_value_bytes_and_decode_to_the_rounded_values():
    f = _sparse_features()
    data = record(features=f, flags=FLAG_GAP).encode("float16")
    nnz = int(np.count_nonzero(f))
    assert data[4] == SCHEMA_VERSION and data[5] == FLAG_GAP | FLAG_SPARSE | FLAG_HALF
    assert len(data) == MASK + (f.size + 7) // 8 + 2 * nnz
    back = decode(data)
    assert back.features.dtype == np.float32 and back.flags == FLAG_GAP
    np.testing.assert_array_equal(back.features, wire_values(f, "float16"))
    np.testing.assert_allclose(back.features, f, rtol=2.0**-11)  # float16: 11 significant bits
    assert not np.array_equal(back.features, f)  # rounded, not exact
    dense = record().encode("float16")  # no zeros: dense, two bytes a value
    assert dense[5] == FLAG_HALF and len(dense) == MASK + 2 * 12 * 18 * N_CHANNELS
    np.testing.assert_array_equal(decode(dense).features, wire_values(record().features, "float16"))


def test_values_beyond_float16_travel_as_float32_and_older_versions_never_as_float16():
    f = _sparse_features()
    f[0, 0, 1] = 70_000.0  # float16 would make it infinite
    data = record(features=f).encode("float16")
    assert not data[5] & FLAG_HALF
    np.testing.assert_array_equal(decode(data).features, f)
    np.testing.assert_array_equal(wire_values(f, "float16"), f)
    v2 = record(features=_sparse_features(), schema_version=2).encode("float16")
    assert v2[4] == 2 and v2[5] == FLAG_SPARSE
    np.testing.assert_array_equal(decode(v2).features, _sparse_features())
    with pytest.raises(ValueError, match="precision"):
        record().encode("float64")


@pytest.mark.parametrize("mutate, reason", MALFORMED_HALF)
def test_malformed_float16_records_are_rejected_with_a_reason(mutate, reason):
    data = record(features=_sparse_features()).encode("float16")
    assert data[5] & FLAG_HALF
    with pytest.raises(SchemaError) as e:
        decode(mutate(data))
    assert e.value.reason == reason


def test_the_edge_digest_travels_after_the_camera_id_and_older_versions_carry_none():
    r = record(features=_sparse_features(), edge_digest=0xDEADBEEF)
    data = r.encode("float16")
    assert data[4] == 4 and struct.unpack_from("<I", data, HEADER_SIZE + len("cam-1"))[0] == 0xDEADBEEF
    back = decode(data)
    assert back.edge_digest == 0xDEADBEEF and back.schema_version == 4
    assert FrameFeatures.from_json(r.to_json()).edge_digest == 0xDEADBEEF
    v3 = record(features=_sparse_features(), schema_version=3).encode("float16")
    assert len(v3) == len(data) - DIGEST and decode(v3).edge_digest == 0
    assert decode(v3).features.tobytes() == back.features.tobytes()
    # A JSON record of before the digest still reads, as not stated.
    old = json.loads(r.to_json())
    del old["edge_digest"]
    assert FrameFeatures.from_json(json.dumps(old)).edge_digest == 0


@pytest.mark.parametrize(
    "kw",
    [
        {"edge_digest": -1},
        {"edge_digest": 2**32},
        {"edge_digest": 1.0},
        {"edge_digest": 7, "schema_version": 3},
    ],
)
def test_an_edge_digest_that_is_no_uint32_or_in_a_version_without_one_is_refused(kw):
    with pytest.raises(SchemaError) as e:
        record(**kw).encode()
    assert e.value.reason == "bad_edge_digest"


def test_a_version_4_record_cut_inside_its_edge_digest_is_refused():
    data = record(camera_id="c").encode()
    for cut in (HEADER_SIZE + 1, HEADER_SIZE + 3, HEADER_SIZE + 4):
        with pytest.raises(SchemaError) as e:
            decode(data[:cut])
        assert e.value.reason == "bad_length"
