import cv2
import numpy as np
import pytest

from vad.config import EdgeConfig
from vad.edge.features import FlowFeatureExtractor
from vad.schema import CHANNELS, N_CHANNELS

MAG, DX, DY = CHANNELS.index("mag"), CHANNELS.index("dx"), CHANNELS.index("dy")


def texture(h=240, w=360, seed=0):
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(0, 255, (h, w), dtype=np.uint8), (0, 0), 2)


@pytest.mark.parametrize("flow", ["dis", "farneback"])
def test_known_translation_in_a_region_gives_that_flow_in_its_cells(flow):
    cfg = EdgeConfig(flow=flow, normalise="none")
    ex = FlowFeatureExtractor(cfg)
    bg, patch = texture(seed=1), texture(80, 120, seed=2)
    frames = []
    for t in range(3):
        f = bg.copy()
        x = 100 + 4 * t  # the patch moves right by 4 px per frame
        f[80:160, x : x + 120] = patch
        frames.append(f)
    out = [ex.process(f) for f in frames][-1]
    assert out.shape == (12, 18, N_CHANNELS) and out.dtype == np.float32
    inside = out[5:7, 7:10]  # cells well inside the moving patch
    assert np.allclose(inside[..., DX], 4.0, atol=1.0), inside[..., DX]
    assert np.allclose(inside[..., DY], 0.0, atol=0.7)
    # direction bin 0 (+x) carries the magnitude inside; static corners show ~no motion
    assert (inside[..., CHANNELS.index("dir0")] > 0.7 * inside[..., MAG]).all()
    assert out[0:2, 0:3, MAG].max() < 0.5


def test_first_frame_and_reset_give_zeros():
    ex = FlowFeatureExtractor(EdgeConfig())
    assert not ex.process(texture()).any()
    ex.process(texture(seed=3))
    ex.reset()
    assert not ex.process(texture(seed=4)).any()


def test_rejects_colour_frames():
    with pytest.raises(ValueError):
        FlowFeatureExtractor(EdgeConfig()).process(np.zeros((240, 360, 3), np.uint8))
