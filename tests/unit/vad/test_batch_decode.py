import numpy as np
import pytest
from test_schema import MALFORMED, MALFORMED_HALF, MALFORMED_SPARSE, _sparse_features, record

from vad.batch_decode import decode_batch
from vad.schema import FLAG_GAP, FLAG_HALF, FLAG_SPARSE, HEADER_SIZE, N_CHANNELS, SchemaError, decode


def _one_by_one(items: list[bytes]):
    recs, errors = [], []
    for i, raw in enumerate(items):
        try:
            recs.append(decode(raw))
        except SchemaError as e:
            errors.append((i, e.reason, str(e)))
    return recs, errors


def _assert_same(items: list[bytes]) -> None:
    want_recs, want_errors = _one_by_one(items)
    got_recs, got_errors = decode_batch(items)
    assert [(i, e.reason, str(e)) for i, e in got_errors] == want_errors
    assert len(got_recs) == len(want_recs)
    assert [i for i, _ in got_recs] == sorted(set(range(len(items))) - {i for i, *_ in want_errors})
    for (_, g), w in zip(got_recs, want_recs, strict=True):
        assert (g.camera_id, g.frame_index, g.ts_ms, g.flags, g.schema_version) == (
            w.camera_id,
            w.frame_index,
            w.ts_ms,
            w.flags,
            w.schema_version,
        )
        assert (g.frame_width, g.frame_height) == (w.frame_width, w.frame_height)
        assert g.features.dtype == np.float32 and g.features.tobytes() == w.features.tobytes()


def _valid_mix() -> list[bytes]:
    rng = np.random.default_rng(3)
    out = []
    for i in range(40):
        f = _sparse_features() * rng.uniform(0.5, 2.0)
        if i % 7 == 0:
            f = np.zeros_like(f)  # a frame without motion: an all-zero mask
        out.append(record(camera_id=f"cam-{i % 5}", frame_index=i, features=f.astype(np.float32)).encode())
    out.append(record(frame_index=100).encode())  # dense (random values)
    out.append(record(frame_index=101, features=_sparse_features(), schema_version=1).encode())  # v1
    out.append(record(frame_index=102, features=_sparse_features(), flags=FLAG_GAP).encode())
    small = np.zeros((1, 1, N_CHANNELS), np.float32)  # 12 values: mask padding bits
    small[0, 0, 3] = 1.5
    out.append(record(frame_index=103, features=small).encode())
    out.append(record(frame_index=104, features=np.ones((3, 5, N_CHANNELS), np.float32)).encode())
    for i in range(105, 115):  # float16 values: sparse, one dense, one sent as float32 (out of range)
        f = _sparse_features() * rng.uniform(0.5, 2.0)
        if i == 113:
            f = rng.normal(size=f.shape)
        if i == 114:
            f[0, 0, 0] = 1e6
        out.append(record(frame_index=i, features=f.astype(np.float32)).encode("float16"))
    return out


def test_a_valid_batch_decodes_as_record_by_record():
    items = _valid_mix()
    assert sum(bool(b[5] & FLAG_SPARSE) for b in items) > 30
    _assert_same(items)
    recs, errors = decode_batch(items)
    assert not errors and [r.frame_index for _, r in recs][-15:] == list(range(100, 115))
    assert sum(bool(b[5] & FLAG_HALF) for b in items) == 9


@pytest.mark.parametrize("kind", ["dense", "sparse", "half"])
def test_every_malformed_record_gets_the_reason_decode_gives_and_the_rest_survive(kind):
    table = {"dense": MALFORMED, "sparse": MALFORMED_SPARSE, "half": MALFORMED_HALF}[kind]
    base = {
        "dense": record().encode(),
        "sparse": record(features=_sparse_features()).encode(),
        "half": record(features=_sparse_features()).encode("float16"),
    }[kind]
    items = _valid_mix()
    for k, (mutate, _reason) in enumerate(table):  # interleaved with valid records of the same shape
        items.insert(3 * k + 1, mutate(base))
    _assert_same(items)
    recs, errors = decode_batch(items)
    assert len(errors) == len(table) and len(recs) == len(_valid_mix())
    assert sorted(e.reason for _, e in errors) == sorted(r for _, r in table)


@pytest.mark.parametrize("encoding", ["dense", "sparse", "half"])
def test_a_camera_id_with_a_trailing_newline_is_dead_lettered_and_its_batch_scored(encoding):
    """A "$"-anchored pattern accepts the id "cam\\n" ("$" matches before a final newline): the
    record must be refused with bad_camera_id (the dead letter's reason), the records around it decoded."""
    features = record().features if encoding == "dense" else _sparse_features()
    precision = "float16" if encoding == "half" else "float32"
    # The encoder refuses the id, so the record is encoded with "camX" and its last byte replaced.
    raw = bytearray(record(camera_id="camX", features=features).encode(precision))
    raw[HEADER_SIZE + 3] = ord("\n")
    items = _valid_mix()
    items.insert(5, bytes(raw))
    recs, errors = decode_batch(items)
    assert [(i, e.reason) for i, e in errors] == [(5, "bad_camera_id")]
    assert "'cam\\n'" in errors[0][1].detail
    assert len(recs) == len(_valid_mix()) and all(r.camera_id != "cam\n" for _, r in recs)
    _assert_same(items)


def test_empty_batch_and_a_batch_of_only_malformed_records():
    assert decode_batch([]) == ([], [])
    recs, errors = decode_batch([b"junk", b"VADF"])
    assert recs == [] and [(i, e.reason) for i, e in errors] == [(0, "truncated"), (1, "truncated")]
