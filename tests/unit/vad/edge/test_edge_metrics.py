"""The edge's Prometheus endpoint: each camera's counters as the collector reads them, served on
loopback while the cameras run, the port freed when they end, a port in use refused at start."""

from __future__ import annotations

import socket
import threading
import time
import urllib.request

import pytest
from edge_fakes import LIVE_ONCE, FakeCapture, FakeOpener, FakeProducer, edge_config, texture
from loopback import free_port
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from vad.config import EdgeSettings
from vad.edge.metrics import EdgeCollector
from vad.edge.producer import run_cameras
from vad.edge.stats import STAGES


def samples(text: str) -> dict:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }


def test_every_camera_counter_is_exported_and_lag_only_for_paced_cameras():
    cfg = edge_config()
    opener = FakeOpener(FakeCapture([12, "corrupt", 3]), FakeCapture([20], fps=100, bg=texture(120, 180), pan=3))
    cams = [("file-1", "clip.mp4", cfg.edge.settings_for(None)), ("live-1", "rtsp://cam/x", EdgeSettings(**LIVE_ONCE))]
    workers = run_cameras(cfg, cams, None, FakeProducer(fail_every=5), opener)
    registry = CollectorRegistry()
    registry.register(EdgeCollector(workers))
    got = samples(generate_latest(registry).decode())
    for w in workers:
        cam = (("camera", w.camera_id),)
        st = w.stats
        assert got[("vad_edge_frames_read_total", cam)] == st.read > 0
        assert got[("vad_edge_records_sent_total", cam)] == st.sent > 0
        assert got[("vad_edge_records_failed_total", cam)] == st.failed
        assert got[("vad_edge_frames_corrupt_total", cam)] == st.corrupt
        assert got[("vad_edge_camera_motion_frames_total", cam)] == st.camera_motion
        assert got[("vad_edge_blind_frames_total", cam)] == st.blind_frames
        assert got[("vad_edge_blind_episodes_total", cam)] == st.blind_episodes
        assert got[("vad_edge_blind", cam)] == float(st.blind)
        assert got[("vad_edge_camera_running", cam)] == 0  # both ended
        for stage in STAGES:
            assert got[("vad_edge_stage_cpu_seconds_total", (*cam, ("stage", stage)))] == st.stage_s[stage]
    assert got[("vad_edge_frames_corrupt_total", (("camera", "file-1"),))] == 1
    # The live camera pans (every frame but the first, which has no flow); the file's camera is still.
    assert got[("vad_edge_camera_motion_frames_total", (("camera", "live-1"),))] == workers[1].stats.sampled - 1
    assert got[("vad_edge_camera_motion_frames_total", (("camera", "file-1"),))] == 0
    assert sum(got[("vad_edge_records_failed_total", (("camera", w.camera_id),))] for w in workers) > 0
    live, file = (("camera", "live-1"),), (("camera", "file-1"),)
    assert got[("vad_edge_send_lag_seconds", live)] == workers[1].stats.lag.last_ms / 1000
    assert got[("vad_edge_behind", live)] == 0 and got[("vad_edge_behind_episodes_total", live)] == 0
    assert ("vad_edge_send_lag_seconds", file) not in got  # a backfilled file has no pace to keep


def _scrape(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as r:
        return samples(r.read().decode())


def test_the_endpoint_serves_a_running_camera_and_frees_its_port_at_the_end():
    port, stop = free_port(), threading.Event()
    cfg = edge_config(metrics_port=port)
    cap = FakeCapture([100_000], fps=100, bg=texture(120, 180), delay=lambda i: 0.01)
    done: list = []

    def run():
        cams = [("cam-1", "rtsp://cam/x", EdgeSettings(**LIVE_ONCE))]
        done.extend(run_cameras(cfg, cams, None, FakeProducer(), FakeOpener(cap), stop))

    t = threading.Thread(target=run)
    t.start()
    try:
        cam, got = (("camera", "cam-1"),), {}
        for _ in range(100):  # bounded: 10 s at most
            time.sleep(0.1)
            try:
                got = _scrape(f"http://127.0.0.1:{port}/metrics")
            except OSError:
                continue
            if got.get(("vad_edge_records_sent_total", cam), 0) >= 5:
                break
        assert got[("vad_edge_camera_running", cam)] == 1 and got[("vad_edge_records_sent_total", cam)] >= 5
        assert got[("vad_edge_behind", cam)] == 0
        assert ("process_cpu_seconds_total", ()) in got
    finally:
        stop.set()
        t.join(30)
    assert not t.is_alive() and done[0].stats.sent > 0
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_a_port_in_use_is_refused_at_start_and_the_sources_are_closed():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        cfg = edge_config(metrics_port=busy.getsockname()[1])
        cap = FakeCapture([10])
        with pytest.raises(RuntimeError, match=r"edge\.metrics_port"):
            run_cameras(
                cfg, [("cam-1", "rtsp://cam/x", EdgeSettings(**LIVE_ONCE))], None, FakeProducer(), FakeOpener(cap)
            )
        assert cap.closed
