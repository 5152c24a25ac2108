import cv2
import numpy as np
import pytest
from edge_fakes import texture

from vad.config import EdgeConfig
from vad.edge import camera_motion
from vad.edge.camera_motion import DEADBAND_PX, compensate, estimate
from vad.edge.features import FlowFeatureExtractor
from vad.schema import CHANNELS

MAG, DX, FG = CHANNELS.index("mag"), CHANNELS.index("dx"), CHANNELS.index("fg")


def field(*parts, h=120, w=180):
    """A flow field whose rows are split among (share, (dx, dy)) parts, top to bottom."""
    f = np.zeros((h, w, 2), np.float32)
    row = 0
    for share, v in parts:
        n = round(share * h)
        f[row : row + n] = v
        row += n
    return f


def test_a_still_field_or_noise_below_the_dead_band_is_no_camera_motion():
    assert estimate(np.zeros((120, 180, 2), np.float32)) is None
    assert estimate(field((1.0, (0.6 * DEADBAND_PX, 0.6 * DEADBAND_PX)))) is None
    assert estimate(np.zeros((0, 0, 2), np.float32)) is None


def test_a_shared_motion_is_the_cameras_and_the_flow_is_left_as_it_was():
    f = field((0.8, (1.5, -0.5)), (0.2, (0.0, 0.0)))
    f[::3] += 0.01 * np.arange(180, dtype=np.float32)[:, None]  # no two lattice values in order
    before = f.copy()
    assert estimate(f) == pytest.approx((1.5, -0.5), abs=0.02)
    assert np.array_equal(f, before)  # the medians are taken on copies
    # Objects over a third of the view do not move the estimate.
    assert estimate(field((0.35, (4.0, 0.0)), (0.65, (1.0, 0.0)))) == pytest.approx((1.0, 0.0))


def test_crowds_leave_the_median_at_rest():
    # Most of the lattice still: the median is (0, 0), under the dead band.
    assert estimate(field((0.3, (2.0, 0.0)), (0.3, (-2.0, 0.0)), (0.4, (0.0, 0.0)))) is None
    assert estimate(field((0.45, (3.0, 0.0)), (0.55, (0.0, 0.0)))) is None


def test_scattered_motion_past_the_dead_band_fails_the_agreement():
    spread = np.zeros((120, 180, 2), np.float32)
    spread[..., 0] = np.linspace(0.5, 3.0, 180)[None, :]  # median 1.75, about two fifths within 0.5 of it
    assert camera_motion.median_motion(spread)[0] == pytest.approx(1.75, abs=0.05)
    assert estimate(spread) is None


def test_an_agreement_below_the_minimum_leaves_the_flow_alone(monkeypatch):
    f = field((0.6, (1.0, 0.0)), (0.4, (-1.0, 0.0)))
    assert estimate(f) == pytest.approx((1.0, 0.0))
    monkeypatch.setattr(camera_motion, "AGREE_MIN", 0.7)
    assert estimate(f) is None
    prev = np.zeros((120, 180), np.uint8)
    out, aligned, moved = compensate(f, prev, prev)
    assert out is f and aligned is prev and not moved


def test_compensate_subtracts_it_and_moves_the_previous_frame_onto_the_current_one():
    f = field((0.7, (1.0, 2.0)), (0.3, (3.0, 2.0)))
    prev, cur = texture(120, 180, seed=3), texture(120, 180, seed=4)
    out, aligned, moved = compensate(f, prev, cur)
    assert moved and out.dtype == np.float32
    assert np.allclose(out[:84], 0.0) and np.allclose(out[84:], (2.0, 0.0))
    # The scene moved right by 1 and down by 2: so does the previous frame, borders aside.
    assert np.array_equal(aligned[10:-10, 10:-10], prev[8:-12, 9:-11])
    # What entered the view (the first column, the first two rows) has no past: the current frame's.
    assert np.array_equal(aligned[:, :1], cur[:, :1]) and np.array_equal(aligned[:2], cur[:2])
    _, left_up, _ = compensate(-f, prev, cur)
    assert np.array_equal(left_up[:, -1:], cur[:, -1:]) and np.array_equal(left_up[-2:], cur[-2:])


