"""Real FFmpeg sources: a stream served over loopback HTTP that is cut mid-way and comes back, a file
truncated mid-way, and the errors for bad sources and configs (through the `vad` command)."""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from edge_fakes import FakeProducer

from vad.config import EdgeSettings, load_config
from vad.edge.clips import clip_features
from vad.edge.producer import run_cameras
from vad.edge.stats import CameraStats
from vad.edge.stream import CameraStream, sampled_frames
from vad.schema import decode, wire_values

REPO = Path(__file__).resolve().parents[3]


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves one clip; the first response is cut after a third of the bytes (a dropped stream)."""

    data = b""
    requests = 0
    lock = threading.Lock()

    def do_GET(self):
        with _Handler.lock:
            _Handler.requests += 1
            first = _Handler.requests == 1
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(len(self.data)))
        self.end_headers()
        body = self.data[: len(self.data) // 3] if first else self.data
        try:
            self.wfile.write(body)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return
        if first:
            self.close_connection = True
            self.connection.shutdown(2)  # kill the connection mid-stream

    def log_message(self, *args):
        pass


@pytest.fixture
def http_clip(ped2):
    _Handler.data = (ped2 / "test" / "Test002.mp4").read_bytes()
    _Handler.requests = 0
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/Test002.mp4"
    finally:
        srv.shutdown()
        srv.server_close()
        t.join(5)


@pytest.mark.parametrize("decoder", ["pyav", "opencv"])
def test_http_stream_cut_mid_way_reconnects_and_marks_the_gap(http_clip, decoder):
    cfg = load_config(env={"VAD_EDGE__PROGRESS": "false"})
    settings = EdgeSettings(decoder=decoder, reconnect_initial_s=0.05, reconnect_attempts=3, read_timeout_s=5)
    p = FakeProducer()
    (w,) = run_cameras(cfg, [("http-cam", http_clip, settings)], limit=150, producer=p)
    assert w.error is None, w.error
    st = w.stats
    recs = [decode(v) for *_, v, _ in p.records]
    assert st.reconnects >= 1 and _Handler.requests >= 2
    assert recs[0].gap  # a stream's first record
    assert 0 < recs.index(next(r for r in recs[1:] if r.gap)) < 90  # the next gap comes after the cut
    assert st.sent == 150 and [r.frame_index for r in recs] == list(range(150))
    ts = [r.ts_ms for r in recs]
    assert ts == sorted(ts)


def test_file_truncated_mid_way_yields_its_frames_then_ends(ped2, tmp_path):
    data = (ped2 / "test" / "Test003.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    st = CameraStats()
    n = sum(1 for _ in sampled_frames(CameraStream(str(cut), EdgeSettings(), st)))
    assert 30 < n < 150 and st.reconnects == 0  # a file is not reconnected


def test_one_decode_thread_means_one_thread(ped2):
    # decode_threads: 1 (the default, and the bench's single-threaded figure) must not leave FFmpeg
    # its own default of a slice thread per core.
    from vad.edge.sources import open_capture

    cap = open_capture(str(ped2 / "test" / "Test001.mp4"), EdgeSettings())
    try:
        assert cap.read() is not None and cap._s.codec_context.thread_count == 1
    finally:
        cap.close()


def test_offline_clip_features_equal_the_producer_records(ped2):
    clip = ped2 / "test" / "Test001.mp4"
    cfg = load_config(env={"VAD_EDGE__PROGRESS": "false"})
    p = FakeProducer()
    run_cameras(cfg, [("c", str(clip), cfg.edge.settings_for(None))], limit=40, producer=p)
    streamed = np.stack([decode(v).features for *_, v, _ in p.records])
    # The edge sends float16 values by default: offline features rounded as the wire rounds them.
    exact = clip_features(clip, cfg.edge)[:40]
    offline = np.stack([wire_values(g, cfg.edge.wire_precision) for g in exact])
    assert cfg.edge.wire_precision == "float16" and not np.array_equal(offline, exact)
    assert np.array_equal(streamed, offline)


def _vad(*args, env=None, timeout=60):
    import os

    return subprocess.run(
        [sys.executable, "-m", "vadctl.cli", *args],
        cwd=REPO,
        env={**os.environ, "VAD_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:1", **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--camera", "c1", "--source", "/no/such/clip.mp4"], "video file not found: /no/such/clip.mp4"),
        (["--camera", "c1", "--source", "http://127.0.0.1:1/x.mp4"], "cannot open video source"),
        (["--camera", "bad id!", "--source", "x.mp4"], "bad_camera_id"),
        (["--camera", "cam\n", "--source", "x.mp4"], "bad_camera_id"),
        (["--camera", "a/../x", "--source", "x.mp4"], "bad_camera_id"),
        (["--all"], "no cameras configured"),
        (["--camera", "c1"], "has no source"),
    ],
)
def test_bad_sources_fail_fast_with_a_clear_error(args, message):
    r = _vad("produce", *args)
    assert r.returncode == 1 and message in r.stderr, r.stderr


def test_bad_camera_config_is_refused_with_the_field_path(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("cameras:\n  a: {source: x.mp4, flow_scale: 7}\n")
    r = _vad("--config", str(p), "produce", "--all")
    assert r.returncode == 2 and "cameras.a.flow_scale" in r.stderr
    p.write_text("cameras:\n  a: {source: x.mp4, mask: [[40, 1]]}\n")
    r = _vad("--config", str(p), "produce", "--all")
    assert r.returncode == 2 and "cameras.a.mask: cells [(40, 1)] outside the camera's 12x18 grid" in r.stderr
    p.write_text("edge:\n  cameras:\n    - {id: a, source: x.mp4}\n")
    r = _vad("--config", str(p), "produce", "--all")
    assert r.returncode == 2 and "edge.cameras: moved to the top-level `cameras` section" in r.stderr


def test_produce_all_needs_a_source_for_every_camera(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("cameras:\n  a: {source: x.mp4}\n  b: {sensitivity: 2}\n")
    r = _vad("--config", str(p), "produce", "--all")
    assert r.returncode == 1 and "these have no source: b" in r.stderr, r.stderr


def test_unreachable_broker_is_a_clear_error(ped2):
    r = _vad("produce", "--camera", "c1", "--source", str(ped2 / "test" / "Test001.mp4"), "--limit", "3")
    assert r.returncode == 1 and "cannot connect to Kafka at 127.0.0.1:1" in r.stderr, r.stderr
