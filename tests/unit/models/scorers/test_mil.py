import json

import numpy as np
import onnx
import pytest

from models.onnx_session import OnnxScorer
from models.scorers import mil, scalep
from models.train import read_clip_labels
from vad.schema import N_CHANNELS


def clip(rng, frames=64, fast_from=None):
    g = np.zeros((frames, 4, 5, N_CHANNELS), np.float32)
    g[..., scalep.MAG] = rng.random((frames, 4, 5))
    g[..., mil.FG] = rng.random((frames, 4, 5)) * 0.1
    if fast_from is not None:
        g[fast_from:, 2, 2, scalep.MAG] = 6.0  # something much faster than normal in one cell
    return g


def test_mil_learns_to_rank_anomalous_segments_above_normal_ones():
    rng = np.random.default_rng(0)
    normal = [clip(rng) for _ in range(4)]
    anomalous = [clip(rng, fast_from=40) for _ in range(3)]
    scales = mil.fit_scales(normal)
    w, b = mil.train(anomalous, normal, scales, epochs=200)
    assert w[0] > 0  # speed above the cell's normal raises the score
    test = clip(rng, fast_from=32)
    frame, _cells = mil.score_numpy(test, scales, w, b)
    assert frame[40:].min() > frame[:30].max()


def test_onnx_matches_numpy(tmp_path):
    rng = np.random.default_rng(1)
    normal = [clip(rng) for _ in range(2)]
    scales = mil.fit_scales(normal)
    w, b = np.array([1.5, 0.3], np.float32), -2.0
    path = tmp_path / "mil.onnx"
    onnx.save(mil.build_onnx(scales, w, b), path)
    g = clip(rng, fast_from=10)
    frame, cells = OnnxScorer(path).score(g[:, None])
    ref_frame, ref_cells = mil.score_numpy(g, scales, w, b)
    np.testing.assert_allclose(cells, ref_cells, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(frame, ref_frame, rtol=1e-5, atol=1e-6)


def test_clip_labels_are_validated(tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"x")
    (tmp_path / "b.mp4").write_bytes(b"x")
    good = tmp_path / "labels.json"
    good.write_text(json.dumps({"clips": {"a.mp4": 0, "b.mp4": 1}}))
    assert read_clip_labels(tmp_path, good) == {"a.mp4": 0, "b.mp4": 1}
    for bad, msg in [
        ({"clips": {"a.mp4": 0, "b.mp4": 2}}, "0 or 1"),
        ({"clips": {"a.mp4": 0, "zz.mp4": 1}}, "no such clip"),
        ({"clips": {"a.mp4": 0, "b.mp4": 0}}, "both"),
        ([1, 2], "expected"),
    ]:
        good.write_text(json.dumps(bad))
        with pytest.raises(ValueError, match=msg):
            read_clip_labels(tmp_path, good)
