"""Whole-clip feature extraction, for training and offline evaluation: the producer's own code path
(same decoder, sampling and extractor, reset after a gap the same way), so offline and streaming
features are identical."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from vad.config import EdgeSettings
from vad.edge.features import make_extractor
from vad.edge.stats import CameraStats
from vad.edge.stream import CameraStream, sampled_frames

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".m4v")


class ClipSamples(NamedTuple):
    grids: np.ndarray | None  # float32 [n, rows, cols, C] of the sampled frames (None: not computed)
    positions: np.ndarray  # int64 [n]: each sampled frame's position among the clip's frames
    frames: int  # frames the clip delivered, sampled or not (what frame-level labels count)
    # int64 [n]: each sampled frame's event time in ms from the first one's (the detector's clock)
    ts_ms: np.ndarray | None = None
    # (width, height) of the decoded frames: the pixels the features' speeds are measured in
    size: tuple[int, int] | None = None


def clip_samples(path: str | Path, cfg: EdgeSettings, features: bool = True) -> ClipSamples:
    """A clip's sampled frames: their feature grids (unless ``features`` is False: decode only) and
    where they sit among all its frames, so scores of a sampled camera (``sample_every``,
    ``target_fps``) can be laid over per-frame labels."""
    # Offline: never pace, never reconnect (a clip is read once, as fast as possible).
    settings = EdgeSettings.model_validate(
        {**{k: getattr(cfg, k) for k in EdgeSettings.model_fields}, "realtime": False, "reconnect": "never"}
    )
    stream = CameraStream(str(path), settings, CameraStats())
    ex = make_extractor(settings) if features else None
    out, positions, ts, size = [], [], [], None
    for s in sampled_frames(stream):
        size = size or (s.gray.shape[1], s.gray.shape[0])
        if ex is not None:
            if s.gap:
                ex.reset()
            out.append(ex.process(s.gray, s.step_ms))
        positions.append(s.position)
        ts.append(s.ts_ms)
    if not positions:
        raise ValueError(f"no frames decoded from {path}")
    grids = np.stack(out).astype(np.float32) if ex is not None else None
    times = np.asarray(ts, np.int64)
    return ClipSamples(grids, np.asarray(positions, np.int64), stream.delivered, times - times[0], size)


def clip_features(path: str | Path, cfg: EdgeSettings) -> np.ndarray:
    """Feature grids of every sampled frame of a clip: float32 [n, rows, cols, C]."""
    return clip_samples(path, cfg).grids


def list_clips(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"not a folder: {folder}")
    clips = sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    if not clips:
        raise FileNotFoundError(f"no video clips ({', '.join(VIDEO_SUFFIXES)}) in {folder}")
    return clips
