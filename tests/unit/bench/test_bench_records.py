"""The bench's restamped records are the schema encoder's records, byte for byte."""

from __future__ import annotations

import numpy as np
import pytest

from bench import common as c
from vad.schema import decode, parse_head


@pytest.fixture
def grids():
    rng = np.random.default_rng(3)
    g = rng.gamma(0.5, 1.0, size=(5, 12, 18, 12)).astype(np.float32)
    g[g < 0.6] = 0.0  # mostly zeros, as motion features are: the sparse form
    g[1] = 0.0  # a grid with no motion at all
    g[2, 0, 0, 0] = 1e6  # beyond float16's range: this one travels as float32
    return g


def test_restamped_record_equals_the_encoders(grids):
    recs = c.Records(grids)
    for cam, idx, ts in [("cam-0000", 0, 1_700_000_000_000), ("cam-0042", 123_456, 1_800_000_000_123)]:
        for gi in range(len(grids)):
            assert recs.make(cam.encode(), idx, ts, gi) == c.record(cam, idx, ts, grids[gi])
    # The grids cover both value widths: float16 records and the float32 one.
    assert len({parse_head(recs.make(b"cam-0001", 1, 1_700_000_000_000, gi)).dtype for gi in (0, 2)}) == 2


def test_restamped_record_decodes_to_its_camera_frame_time_and_grid(grids):
    raw = c.Records(grids).make(b"cam-0007", 99, 1_750_000_000_000, 3)
    f = decode(raw)
    assert (f.camera_id, f.frame_index, f.ts_ms) == ("cam-0007", 99, 1_750_000_000_000)
    np.testing.assert_allclose(f.features, grids[3], rtol=1e-3)


def test_a_camera_id_of_another_length_is_refused(grids):
    with pytest.raises(ValueError, match="not 8 bytes"):
        c.Records(grids).make(b"cam-00001", 0, 1_700_000_000_000, 0)
