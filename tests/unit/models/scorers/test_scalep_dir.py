"""scalep_dir: scalep's speed score plus a per-cell direction term (models/scorers/scalep_dir.py)."""

import numpy as np
import onnx
import pytest

from models.onnx_session import OnnxScorer
from models.scorers import scalep, scalep_dir
from vad.schema import DIRECTION_BINS, N_CHANNELS


def one_way_clips(rng, n=3, frames=80, rows=6, cols=8):
    """Normal motion always to the right (bin 0), faster in lower rows, with 45-degree jitter."""
    out = []
    for _ in range(n):
        g = np.zeros((frames, rows, cols, N_CHANNELS), np.float32)
        speed = 0.5 + 0.5 * np.arange(rows)[None, :, None]
        mag = rng.random((frames, rows, cols)) * speed
        g[..., scalep_dir.DIR0] = 0.9 * mag
        g[..., scalep_dir.DIR0 + 1] = 0.1 * mag
        g[..., scalep.MAG] = mag
        out.append(g)
    return out


def test_rare_directions_get_a_smaller_scale_floored_by_alpha():
    clips = one_way_clips(np.random.default_rng(0))
    params = scalep_dir.fit(clips, q=98, alpha=0.4)
    scale, s = params["scale"], 1 / params["inv_dir"]
    np.testing.assert_array_equal(scale, scalep.fit(clips))
    assert s.shape == (*scale.shape, DIRECTION_BINS)
    assert (s <= scale[..., None] * (1 + 1e-6)).all()  # a bin never moves more than the cell
    np.testing.assert_allclose(s[..., 4], 0.4 * scale, rtol=1e-6)  # never seen: the floor
    assert (s[..., 0] > 2 * s[..., 4]).all()  # the usual direction keeps a normal-sized scale


def test_alpha_one_is_scalep_exactly():
    clips = one_way_clips(np.random.default_rng(1))
    w = np.stack([clips[0][i : i + 1] for i in range(30)])
    frame, cells = scalep_dir.score_numpy(w, scalep_dir.fit(clips, alpha=1.0))
    ref_frame, ref_cells = scalep.score_numpy(w, scalep.fit(clips))
    np.testing.assert_allclose(cells, ref_cells, rtol=1e-6)
    np.testing.assert_allclose(frame, ref_frame, rtol=1e-6)
    with pytest.raises(ValueError):
        scalep_dir.fit(clips, alpha=0.0)


def test_onnx_matches_numpy_reference_and_scores_the_wrong_way_high(tmp_path):
    clips = one_way_clips(np.random.default_rng(2))
    params = scalep_dir.fit(clips)
    path = tmp_path / "m.onnx"
    onnx.save(scalep_dir.build_onnx(params, window=3), path)
    w = np.stack([clips[0][i : i + 3] for i in range(20)])
    frame, cells = OnnxScorer(path).score(w)
    ref_frame, ref_cells = scalep_dir.score_numpy(w, params)
    np.testing.assert_allclose(cells, ref_cells, rtol=1e-6)
    np.testing.assert_allclose(frame, ref_frame, rtol=1e-6)
    # the same normal speed, the usual way and the wrong way (bin 4: towards -x)
    speed = 0.5 * params["scale"][1, 3]
    right, wrong = np.zeros((2, 3, 6, 8, N_CHANNELS), np.float32)
    right[-1, 1, 3, [scalep.MAG, scalep_dir.DIR0]] = speed
    wrong[-1, 1, 3, [scalep.MAG, scalep_dir.DIR0 + 4]] = speed
    f, c = OnnxScorer(path).score(np.stack([right, wrong]))
    # the usual direction scores about what scalep gives it (its own 98 % level is a little under
    # the cell's 99 % scale); the wrong way at the same speed scores at the floor, 1 / alpha higher
    assert 0.5 <= f[0] < 0.65
    assert f[1] == pytest.approx(0.5 / 0.4, rel=1e-5) and c[1].argmax() == 1 * 8 + 3
    assert scalep.score_numpy(wrong[None], params["scale"])[0][0] == pytest.approx(0.5, rel=1e-5)
