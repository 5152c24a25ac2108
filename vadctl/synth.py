"""A synthetic walkway scene, for the demo and tests when no real video is at hand: textured ground,
people-sized blobs walking slowly, and (optionally) one fast object crossing, the anomaly."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def write_scene(path: Path, frames: int = 120, fps: float = 10.0, anomaly_from: int | None = 60, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    h, w = 240, 360
    ground = cv2.GaussianBlur(rng.integers(60, 200, (h, w), dtype=np.uint8), (0, 0), 3)
    walkers = [(rng.uniform(0, w), rng.uniform(40, h - 40), rng.choice([-1.5, 1.5])) for _ in range(6)]
    path.parent.mkdir(parents=True, exist_ok=True)
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h), isColor=False)
    if not out.isOpened():
        raise RuntimeError(f"cannot write {path}")
    try:
        for i in range(frames):
            img = ground.copy()
            for x, y, v in walkers:
                cx = int((x + v * i) % w)
                cv2.rectangle(img, (cx - 4, int(y) - 10), (cx + 4, int(y) + 10), 30, -1)
            if anomaly_from is not None and i >= anomaly_from:
                cx = int((12 * (i - anomaly_from)) % w)
                cv2.rectangle(img, (cx - 12, 110), (cx + 12, 130), 240, -1)
            out.write(img)
    finally:
        out.release()
    return path
