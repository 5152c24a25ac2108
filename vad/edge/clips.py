"""Whole-clip feature extraction, for training and offline evaluation: the producer's own code path
(same decoder, sampling and extractor, reset after a gap the same way), so offline and streaming
features are identical."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vad.config import EdgeSettings
from vad.edge.features import make_extractor
from vad.edge.stats import CameraStats
from vad.edge.stream import CameraStream, sampled_frames

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".m4v")


def clip_features(path: str | Path, cfg: EdgeSettings) -> np.ndarray:
    """Feature grids of every sampled frame of a clip: float32 [n, rows, cols, C]."""
    # Offline: never pace, never reconnect (a clip is read once, as fast as possible).
    settings = EdgeSettings.model_validate(
        {**{k: getattr(cfg, k) for k in EdgeSettings.model_fields}, "realtime": False, "reconnect": "never"}
    )
    stream = CameraStream(str(path), settings, CameraStats())
    ex = make_extractor(settings)
    out = []
    for s in sampled_frames(stream):
        if s.gap:
            ex.reset()
        out.append(ex.process(s.gray))
    if not out:
        raise ValueError(f"no frames decoded from {path}")
    return np.stack(out).astype(np.float32)


def list_clips(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"not a folder: {folder}")
    clips = sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    if not clips:
        raise FileNotFoundError(f"no video clips ({', '.join(VIDEO_SUFFIXES)}) in {folder}")
    return clips
