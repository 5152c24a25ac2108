"""Whole-clip feature extraction, for training and offline evaluation: the producer's own code path
(same source reader, same extractor), so offline and streaming features are identical."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vad.config import EdgeConfig
from vad.edge.features import make_extractor
from vad.edge.sources import frames, open_source

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".m4v")


@dataclass
class _Counts:
    read: int = 0
    corrupt: int = 0


def clip_features(path: str | Path, cfg: EdgeConfig) -> np.ndarray:
    """Feature grids of every sampled frame of a clip: float32 [n, rows, cols, C]."""
    cap = open_source(str(path))
    ex = make_extractor(cfg)
    out = []
    try:
        for n, (_pos, gray) in enumerate(frames(cap, cfg.fps, _Counts())):
            if n % cfg.sample_every == 0:
                out.append(ex.process(gray))
    finally:
        cap.release()
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
