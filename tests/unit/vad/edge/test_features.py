import itertools

import cv2
import numpy as np
import pytest

from vad.config import EdgeConfig
from vad.edge.features import FlowFeatureExtractor
from vad.schema import CHANNELS, N_CHANNELS

MAG, DX, DY = CHANNELS.index("mag"), CHANNELS.index("dx"), CHANNELS.index("dy")


def moving_camera(**settings) -> EdgeConfig:
    """Settings for the tests that move a whole texture: that is the camera's own motion, which the
    edge subtracts by default (tests/unit/vad/edge/test_camera_motion.py); here it stands for a known
    flow whose units and scales are checked."""
    return EdgeConfig(compensate_camera_motion=False, **settings)


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


def test_masked_cells_are_zero_and_others_are_not():
    ex = FlowFeatureExtractor(moving_camera(normalise="none"), mask=[(5, 7), (6, 8), (0, 0)])
    bg = texture(seed=5)
    out = [ex.process(np.roll(bg, 3 * t, axis=1)) for t in range(3)][-1]
    assert not out[5, 7].any() and not out[6, 8].any() and not out[0, 0].any()
    assert out[5, 6, MAG] > 1.0 and out[6, 9, MAG] > 1.0  # unmasked neighbours see the motion
    with pytest.raises(ValueError, match="outside the 12x18 grid"):
        FlowFeatureExtractor(EdgeConfig(), mask=[(12, 0)])


@pytest.mark.parametrize("scale", [1.0, 0.5, 0.25])
def test_units_are_source_pixels_whatever_the_flow_scale(scale):
    cfg = moving_camera(normalise="none", flow_scale=scale, flow_min_height=0, dis_preset="medium")
    ex = FlowFeatureExtractor(cfg)
    bg = texture(seed=6)
    out = [ex.process(np.roll(bg, (2 * t, 4 * t), axis=(0, 1))) for t in range(3)][-1]
    inner = out[2:-2, 2:-2]  # away from the wrap-around edges
    assert np.allclose(np.median(inner[..., DX]), 4.0, atol=0.6)
    assert np.allclose(np.median(inner[..., DY]), 2.0, atol=0.6)


def _uneven_steps(ex, bg, times_ms, px_per_s=50.0, with_steps=True):
    """Median dx of a texture moving right at px_per_s, sampled at the given times."""
    out, last = [], None
    for t in times_ms:
        frame = np.roll(bg, round(px_per_s * t / 1000), axis=1)
        step = t - last if with_steps and last is not None else None
        out.append(float(np.median(ex.process(frame, step)[2:-2, 2:-2, DX])))
        last = t
    return out[1:]


def test_flow_is_per_target_interval_when_a_source_is_sampled_at_uneven_steps():
    """25 fps kept at 10: steps of 80 and 120 ms. The same speed is the same feature at every step."""
    cfg = moving_camera(normalise="none", flow_min_height=0, dis_preset="medium")
    bg, times = texture(seed=11), [0, 80, 200, 280, 400]
    steady = _uneven_steps(FlowFeatureExtractor(cfg), bg, times)
    assert np.allclose(steady, 5.0, atol=0.6), steady  # 50 px/s = 5 px per 100 ms, at each step
    # Without the steps (or without a target rate) flow stays per step: 4, 6, 4, 6 px.
    raw = _uneven_steps(FlowFeatureExtractor(cfg), bg, times, with_steps=False)
    assert np.allclose(raw, [4.0, 6.0, 4.0, 6.0], atol=0.6), raw
    every_frame = FlowFeatureExtractor(cfg.model_copy(update={"target_fps": None}))
    assert np.allclose(_uneven_steps(every_frame, bg, times), [4.0, 6.0, 4.0, 6.0], atol=0.6)


def test_the_time_scale_is_bounded_and_one_without_a_step():
    ex = FlowFeatureExtractor(EdgeConfig(normalise="none", flow_min_height=0))
    assert ex._time_scale(100.0) == 1.0 and ex._time_scale(50.0) == 2.0 and ex._time_scale(125.0) == 0.8
    assert ex._time_scale(None) == 1.0 and ex._time_scale(0.0) == 1.0
    assert ex._time_scale(10.0) == 5.0 and ex._time_scale(10_000.0) == 0.2  # a burst, a stall


@pytest.mark.parametrize(
    ("h", "w", "floor", "flow_hw"),
    [
        (240, 360, 120, (120, 180)),  # Ped2: half size already has 120 rows
        (158, 238, 120, (120, 180)),  # a Ped1-sized camera: raised from 84 rows to 120
        (158, 238, 0, (84, 126)),  # floor off: half size
        (96, 144, 120, (96, 144)),  # never above the frame's own size
        (720, 1280, 120, (360, 648)),  # large frames keep flow_scale
    ],
)
def test_flow_has_at_least_min_height_rows(h, w, floor, flow_hw):
    ex = FlowFeatureExtractor(moving_camera(flow_min_height=floor))
    out = [ex.process(np.roll(texture(h, w, seed=8), 2 * t, axis=1)) for t in range(2)][-1]
    g = ex._geometry
    assert (g.fh, g.fw) == flow_hw
    assert out.shape == (12, 18, N_CHANNELS) and np.median(out[2:-2, 2:-2, DX]) > 1.0


