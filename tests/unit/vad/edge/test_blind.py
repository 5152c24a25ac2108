import logging

import numpy as np
import pytest
from edge_fakes import FakeCapture, FakeOpener, FakeProducer, edge_config, texture
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from vad.config import EdgeConfig, load_config
from vad.edge.blind import CLEAR_FACTOR, BlindWatch, blind_watch, contrast
from vad.edge.metrics import EdgeCollector
from vad.edge.producer import run_cameras
from vad.edge.sources import open_capture

DEFAULTS = EdgeConfig()


def flat(level=20, noise=1.0, seed=0, h=240, w=360):
    """A covered lens: one grey level and the sensor's noise."""
    rng = np.random.default_rng(seed)
    return np.clip(level + rng.normal(0, noise, (h, w)), 0, 255).astype(np.uint8)


def stripes(spread, level=100):
    """Columns 8 px wide at level +- spread: over the lattice of every 8th pixel, exactly that spread."""
    col = np.where((np.arange(384) // 8) % 2 == 0, level + spread, level - spread)
    return np.tile(col, (240, 1)).astype(np.uint8)


def feed(watch, frames, t0_ms=0, step_ms=100):
    return [watch.update(f, t0_ms + i * step_ms) for i, f in enumerate(frames)]


def test_a_textured_picture_has_contrast_and_a_covered_one_has_none():
    assert contrast(texture()) > 3 * DEFAULTS.blind_contrast  # the fakes' blurred noise: about 10.6
    assert contrast(flat(noise=1.0)) < DEFAULTS.blind_contrast
    assert contrast(np.zeros((240, 360), np.uint8)) == 0.0
    assert contrast(stripes(5)) == pytest.approx(5.0)
    # Only the lattice counts: stripes 4 px wide put every lattice point on one level.
    narrow = np.tile(np.where((np.arange(384) // 4) % 2 == 0, 150, 50), (240, 1)).astype(np.uint8)
    assert contrast(narrow) == 0.0


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


def test_a_blind_camera_sees_again_only_at_twice_the_bound():
    w = BlindWatch(after_s=0.5, min_contrast=4.0)
    feed(w, [stripes(2)] * 6)
    assert w.blind
    # Just over the bound: a dim scene hovering there stays one episode, not one every half second.
    assert w.update(stripes(5), 600) is True and not w.changed
    assert w.update(stripes(2), 700) is True
    assert w.update(stripes(CLEAR_FACTOR * 4 + 1), 800) is False and w.changed
    # Seeing again, the bound is the bound: a frame at 5 is no flat frame.
    feed(w, [stripes(5)] * 10, t0_ms=900)
    assert not w.blind and w.episodes == 1


def test_frames_lost_between_two_flat_frames_start_the_count_again():
    w = BlindWatch(after_s=1.0, min_contrast=4.0)
    feed(w, [flat(seed=i) for i in range(10)])  # 0 .. 900 ms
    assert w.update(flat(), 30_000, gap=True) is False  # a reconnect 29 s later: not 30 s of flat frames
    assert w.update(flat(), 30_999) is False
    assert w.update(flat(), 31_000) is True


@pytest.mark.parametrize("clip", ["train/Train001.mp4", "test/Test001.mp4"])
def test_real_video_through_the_edges_decoder_is_far_from_blind(ped2, clip):
    cap = open_capture(str(ped2 / clip), DEFAULTS.settings_for(None))
    try:
        values = [contrast(cap.read().gray) for _ in range(60)]
    finally:
        cap.close()
    assert min(values) > 5 * DEFAULTS.blind_contrast


def test_the_check_is_per_camera_and_null_turns_it_off():
    cfg = load_config(env={"VAD_CAMERAS__DIM__BLIND_CONTRAST": "1.5", "VAD_CAMERAS__OFF__BLIND_AFTER_S": "null"})
    assert blind_watch(cfg.edge.settings_for(cfg.cameras["dim"])).min_contrast == 1.5
    assert blind_watch(cfg.edge.settings_for(cfg.cameras["off"])) is None
    assert blind_watch(cfg.edge.settings_for(None)).after_ms == 10_000


def _run(cameras, covers):
    """Cameras (id, blind_after_s) of 70 frames at 10 fps, each covered over its range."""
    cfg = edge_config()
    base = cfg.edge.settings_for(None)
    producer = FakeProducer()
    opener = FakeOpener(*(FakeCapture([70], cover=c) for c in covers))
    specs = [(cam, "clip.mp4", base.model_copy(update={"blind_after_s": after})) for cam, after in cameras]
    workers = run_cameras(cfg, specs, None, producer, opener)
    registry = CollectorRegistry()
    registry.register(EdgeCollector(workers))
    scraped = {
        (s.name, s.labels.get("camera")): s.value
        for f in text_string_to_metric_families(generate_latest(registry).decode())
        for s in f.samples
    }
    return workers, producer, scraped


def test_the_producer_says_once_when_a_camera_goes_blind_and_once_when_it_sees_again(caplog):
    # 10 fps: frames 20-59 covered (2.0-5.9 s), blind from 4.0 s (frame 40) to the end of the cover.
    with caplog.at_level(logging.WARNING, logger="vad.edge.producer"):
        (w,), producer, scraped = _run([("cam-1", 2.0)], [range(20, 60)])
    st = w.stats
    assert w.error is None and st.sampled == 70
    assert (st.blind_episodes, st.blind_frames, st.blind) == (1, 20, False)
    said = [r.getMessage() for r in caplog.records if "cam-1" in r.getMessage()]
    assert len([m for m in said if "cannot see" in m and "flat for 2 s" in m]) == 1
    assert len([m for m in said if "sees again" in m]) == 1
    assert len(producer.records) == 70  # a blind camera's records still go out: the job's windows go on
    assert scraped[("vad_edge_blind", "cam-1")] == 0


def test_the_metrics_say_which_camera_is_blind_now_and_leave_out_those_not_checked():
    cams = [("covered", 1.0), ("short", 2.0), ("unchecked", None)]
    workers, _, scraped = _run(cams, [range(30, 70), range(20, 39), range(0, 70)])
    covered, short, unchecked = (w.stats for w in workers)
    # Covered from 3.0 s to the end: blind from 4.0 s (frame 40), 30 frames; 1.8 s is too short.
    assert (covered.blind, covered.blind_frames, covered.blind_episodes) == (True, 30, 1)
    assert (short.blind, short.blind_frames, short.blind_episodes) == (False, 0, 0)
    assert unchecked.blind is None and unchecked.blind_frames == 0
    assert scraped[("vad_edge_blind", "covered")] == 1 and scraped[("vad_edge_blind", "short")] == 0
    assert scraped[("vad_edge_blind_frames_total", "covered")] == 30
    assert scraped[("vad_edge_blind_episodes_total", "covered")] == 1
    assert ("vad_edge_blind", "unchecked") not in scraped
    assert scraped[("vad_edge_blind_frames_total", "unchecked")] == 0
