"""Test doubles for the edge: a scripted video source and an in-memory Kafka producer."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np

from vad.config import load_config
from vad.edge.sources import CorruptFrame, Frame, SourceError

# A live camera that reconnects on test time scales, up to three times.
LIVE = dict(reconnect="always", reconnect_initial_s=0.01, reconnect_max_s=0.02, reconnect_attempts=3)
# A live camera whose stream ends for good with its script, every frame analysed.
LIVE_ONCE = {**LIVE, "reconnect_attempts": 0, "target_fps": None}


def edge_config(**edge):
    """The config with these edge fields set as their environment overrides would, no progress bars."""
    env = {f"VAD_EDGE__{k.upper()}": str(v) for k, v in edge.items()}
    return load_config(env={**env, "VAD_EDGE__PROGRESS": "false"})


def texture(h=240, w=360, seed=0):
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(0, 255, (h, w), dtype=np.uint8), (0, 0), 2)


class FakeCapture:
    """Plays a script: an int n = n moving frames, "corrupt" = one undecodable frame, "drop" = the
    connection ends (read returns None). Frames are a still texture with a patch of another moving
    right by 2 px per frame from the centre, over the middle third of the rows: an object (the whole
    texture moving would be the camera's own motion, which the edge subtracts; ``pan=n`` adds that,
    n px a frame). ``delay(i)`` is how long reading frame i takes (a live camera read more slowly
    than it delivers: its presentation times still advance by the frame period). Frames i in
    ``cover`` = range(a, b) are one grey level: the lens covered."""

    def __init__(
        self, script, fps=10.0, pts=True, start_pts_ms=0.0, bg=None, jitter_ms=0.0, delay=None, pan=0, cover=range(0)
    ):
        self.fps, self.frame_count, self.jitter_ms, self.delay, self.pan = fps, None, jitter_ms, delay, pan
        self.cover = cover
        self._items = list(script)
        self._bg = texture() if bg is None else bg
        h, w = self._bg.shape
        self._patch = texture(h // 3, w // 3, seed=99)
        self._i, self._pts, self._t = 0, pts, start_pts_ms
        self.closed = False

    def read(self):
        while self._items:
            head = self._items[0]
            if head == "corrupt":
                self._items.pop(0)
                raise CorruptFrame("scripted")
            if head == "drop":
                self._items.pop(0)
                return None
            if head == 0:
                self._items.pop(0)
                continue
            self._items[0] = head - 1
            if self.delay is not None:
                time.sleep(self.delay(self._i))
            g = self._bg.copy()
            ph, pw = self._patch.shape
            x = ((g.shape[1] - pw) // 2 + 2 * self._i) % (g.shape[1] - pw)  # from the centre
            g[ph : 2 * ph, x : x + pw] = self._patch
            if self.pan:  # the camera pans right: the scene moves left
                g = np.roll(g, -self.pan * self._i, axis=1)
            if self._i in self.cover:
                g = np.full_like(g, 12)
            # Jittered presentation times: the first frame a little late, the next a little early, ...
            pts = self._t + (-self.jitter_ms if self._i % 2 else self.jitter_ms) if self._pts else None
            self._i += 1
            self._t += 1000.0 / self.fps
            return Frame(g, pts)
        return None

    def close(self):
        self.closed = True


class FakeOpener:
    """Hands out one FakeCapture per (re)connection; an Exception instance in the list fails that open."""

    def __init__(self, *connections):
        self.connections = list(connections)
        self.opens = 0

    def __call__(self, source, cfg):
        self.opens += 1
        if not self.connections:
            raise SourceError(f"cannot open video source: {source}")
        c = self.connections.pop(0)
        if isinstance(c, Exception):
            raise c
        return c


class _Future:
    def __init__(self, ok: bool):
        self.ok = ok

    def add_callback(self, fn):
        if self.ok:
            fn(None)
        return self

    def add_errback(self, fn):
        if not self.ok:
            fn(RuntimeError("scripted delivery failure"))
        return self


class FakeProducer:
    """Collects sent records; ``delay_s`` slows every send (a congested broker); ``fail_every``
    makes every n-th delivery fail."""

    def __init__(self, delay_s=0.0, fail_every=0):
        self.records, self.delay_s, self.fail_every = [], delay_s, fail_every
        self._lock = threading.Lock()
        self.flushed = self.closed = False

    def send(self, topic, key=None, value=None, timestamp_ms=None):
        if self.delay_s:
            time.sleep(self.delay_s)
        with self._lock:
            self.records.append((topic, key, value, timestamp_ms))
            n = len(self.records)
        return _Future(not (self.fail_every and n % self.fail_every == 0))

    def flush(self, timeout=None):
        self.flushed = True

    def close(self, timeout=None):
        self.closed = True
