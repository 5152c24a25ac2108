"""One camera's sampled frames: sampling, event time, realtime pacing, reconnect with backoff, gaps.

Event time (``ts_ms``) is the frame's presentation time relative to the first frame of the
connection, anchored to the wall clock when that connection started; after a reconnect the anchor
is taken again (a stream's clock may restart at zero). Event time never goes backwards per camera.

A frame following lost frames carries ``gap=True`` (schema FLAG_GAP) so the job resets that
camera's window: after a reconnect, after corrupt frames, and (in the producer) after queue drops
and delivery failures; the producer flags the first record of a stream too (an edge restart).

Across processes event time is the wall clock only for live sources and ``--realtime`` files: a
restarted edge's frames come after the old ones'. A backfilled file runs ahead of the wall clock (a
minute of video read in seconds), so an edge restarted within that minute sends event times before
its previous stream's last; the job takes that stream's first record (GAP) as a new stream anyway.

The first open is not retried: a wrong path, URL or device fails at start with a clear error.
Reconnecting applies to streams and devices (``reconnect: auto``) once they have delivered frames.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from vad.config import EdgeSettings
from vad.edge.sources import Capture, CorruptFrame, SourceError, open_capture, redact, source_kind
from vad.edge.stats import CameraStats

log = logging.getLogger(__name__)


@dataclass
class Sampled:
    gray: np.ndarray
    ts_ms: int
    gap: bool
    # The frame's position among all frames the source delivered (corrupt ones included, sampled
    # out or not): what frame-level labels of a file count in.
    position: int
    # ms since the previous sampled frame in the source's presentation times (None for a connection's
    # first): unlike ts_ms, never moved by re-anchoring event time after a reconnect.
    step_ms: float | None = None


Opener = Callable[[str, EdgeSettings], Capture]


class CameraStream:
    def __init__(
        self,
        source: str,
        cfg: EdgeSettings,
        stats: CameraStats,
        stop: threading.Event | None = None,
        opener: Opener = open_capture,
        clock: Callable[[], float] = time.time,
    ):
        self.source, self.cfg, self.stats = source, cfg, stats
        self.stop = stop or threading.Event()
        self._opener, self._clock = opener, clock
        self.kind = source_kind(source)
        self.live = cfg.reconnect == "always" or (cfg.reconnect == "auto" and self.kind != "file")
        self.cap: Capture = opener(source, cfg)  # raises SourceError: fail fast on a bad source
        self._last_ts = -1
        self._position = -1

    @property
    def delivered(self) -> int:
        """Frames the source has delivered so far, corrupt ones included, sampled out or not."""
        return self._position + 1

    @property
    def frame_count(self) -> int | None:
        return None if self.live else self.cap.frame_count

    def __iter__(self) -> Iterator[Sampled]:
        gap = False
        try:
            while not self.stop.is_set():
                gap = yield from self._connection(gap)
                self.cap.close()
                if self.stop.is_set() or not self.live:
                    return
                gap = True
                self.stats.reconnects += 1
                self.cap = self._reconnect()
        finally:
            self.cap.close()

    def _connection(self, gap: bool) -> Iterator[Sampled]:
        """Frames of one connection; returns whether frames were lost at its end (always for live)."""
        cfg = self.cfg
        fps = self.cap.fps if self.cap.fps and 0 < self.cap.fps < 1000 else cfg.fps
        period_ms = 1000.0 / fps
        keep_ms = 1000.0 / cfg.target_fps if cfg.target_fps else None
        anchor_ms, start_mono = self._clock() * 1000.0, time.monotonic()
        pts0: float | None = None
        last_rel, next_keep, n, bad = -period_ms, 0.0, -1, 0
        kept_rel: float | None = None
        while not self.stop.is_set():
            t0 = time.thread_time()
            try:
                frame = self.cap.read()
            except CorruptFrame as e:
                self._position += 1
                self.stats.corrupt += 1
                bad += 1
                gap = True  # the next frame's motion spans lost frames
                log.debug("corrupt frame from %s: %s", redact(self.source), e)
                if bad >= cfg.max_consecutive_corrupt:
                    log.warning("%s: %d corrupt frames in a row, treating as down", redact(self.source), bad)
                    return True
                continue
            finally:
                self.stats.add_time("decode", time.thread_time() - t0)
            if frame is None:
                return True
            bad = 0
            n += 1
            self._position += 1
            self.stats.read += 1
            # Relative presentation time; containers without timestamps (or going backwards) fall
            # back to counting frames at the nominal rate.
            if frame.pts_ms is not None and pts0 is None:
                pts0 = frame.pts_ms
            rel = frame.pts_ms - pts0 if frame.pts_ms is not None and pts0 is not None else None
            if rel is None or rel <= last_rel:
                rel = last_rel + period_ms
            last_rel = rel
            if n % cfg.sample_every:
                continue
            if keep_ms is not None:
                # Half a frame of slack: presentation times jitter (a 10 fps stream's frames at
                # 99.6, 200.3 ms ...), and a frame just short of its due time is the one to keep, not
                # to drop (without it, a source at the target rate lost frames: tests/unit/edge).
                if rel + period_ms * cfg.sample_every / 2 < next_keep:
                    continue
                next_keep = max(next_keep + keep_ms, rel + keep_ms / 2)
            if cfg.realtime and not self.live:
                delay = rel / 1000.0 - (time.monotonic() - start_mono)
                if delay > 0 and self.stop.wait(delay):
                    return False
            ts = max(int(anchor_ms + rel), self._last_ts + 1)
            self._last_ts = ts
            self.stats.sampled += 1
            step, kept_rel = (None if kept_rel is None else rel - kept_rel), rel
            yield Sampled(frame.gray, ts, gap, self._position, step)
            gap = False
        return False

    def _reconnect(self) -> Capture:
        cfg = self.cfg
        delay = cfg.reconnect_initial_s
        for attempt in range(1, cfg.reconnect_attempts + 1):
            log.warning(
                "%s: stream lost, reconnect %d/%d in %.1fs", redact(self.source), attempt, cfg.reconnect_attempts, delay
            )
            if self.stop.wait(delay):
                break
            try:
                return self._opener(self.source, cfg)
            except SourceError as e:
                log.warning("%s", e)
                delay = min(max(delay * 2, 0.1), cfg.reconnect_max_s)
        if self.stop.is_set():
            raise _Stopped
        raise SourceError(f"{redact(self.source)}: gave up after {cfg.reconnect_attempts} reconnect attempts")


class _Stopped(Exception):
    """Internal: stop requested while waiting to reconnect."""


def sampled_frames(stream: CameraStream) -> Iterator[Sampled]:
    """Iterate a stream; a stop during a reconnect wait ends the iteration quietly."""
    try:
        yield from stream
    except _Stopped:
        return
