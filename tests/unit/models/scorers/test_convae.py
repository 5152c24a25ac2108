import numpy as np
import onnx
import pytest

from models.onnx_session import OnnxScorer
from models.scorers import convae, scalep
from vad.schema import CHANNELS, N_CHANNELS
from vad.windows import clip_windows

DX, MAG, DIR0, FG = (CHANNELS.index(c) for c in ("dx", "mag", "dir0", "fg"))
ROWS, COLS = 6, 8


def walkers(rng, frames=80, speed=1.0):
    """Normal video: walkers moving rightwards along random rows, one cell every 4 frames, with
    perspective (lower rows move faster). ``speed`` scales their flow (a cyclist: several times)."""
    g = np.zeros((frames, ROWS, COLS, N_CHANNELS), np.float32)
    for _ in range(4):
        row, col, start = rng.integers(0, ROWS), rng.integers(0, COLS), rng.integers(0, 4)
        v = speed * (0.5 + 0.3 * row) * rng.uniform(0.8, 1.2)
        for t in range(frames):
            c = (col + (t + start) // 4) % COLS
            g[t, row, c, [DX, MAG, DIR0]] += v
            g[t, row, c, FG] += 0.05 * rng.uniform(0.8, 1.2)
    g[..., :FG] += rng.normal(0, 0.01, g[..., :FG].shape).clip(0)
    return g


@pytest.fixture(scope="module")
def clips():
    rng = np.random.default_rng(0)
    return [walkers(rng) for _ in range(4)]


@pytest.fixture(scope="module")
def params(clips):
    return convae.fit(clips, window=4, epochs=6, max_samples=6000, combine="none")  # the learned part alone


VARIANTS = [{}, {"combine": "max"}, {"combine": "none"}, {"mode": "predict", "combine": "none"}]  # every graph branch


@pytest.mark.parametrize("variant", VARIANTS)
def test_onnx_matches_numpy_and_sklearn_reference_with_any_batch(tmp_path, clips, variant):
    p = convae.fit(clips, window=4, epochs=2, max_samples=3000, **variant)
    path = tmp_path / "m.onnx"
    onnx.save(convae.build_onnx(p, 4), path)
    w = clip_windows(walkers(np.random.default_rng(5)), 4)
    ref_frame, ref_cells = convae.score_numpy(w, p)
    # the numpy forward pass is the sklearn model's own
    src, _ = convae._inputs(w[:10], p)
    patches = convae._patches(src).reshape(-1, src.shape[1] * 9)
    np.testing.assert_allclose(convae._forward(patches, p), p["mlp"].predict(patches), rtol=1e-4, atol=1e-5)
    scorer = OnnxScorer(path)
    for batch in (1, 7, len(w)):  # dynamic batch axis
        frame, cells = scorer.score(w[:batch])
        assert cells.shape == (batch, ROWS, COLS) and frame.shape == (batch,)
        np.testing.assert_allclose(cells, ref_cells[:batch], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(frame, ref_frame[:batch], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(frame, cells.reshape(batch, -1).max(axis=1), rtol=1e-6)


def test_normal_cells_sit_near_one_and_a_fast_mover_scores_well_above(clips, params):
    normal = clip_windows(walkers(np.random.default_rng(7)), 4)
    _, cells = convae.score_numpy(normal, params)
    assert np.quantile(cells, 0.99) < 2.0
    fast = clip_windows(walkers(np.random.default_rng(7), speed=4.0), 4)
    fast_frame, _ = convae.score_numpy(fast, params)
    # the learned score alone (no scalep term): 4x the normal speed must stand out
    assert np.median(fast_frame) > 2 * np.quantile(cells.reshape(len(cells), -1).max(axis=1), 0.9)


def test_fixed_seed_gives_identical_weights(clips):
    a = convae.fit(clips[:2], window=4, epochs=2, max_samples=2000, seed=3)
    b = convae.fit(clips[:2], window=4, epochs=2, max_samples=2000, seed=3)
    for k in ("w1", "b1", "w2", "b2", "inv_level"):
        np.testing.assert_array_equal(a[k], b[k])
    np.testing.assert_array_equal(a["scale"], scalep.fit(clips[:2]))