def scene(t, pan=(0, 0)):
    """A texture with a patch moving right by 4 px a frame; the camera pans by ``pan`` px a frame."""
    f = texture(seed=1)
    x = 120 + 4 * t
    f[90:150, x : x + 90] = texture(60, 90, seed=2)
    dx, dy = pan
    return np.roll(f, (dy * t, dx * t), axis=(0, 1))


def run(cfg, frames):
    ex = FlowFeatureExtractor(cfg)
    return [ex.process(f) for f in frames], ex


def test_a_still_camera_gets_exactly_the_features_it_had_without_compensation():
    frames = [scene(t) for t in range(6)]
    on, ex = run(EdgeConfig(), frames)
    off, _ = run(EdgeConfig(compensate_camera_motion=False), frames)
    assert all(np.array_equal(a, b) for a, b in zip(on, off, strict=True))
    assert on[-1][..., MAG].max() > 2.0 and ex.camera_motion_frames == 0  # the patch is seen, nothing corrected


def test_a_panning_camera_sees_the_object_and_not_the_background():
    frames = [scene(t, pan=(3, 1)) for t in range(6)]
    (*_, on), ex = run(EdgeConfig(), frames)
    (*_, off), _ = run(EdgeConfig(compensate_camera_motion=False), frames)
    assert ex.camera_motion_frames == 5
    rows, cols = np.indices(on.shape[:2])
    # The patch at t=5: x 140..230 + 15 px of pan, rows 90..150 + 5: cells well inside it.
    inside = (rows >= 5) & (rows <= 6) & (cols >= 9) & (cols <= 11)
    far = (rows <= 2) | (rows >= 10)
    assert np.median(off[far][:, MAG]) > 2.5  # without it the whole frame moves at the pan's speed
    assert np.median(on[far][:, MAG]) < 0.3
    # The frame difference too (measured: 0.005; 0.03 without moving the previous frame, 0.04 moved
    # the wrong way).
    assert np.median(on[far][:, FG]) < 0.015
    assert np.allclose(np.median(on[inside][:, DX]), 4.0, atol=1.0)  # relative to the scene


def _gray_frames(clip, n):
    cap = cv2.VideoCapture(str(clip))
    frames = []
    while len(frames) < n:
        ok, f = cap.read()
        assert ok
        frames.append(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY))
    cap.release()
    return frames


def test_on_real_video_a_still_camera_is_left_exactly_as_it_was(ped2):
    frames = _gray_frames(ped2 / "train" / "Train001.mp4", 40)
    on, ex = run(EdgeConfig(), frames)
    off, _ = run(EdgeConfig(compensate_camera_motion=False), frames)
    assert ex.camera_motion_frames == 0
    assert all(np.array_equal(a, b) for a, b in zip(on, off, strict=True))


def test_on_real_video_a_shaken_camera_looks_like_the_still_one(ped2):
    """Ped2's first training clip shaken by up to a pixel a frame, at random: with compensation the
    frame's total motion stays near the still camera's; without it, it is several times larger."""
    frames = _gray_frames(ped2 / "train" / "Train001.mp4", 40)
    rng = np.random.default_rng(0)
    shaken = []
    for f in frames:
        dx, dy = rng.uniform(-1, 1, 2)
        m = np.float32([[1, 0, dx], [0, 1, dy]])
        shaken.append(cv2.warpAffine(f, m, f.shape[::-1], borderMode=cv2.BORDER_REFLECT))

    def total(cfg, fr):
        return np.median(np.stack(run(cfg, fr)[0])[1:, ..., MAG].sum(axis=(1, 2)))

    ref = total(EdgeConfig(), frames)
    on = total(EdgeConfig(), shaken)
    off = total(EdgeConfig(compensate_camera_motion=False), shaken)
    assert off > 2.5 * ref  # measured: 3.3x
    assert on < 1.4 * ref  # measured: 1.2x
