"""Training data from the features topic instead of video: `vad train --from-kafka --camera ID
--since ...`. The edge already computed every frame's features, so a site whose privacy rules keep
raw video from leaving the camera can still fit a model of that camera's view.

The camera's records from ``since`` (event time) on, up to what the topic held when reading began
(or ``until``), are split into clips: at every stream gap (``vad.detect.starts_afresh``: a GAP
flag, an edge restart, a hole) and every ``segment_s`` of event time, so the calibration can hold
clips out (models/train.py). Records of other cameras, and records that do not decode, are skipped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from kafka import TopicPartition

from vad.config import Config
from vad.detect import starts_afresh
from vad.kafka_clients import make_consumer
from vad.schema import SchemaError, decode


@dataclass
class CameraFrames:
    clips: dict[str, np.ndarray] = field(default_factory=dict)  # name -> grids [n, R, C, F]
    times: dict[str, np.ndarray] = field(default_factory=dict)  # name -> event times (ms)
    grid: tuple[int, int] | None = None
    frame_size: tuple[int, int] | None = None  # (width, height) of the newest record's frames
    records: int = 0
    skipped: int = 0  # records of the camera that did not decode, of another grid or frame size
    other_settings: int = 0  # records whose edge stated other feature settings than ``edge_digest``


def _clips(frames: list, segment_ms: int, min_frames: int) -> tuple[dict, dict]:
    clips, times = {}, {}
    start, last = 0, None
    bounds = []
    for i, r in enumerate(frames):
        if i and (starts_afresh(r.gap, r.frame_index, last.frame_index) or r.ts_ms - frames[start].ts_ms >= segment_ms):
            bounds.append((start, i))
            start = i
        last = r
    if frames:
        bounds.append((start, len(frames)))
    for a, b in bounds:
        if b - a >= min_frames:
            name = f"t{frames[a].ts_ms}"
            clips[name] = np.stack([f.features for f in frames[a:b]]).astype(np.float32)
            times[name] = np.array([f.ts_ms for f in frames[a:b]], np.int64)
    return clips, times


def read_camera(
    cfg: Config,
    camera_id: str,
    since_ms: int,
    until_ms: int | None = None,
    segment_s: float = 60.0,
    min_frames: int = 16,
    timeout_s: float = 600.0,
    edge_digest: int | None = None,
) -> CameraFrames:
    """The camera's frames in [since_ms, until_ms) of event time as clips (see the module). With
    ``edge_digest`` (vad.edge.digest), records whose edge states other settings are left out and
    counted: the card will record those settings as the ones its model's features are computed with."""
    topic = cfg.kafka.topics.features
    consumer = make_consumer(cfg.kafka, consumer_timeout_ms=1000)
    out, frames = CameraFrames(), []
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        if not parts:
            raise ValueError(f"kafka.topics.features: topic {topic!r} has no partitions (does it exist?)")
        starts = consumer.offsets_for_times({tp: since_ms for tp in parts})
        ends = consumer.end_offsets(parts)
        # Only the partitions with records from since_ms on, each from there: an assigned partition
        # without a seek would be read from its beginning.
        todo = {tp: ends[tp] for tp in parts if starts.get(tp) is not None and starts[tp].offset < ends[tp]}
        consumer.assign(list(todo))
        for tp in todo:
            consumer.seek(tp, starts[tp].offset)
        deadline = time.monotonic() + timeout_s
        while todo and time.monotonic() < deadline:
            for tp, recs in consumer.poll(timeout_ms=1000, max_records=5000).items():
                for m in recs:
                    if m.offset >= todo.get(tp, -1):
                        continue
                    if m.key is not None and m.key != camera_id.encode():
                        continue
                    try:
                        r = decode(m.value)
                    except SchemaError:
                        out.skipped += m.key is not None
                        continue
                    if r.camera_id != camera_id or r.ts_ms < since_ms or (until_ms is not None and r.ts_ms >= until_ms):
                        continue
                    if edge_digest is not None and r.edge_digest and r.edge_digest != edge_digest:
                        out.other_settings += 1
                        continue
                    if out.grid is None:
                        out.grid = r.grid_shape
                    if r.grid_shape != out.grid:
                        out.skipped += 1
                        continue
                    frames.append(r)
            for tp in list(todo):
                if consumer.position(tp) >= todo[tp]:
                    consumer.pause(tp)
                    del todo[tp]
        if todo:
            raise TimeoutError(f"reading {topic} took over {timeout_s:.0f} s; narrow --since/--until")
    finally:
        consumer.close()
    # Speeds are in the frame's pixels: a camera whose resolution changed is fitted on its frames at
    # the size it sends now, the size its model will score.
    if frames:
        out.frame_size = (frames[-1].frame_width, frames[-1].frame_height)
        kept = [r for r in frames if (r.frame_width, r.frame_height) == out.frame_size]
        out.skipped += len(frames) - len(kept)
        frames = kept
    # One partition holds a camera's records in the order sent; a restarted edge's stream follows.
    out.records = len(frames)
    out.clips, out.times = _clips(frames, int(segment_s * 1000), min_frames)
    return out
