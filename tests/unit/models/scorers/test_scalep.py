import numpy as np
import onnx

from models.onnx_session import OnnxScorer
from models.scorers import scalep
from vad.schema import N_CHANNELS


def clips_with_perspective(rng, n=3, frames=60, rows=6, cols=8):
    """Normal motion that grows with the image row (near the camera = lower rows = faster)."""
    out = []
    for _ in range(n):
        g = np.zeros((frames, rows, cols, N_CHANNELS), np.float32)
        speed = 0.5 + 0.5 * np.arange(rows)[None, :, None]
        g[..., scalep.MAG] = rng.random((frames, rows, cols)) * speed
        g[:, :, 0, scalep.MAG] = 0.0  # a column nobody walks in during training
        out.append(g)
    return out


def test_scale_follows_each_cells_normal_motion_with_a_row_prior():
    rng = np.random.default_rng(0)
    scale = scalep.fit(clips_with_perspective(rng))
    assert scale.shape == (6, 8) and (scale > 0).all()
    assert scale[5, 4] > 2 * scale[0, 4]  # near rows move faster normally
    # the never-visited column borrows its neighbours' and its row's scale instead of ~0
    assert (scale[:, 0] >= 0.5 * scale[:, 4]).all()


def test_onnx_matches_numpy_reference_and_scores_fast_motion_high(tmp_path):
    rng = np.random.default_rng(1)
    clips = clips_with_perspective(rng)
    scale = scalep.fit(clips)
    path = tmp_path / "m.onnx"
    onnx.save(scalep.build_onnx(scale, window=3), path)
    w = np.stack([clips[0][i : i + 3] for i in range(20)])
    frame, cells = OnnxScorer(path).score(w)
    ref_frame, ref_cells = scalep.score_numpy(w, scale)
    np.testing.assert_allclose(cells, ref_cells, rtol=1e-6)
    np.testing.assert_allclose(frame, ref_frame, rtol=1e-6)
    fast = w[:1].copy()
    fast[0, -1, 1, 3, scalep.MAG] = 10 * scale[1, 3]  # a cyclist in a far cell
    f, c = OnnxScorer(path).score(fast)
    assert f[0] >= 10 * 0.999 and c[0].argmax() == 1 * 8 + 3
