import logging

import cv2
import numpy as np
import pytest
from edge_fakes import FakeCapture, FakeOpener, FakeProducer, edge_config, texture

from vad.config import EdgeConfig
from vad.edge.blind import BlindWatch, contrast
from vad.edge.producer import run_cameras

DEFAULTS = EdgeConfig()


def flat(level=20, noise=1.0, seed=0, h=240, w=360):
    """A covered lens: one grey level and the sensor's noise."""
    rng = np.random.default_rng(seed)
    return np.clip(level + rng.normal(0, noise, (h, w)), 0, 255).astype(np.uint8)


def feed(watch, frames, t0_ms=0, step_ms=100):
    return [watch.update(f, t0_ms + i * step_ms) for i, f in enumerate(frames)]


def test_a_textured_picture_has_contrast_and_a_covered_one_has_none():
    assert contrast(texture()) > 3 * DEFAULTS.blind_contrast  # the fakes' blurred noise: about 10.6
    assert contrast(flat(noise=1.0)) < DEFAULTS.blind_contrast
    assert contrast(np.zeros((240, 360), np.uint8)) == 0.0


def test_blind_only_after_the_whole_delay_of_flat_frames_and_seeing_at_the_first_textured_one():
    w = BlindWatch(after_s=2.0, min_contrast=4.0)
    states = feed(w, [flat(seed=i) for i in range(21)])  # 0 .. 2,000 ms
    assert states[:20] == [False] * 20 and states[20] is True
    assert w.changed and w.episodes == 1 and w.frames == 1
    feed(w, [flat(seed=i) for i in range(3)], t0_ms=2100)
    assert w.blind and not w.changed and w.frames == 4 and w.episodes == 1
    assert w.update(texture(), 2400) is False
    assert w.changed and w.episodes == 1 and w.frames == 4


def test_a_textured_frame_within_the_delay_starts_the_count_again():
    w = BlindWatch(after_s=1.0, min_contrast=4.0)
    frames = [flat(seed=i) for i in range(8)] + [texture()] + [flat(seed=i) for i in range(10)]
    states = feed(w, frames)
    assert not any(states)  # never 1 s of flat frames in a row: 0.7 s, then 0.9 s
    assert w.update(flat(), 1900) is True  # 1 s after the first flat frame of the second run
    assert w.episodes == 1


def test_each_time_the_camera_goes_blind_is_an_episode():
    w = BlindWatch(after_s=0.5, min_contrast=4.0)
    t = 0
    for _ in range(3):
        for f in [flat(seed=i) for i in range(6)] + [texture()]:
            w.update(f, t)
            t += 100
    assert w.episodes == 3 and w.frames == 3 and not w.blind


def test_a_clock_that_goes_back_starts_the_count_again():
    w = BlindWatch(after_s=1.0, min_contrast=4.0)
    feed(w, [flat(seed=i) for i in range(10)], t0_ms=50_000)  # 0.9 s flat
    assert w.update(flat(), 1_000) is False  # a reconnect re-anchored the stream's clock
    assert w.update(flat(), 1_999) is False
    assert w.update(flat(), 2_000) is True


@pytest.mark.parametrize("clip", ["train/Train001.mp4", "test/Test001.mp4"])
def test_real_video_is_far_from_blind(ped2, clip):
    cap = cv2.VideoCapture(str(ped2 / clip))
    try:
        values = []
        while len(values) < 60:
            ok, bgr = cap.read()
            if not ok:
                break
            values.append(contrast(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)))
    finally:
        cap.release()
    assert len(values) == 60
    assert min(values) > 5 * DEFAULTS.blind_contrast


def _covered_camera(cover, blind_after_s):
    cfg = edge_config()
    settings = cfg.edge.settings_for(None).model_copy(update={"blind_after_s": blind_after_s})
    producer = FakeProducer()
    opener = FakeOpener(FakeCapture([70], cover=cover))
    (w,) = run_cameras(cfg, [("cam-1", "clip.mp4", settings)], None, producer, opener)
    return w, producer


def test_the_producer_says_once_when_a_camera_goes_blind_and_once_when_it_sees_again(caplog):
    # 10 fps: frames 20-59 covered (2.0-5.9 s), blind from 4.0 s (frame 40) to the end of the cover.
    with caplog.at_level(logging.WARNING, logger="vad.edge.producer"):
        w, producer = _covered_camera(range(20, 60), 2.0)
    st = w.stats
    assert w.error is None and st.sampled == 70
    assert (st.blind_episodes, st.blind_frames, st.blind) == (1, 20, False)
    said = [r.getMessage() for r in caplog.records if "cam-1" in r.getMessage()]
    assert len([m for m in said if "cannot see" in m]) == 1
    assert len([m for m in said if "sees again" in m]) == 1
    assert len(producer.records) == 70  # a blind camera's records still go out: the job's windows go on


def test_a_cover_shorter_than_the_delay_or_no_check_is_no_blind_camera():
    w, _ = _covered_camera(range(20, 39), 2.0)  # 1.8 s covered
    assert (w.stats.blind_episodes, w.stats.blind_frames) == (0, 0)
    w, _ = _covered_camera(range(20, 60), None)
    assert (w.stats.blind_episodes, w.stats.blind_frames) == (0, 0)
