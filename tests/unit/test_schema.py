import json
import struct

import numpy as np
import pytest

from vad.schema import FLAG_GAP, HEADER_SIZE, N_CHANNELS, FrameFeatures, SchemaError, decode


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
    assert len(data) == HEADER_SIZE + len("cam-1") + 12 * 18 * N_CHANNELS * 4
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


@pytest.mark.parametrize(
    "mutate, reason",
    [
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
    ],
)
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
