"""Edge producer: read a video source, compute motion features, publish records keyed by camera.

Raw frames never leave this process; only the compact feature records do.
"""

from __future__ import annotations

import logging
import signal
import time
from dataclasses import dataclass, field

import numpy as np

from vad.config import Config
from vad.edge.features import make_extractor
from vad.edge.sources import frames, open_source
from vad.kafka_clients import make_producer
from vad.schema import FrameFeatures, validate_camera_id

log = logging.getLogger(__name__)


@dataclass
class ProducerStats:
    read: int = 0
    sampled: int = 0
    sent: int = 0
    failed: int = 0
    corrupt: int = 0
    started: float = field(default_factory=time.monotonic)

    def as_dict(self) -> dict[str, float]:
        dt = max(time.monotonic() - self.started, 1e-9)
        return {
            "read": self.read,
            "sampled": self.sampled,
            "sent": self.sent,
            "failed": self.failed,
            "corrupt": self.corrupt,
            "fps": round(self.sampled / dt, 1),
        }


def produce(cfg: Config, camera_id: str, source: str, limit: int | None = None) -> ProducerStats:
    """Stream one source to the features topic. Returns the counters; raises SourceError."""
    validate_camera_id(camera_id)
    cap = open_source(source)
    stats = ProducerStats()
    extractor = make_extractor(cfg.edge)
    producer = make_producer(cfg.kafka, linger_ms=cfg.edge.linger_ms, compression=cfg.edge.compression)
    topic = cfg.kafka.topics.features
    key = camera_id.encode()
    stop = {"now": False}

    def _stop(signum, _frame):
        log.info("signal %s: flushing and stopping", signum)
        stop["now"] = True

    old = {s: signal.signal(s, _stop) for s in (signal.SIGTERM, signal.SIGINT)}

    def _failed(exc):
        stats.failed += 1
        log.error("delivery failed for camera %s: %s", camera_id, exc)

    # Event time = wall clock at stream start + the frame's presentation time (see README).
    anchor_ms = time.time() * 1000.0
    t0 = time.monotonic()
    frame_index = 0
    try:
        for n, (pos_ms, gray) in enumerate(frames(cap, cfg.edge.fps, stats)):
            if stop["now"] or (limit is not None and stats.sampled >= limit):
                break
            if n % cfg.edge.sample_every:
                continue
            if cfg.edge.realtime:
                delay = pos_ms / 1000.0 - (time.monotonic() - t0)
                if delay > 0:
                    time.sleep(delay)
            feats = extractor.process(gray)
            stats.sampled += 1
            rec = FrameFeatures(
                camera_id=camera_id,
                frame_index=frame_index,
                ts_ms=int(anchor_ms + pos_ms),
                frame_width=gray.shape[1],
                frame_height=gray.shape[0],
                features=np.asarray(feats, np.float32),
            )
            producer.send(topic, key=key, value=rec.encode(), timestamp_ms=rec.ts_ms).add_errback(_failed)
            stats.sent += 1
            frame_index += 1
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=10)
        cap.release()
        for s, h in old.items():
            signal.signal(s, h)
    stats.sent -= stats.failed
    log.info("camera %s done: %s", camera_id, stats.as_dict())
    return stats
