"""A real RTSP stream: a loopback RTSP server (aio-rtsp-toolkit, a test-only dependency) plays a Ped2
clip at its native rate over RTSP/TCP; the edge reads it, computes the same features as from the file,
and when the server ends the session, reconnects and marks the gap."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from edge_fakes import FakeProducer

from vad.config import load_config
from vad.edge.clips import clip_features
from vad.edge.producer import run_cameras
from vad.schema import decode, wire_values

_SERVER = """
import asyncio, sys
import aio_rtsp_toolkit.server as s
asyncio.run(s.serve(sys.argv[1], "127.0.0.1", int(sys.argv[2])))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def rtsp_dir(ped2):
    """Serves ped2/test over RTSP on a loopback port; stopped after the test."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVER, str(ped2 / "test"), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert proc.poll() is None, "RTSP test server exited at start"
                time.sleep(0.1)
        else:
            pytest.fail("RTSP test server did not listen within 15 s")
        yield f"rtsp://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.mark.timeout(90)
def test_rtsp_stream_gives_the_file_features_and_reconnects_when_the_session_ends(rtsp_dir, ped2):
    # Test006 has 180 frames at 10 fps: the server ends its session after ~18 s, the edge reconnects
    # (a stream always does) and the server plays the clip again from its start.
    cfg = load_config(env={"VAD_EDGE__PROGRESS": "false"})
    settings = cfg.edge.settings_for(None).model_copy(
        update={"reconnect_initial_s": 0.1, "reconnect_attempts": 5, "read_timeout_s": 10}
    )
    p = FakeProducer()
    (w,) = run_cameras(cfg, [("rtsp-cam", f"{rtsp_dir}/Test006.mp4", settings)], limit=190, producer=p)
    assert w.error is None, w.error
    recs = [decode(v) for *_, v, _ in p.records]
    assert w.stats.reconnects >= 1
    assert [r.frame_index for r in recs] == list(range(190))
    gaps = [i for i, r in enumerate(recs) if r.gap]
    n = 180  # frames in Test006
    assert gaps and n - 5 <= gaps[0] <= n + 5, gaps  # the first gap is where the session ended
    ts = [r.ts_ms for r in recs]
    assert ts == sorted(ts) and ts[-1] - ts[0] >= 15_000  # live: paced by the server, in event time
    # Same H.264 bitstream, so the same decoded frames and features as the file, in order. Under load
    # this test server now and then delivers a frame twice or late (its features, and the next frame's
    # flow, then differ), so the records are aligned to the file's frames and counted where they match
    # exactly. Seen in full `make test` runs on this 2-core machine: 124, 101, 70 and 42 of 180 matched
    # (57, 79, 110 and 139 extra), against 180 of 180 when this test ran alone, also beside three
    # CPU-bound processes (what slows the server in a full run was not found). A wrong decode or
    # feature path matches none: no two of the clip's grids within 10 frames of each other are equal
    # at this tolerance, and only one is all zero (not counted), so ten exact matches are decisive
    # while leaving room for a slow server. The search looks 10 frames ahead so one skipped frame does
    # not lose the alignment.
    offline = [wire_values(g, cfg.edge.wire_precision) for g in clip_features(ped2 / "test" / "Test006.mp4", cfg.edge)]
    assert len(offline) == n
    matched, extra, j, path = 0, 0, 0, []
    for r in recs[: gaps[0]]:
        hit = next((k for k in range(j, min(j + 10, n)) if np.allclose(r.features, offline[k], atol=1e-4)), None)
        if hit is None:
            extra += 1
            path.append(f"x{r.ts_ms - ts[0]}")
        else:
            matched, j = matched + bool(np.any(offline[hit])), hit + 1
            path.append(str(hit))
    # On failure the path says what the stream gave: the file frame each record matched, or x and
    # its event time (ms from the first) where it matched none.
    assert matched >= 10, f"{matched} matched, {extra} extra, stats {w.stats}: {' '.join(path)}"
