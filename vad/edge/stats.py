"""Per-camera counters and per-stage timings of the edge producer.

Counters are written by the capture thread, the send thread and kafka-python's I/O thread
(delivery callbacks); one lock keeps the read-modify-writes of the latter two exact.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from vad.edge.lag import LagWatch

STAGES = ("decode", "normalise", "flow", "features", "encode", "produce")


@dataclass
class CameraStats:
    camera_id: str = ""
    read: int = 0  # frames decoded
    sampled: int = 0  # frames kept by sampling (features computed)
    queued: int = 0  # records handed to the send queue
    sent: int = 0  # records acknowledged by the broker (acks=all)
    failed: int = 0  # records the broker did not acknowledge (delivery error)
    dropped: int = 0  # records dropped because the send queue was full
    corrupt: int = 0  # frames that could not be decoded (skipped)
    gaps: int = 0  # records sent with FLAG_GAP
    reconnects: int = 0
    camera_motion: int = 0  # frames whose flow had the camera's own motion (shake, pans) subtracted
    blind: bool | None = None  # the picture has been flat for edge.blind_after_s (None: not checked)
    blind_frames: int = 0  # sampled frames while blind
    blind_episodes: int = 0  # times the camera went blind
    lag: LagWatch | None = None  # paced sources only (live, --realtime files): vad/edge/lag.py
    stage_s: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    started: float = field(default_factory=time.monotonic)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add_time(self, stage: str, seconds: float) -> None:
        self.stage_s[stage] += seconds

    def bump(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    def as_dict(self) -> dict:
        dt = max(time.monotonic() - self.started, 1e-9)
        per = max(self.sampled, 1)
        return {
            "read": self.read,
            "sampled": self.sampled,
            "sent": self.sent,
            "failed": self.failed,
            "dropped": self.dropped,
            "corrupt": self.corrupt,
            "gaps": self.gaps,
            "reconnects": self.reconnects,
            "camera_motion": self.camera_motion,
            "blind_frames": self.blind_frames,
            "fps": round(self.sampled / dt, 1),
            # Mean CPU milliseconds (thread time) per sampled frame; decode includes frames sampling skipped.
            "ms": {k: round(1000.0 * v / per, 3) for k, v in self.stage_s.items()},
            **(self.lag.as_dict() if self.lag is not None else {}),
        }
