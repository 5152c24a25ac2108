"""Video sources for the edge: files, streams and devices through OpenCV/FFmpeg."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np


class Counters(Protocol):
    read: int
    corrupt: int


class SourceError(RuntimeError):
    """A video source that cannot be opened or read."""


def open_source(source: str) -> cv2.VideoCapture:
    if source.isdigit():
        cap = cv2.VideoCapture(int(source))
    else:
        if "://" not in source and not Path(source).is_file():
            raise SourceError(f"video file not found: {source}")
        cap = cv2.VideoCapture(source)
    if not cap.isOpened():
        raise SourceError(f"cannot open video source: {source}")
    return cap


def frames(cap: cv2.VideoCapture, default_fps: float, stats: Counters) -> Iterator[tuple[float, np.ndarray]]:
    """Yield (position_ms, gray frame); position from the container when it has one."""
    fps = cap.get(cv2.CAP_PROP_FPS) or default_fps
    if not 0 < fps < 1000:
        fps = default_fps
    i = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            return
        stats.read += 1
        if frame is None or frame.size == 0:
            stats.corrupt += 1
            continue
        gray = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        yield i * 1000.0 / fps, gray
        i += 1