def test_resize_keeps_source_units_and_frame_shape_independent_grid():
    ex = FlowFeatureExtractor(moving_camera(normalise="equalize", resize=(180, 120), flow_scale=1.0))
    bg = texture(480, 720, seed=7)
    out = [ex.process(np.roll(bg, 6 * t, axis=1)) for t in range(3)][-1]
    assert out.shape == (12, 18, N_CHANNELS)
    assert np.allclose(np.median(out[2:-2, 2:-2, DX]), 6.0, atol=1.0)


def test_direction_histogram_sums_to_magnitude_and_gate_zeroes_static_cells():
    ex = FlowFeatureExtractor(EdgeConfig(normalise="none"))
    bg, patch = texture(seed=8), texture(60, 60, seed=9)
    frames = []
    for t in range(3):
        f = bg.copy()
        f[100 + 3 * t : 160 + 3 * t, 150:210] = patch  # moving down
        frames.append(f)
    out = [ex.process(f) for f in frames][-1]
    hist = out[..., CHANNELS.index("dir0") : CHANNELS.index("dir7") + 1]
    assert np.allclose(hist.sum(-1), out[..., MAG], rtol=1e-4, atol=1e-5)
    cell = out[6, 9]
    assert cell[CHANNELS.index("dir2")] > 0.7 * cell[MAG]  # bin 2 = down the image
    assert out[0:3, 0:4, :-1].max() == 0.0  # static background: gated to exactly zero flow


def reference_reduce(flow, cur, prev, rows, cols, gate, sx, sy):
    """The plain full-map reduction the sparse one replaces (schema v1): gate, scale, then per-cell means
    of dx, dy and |f| and a magnitude-weighted histogram of 8 direction bins centred on +x."""
    fd = cv2.absdiff(cur, prev)
    fx, fy = flow[..., 0] * sx, flow[..., 1] * sy
    if gate > 0:
        still = cv2.blur(fd, (3, 3)) < gate
        fx[still], fy[still] = 0.0, 0.0
    mag, ang = cv2.cartToPolar(fx, fy)
    b = (ang * np.float32(8 / (2 * np.pi)) + np.float32(0.5)).astype(np.int64) % 8
    h, w = fd.shape
    ch, cw = h // rows, w // cols
    out = np.zeros((rows, cols, N_CHANNELS), np.float64)
    for r in range(rows):
        for c in range(cols):
            win = np.s_[r * ch : (r + 1) * ch, c * cw : (c + 1) * cw]
            out[r, c, :3] = fx[win].mean(), fy[win].mean(), mag[win].mean()
            out[r, c, 3:11] = np.bincount(b[win].ravel(), weights=mag[win].ravel(), minlength=8) / (ch * cw)
            out[r, c, 11] = fd[win].mean() / 255
    return out


def _pairs_from(frames, ex):
    g = ex._setup(*frames[0].shape)
    small = [cv2.resize(f, (g.fw, g.fh), interpolation=cv2.INTER_AREA) for f in frames]
    return g, [(ex._dis.calc(a, b, None), b, a) for a, b in itertools.pairwise(small)]


@pytest.mark.parametrize("gate", [4.0, 2.5, 0.0])
def test_sparse_reduction_equals_the_full_map_reference_on_ped2(ped2, gate):
    import av

    ex = FlowFeatureExtractor(EdgeConfig(flow_gate=gate))
    with av.open(str(ped2 / "test" / "Test004.mp4")) as c:
        frames = [f.to_ndarray(format="gray") for f in itertools.islice(c.decode(video=0), 0, 40, 4)]
    g, pairs = _pairs_from(frames, ex)
    moving = 0
    for flow, cur, prev in pairs:
        got = ex.reduce(flow.copy(), cur, prev, g)
        want = reference_reduce(flow, cur, prev, 12, 18, gate, g.sx, g.sy)
        assert got.dtype == np.float32 and got.shape == want.shape
        assert np.allclose(got, want, rtol=1e-5, atol=1e-5), np.abs(got - want).max()
        moving += want[..., MAG].any()
    assert moving == len(pairs)  # real motion in every pair, so the comparison is not of zeros


def test_sparse_reduction_equals_the_reference_on_synthetic_motion_and_none():
    ex = FlowFeatureExtractor(EdgeConfig(grid_rows=6, grid_cols=9))
    bg, patch = texture(seed=10), texture(50, 70, seed=11)
    frames = [bg.copy() for _ in range(4)]
    for t, f in enumerate(frames[:3]):
        f[60 + 5 * t : 110 + 5 * t, 100 - 4 * t : 170 - 4 * t] = patch  # down and left
    g, pairs = _pairs_from([*frames, bg.copy()], ex)
    for flow, cur, prev in pairs:  # the last pair has no motion: all pixels gated out
        got = ex.reduce(flow.copy(), cur, prev, g)
        want = reference_reduce(flow, cur, prev, 6, 9, 4.0, g.sx, g.sy)
        assert np.allclose(got, want, rtol=1e-5, atol=1e-5), np.abs(got - want).max()
    assert not got[..., :-1].any()
