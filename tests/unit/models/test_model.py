import numpy as np
import pytest

from models.card import ModelCard
from models.onnx_session import OnnxScorer
from models.scorers import baseline
from vad.config import REPO_ROOT
from vad.schema import N_CHANNELS
from vad.windows import clip_windows, fill_window, window_at


def test_window_pads_with_the_oldest_grid_then_slides():
    g = np.arange(5, dtype=np.float32)[:, None, None, None] * np.ones((5, 2, 2, 1), np.float32)
    w = window_at(g[:2], 4)
    assert w[:, 0, 0, 0].tolist() == [0, 0, 0, 1]
    cw = clip_windows(g, 3)
    assert cw.shape == (5, 3, 2, 2, 1) and cw[4, :, 0, 0, 0].tolist() == [2, 3, 4]


@pytest.mark.parametrize("k", [1, 2, 4, 6])
def test_fill_window_is_window_at_in_place(k):
    g = np.random.default_rng(k).normal(size=(k, 2, 3, N_CHANNELS)).astype(np.float32)
    out = np.full((4, 2, 3, N_CHANNELS), np.nan, np.float32)
    fill_window(out, list(g))
    np.testing.assert_array_equal(out, window_at(g, 4))


def test_exported_baseline_matches_numpy_reference(tmp_path):
    rng = np.random.default_rng(0)
    clips = [rng.gamma(2.0, 0.5, size=(40, 3, 4, N_CHANNELS)).astype(np.float32) for _ in range(2)]
    params = baseline.fit(clips, window=4)
    import onnx

    path = tmp_path / "m.onnx"
    onnx.save(baseline.build_onnx(params, 4), path)
    scorer = OnnxScorer(path)
    assert scorer.providers[-1] == "CPUExecutionProvider"
    w = clip_windows(clips[0], 4)
    frame, cells = scorer.score(w)
    ref_cells = np.maximum((w.mean(axis=1) - params["mu"]) / params["sd"], 0).max(axis=-1)
    np.testing.assert_allclose(cells, ref_cells, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(frame, ref_cells.reshape(len(w), -1).max(axis=1), rtol=1e-5)
    # dynamic batch axis: any batch size works
    assert scorer.score(w[:1])[0].shape == (1,) and scorer.score(w[:17])[0].shape == (17,)


def test_default_model_and_card_are_consistent():
    path = REPO_ROOT / "models" / "default" / "model.onnx"
    card = ModelCard.load(path.with_name("card.json"))
    assert path.stat().st_size < 5 * 1024 * 1024
    scorer = OnnxScorer(path)
    rows, cols = card.grid
    frame, cells = scorer.score(np.zeros((2, card.window, rows, cols, card.channels), np.float32))
    assert frame.shape == (2,) and cells.shape == (2, rows, cols)
    assert card.threshold("0.999") >= card.threshold("0.99") > 0
    with pytest.raises(KeyError):
        card.threshold("0.5")
