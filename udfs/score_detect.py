"""The job's vectorized scoring UDF, fused with per-camera detection.

Keyed by a *shard* of cameras (not by camera), so one ONNX call scores the windows of many cameras.
Measured on this project's 2-core machines, a PyFlink job spends most of its time moving records
and state between the JVM and the Python worker, not in ONNX; so this operator takes the raw Kafka
bytes (no pickled arrays cross a shuffle), keeps each camera's window and detector state in MapState
of its shard, and emits only small JSON strings (events, optional per-frame scores).

Batching: arriving records wait in checkpointed ListState (a failure must not lose them) until the
batch is full, a processing-time timer fires (``max_delay_ms``: the latency bound of a partial batch),
or the watermark passes them (which also flushes everything at the end of a bounded run).

Rules: frames of a camera are scored in frame order within a batch; a frame not newer than the last
one scored for its camera is late or a duplicate and is dropped (counted); a GAP flag resets the
camera's window and closes its open event; a camera silent for ``idle_close_ms`` of event time has
its open event closed.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from pyflink.common import Types
from pyflink.common.time import Time
from pyflink.datastream import KeyedProcessFunction, OutputTag, RuntimeContext, TimeDomain
from pyflink.datastream.state import ListStateDescriptor, MapStateDescriptor, StateTtlConfig, ValueStateDescriptor

from jobs.operators.records import dead_letter
from models.card import ModelCard, card_path
from udfs.onnx_session import OnnxScorer
from vad.config import DetectConfig
from vad.detect import CameraState, EpisodeDetector, state_from_dict, state_to_dict
from vad.schema import SchemaError, decode
from vad.windows import window_at

DEAD_LETTER = OutputTag("dead-letter", Types.STRING())
SCORES = OutputTag("frame-scores", Types.STRING())


def _ttl(seconds: int) -> StateTtlConfig:
    # Cameras that vanish must not leak state. ReturnExpiredIfNotCleanedUp keeps PyFlink's Python-side
    # state cache on (NeverReturnExpired switches it off and made every access a JVM round trip).
    return (
        StateTtlConfig.new_builder(Time.seconds(seconds))
        .set_state_visibility(StateTtlConfig.StateVisibility.ReturnExpiredIfNotCleanedUp)
        .build()
    )


def resolve_threshold(cfg: DetectConfig, model_path: Path) -> tuple[float, str, int]:
    card = ModelCard.load(card_path(model_path))
    thr = cfg.threshold if cfg.threshold is not None else card.threshold(cfg.calibration_quantile)
    return thr, card.model_version, card.window


class ScoreAndDetect(KeyedProcessFunction):
    """raw record bytes, keyed by shard -> event JSON (side outputs: dead letters, frame scores)."""

    def __init__(
        self,
        model_path: str,
        detect: DetectConfig,
        batch_size: int,
        max_delay_ms: int,
        idle_close_ms: int,
        ttl_s: int,
        emit_scores: bool,
    ):
        self.model_path = model_path
        self.detect = detect
        self.batch_size = batch_size
        self.max_delay_ms = max_delay_ms
        self.idle_close_ms = idle_close_ms
        self.ttl_s = ttl_s
        self.emit_scores = emit_scores

    def open(self, runtime_context: RuntimeContext):
        thr, version, self.window = resolve_threshold(self.detect, Path(self.model_path))
        self.detector = EpisodeDetector(self.detect, thr, version)
        self.scorer = OnnxScorer(Path(self.model_path))
        raw_bytes = Types.PRIMITIVE_ARRAY(Types.BYTE())
        self.pending = runtime_context.get_list_state(ListStateDescriptor("pending", raw_bytes))
        self.count = runtime_context.get_state(ValueStateDescriptor("pending_count", Types.INT()))
        hist = MapStateDescriptor("history", Types.STRING(), Types.PICKLED_BYTE_ARRAY())
        hist.enable_time_to_live(_ttl(self.ttl_s))
        self.history = runtime_context.get_map_state(hist)
        det = MapStateDescriptor("detector", Types.STRING(), Types.PICKLED_BYTE_ARRAY())
        det.enable_time_to_live(_ttl(self.ttl_s))
        self.cameras = runtime_context.get_map_state(det)
        # Earliest event time at which an open episode of this shard could be idle: the scan over
        # the shard's cameras runs only then, not on every batch's watermark timer.
        self.idle_due = runtime_context.get_state(ValueStateDescriptor("idle_due", Types.LONG()))
        g = runtime_context.get_metrics_group().add_group("vad")
        self.m_in = g.counter("records_in")
        self.m_dead = g.counter("vad_dead_letters")
        self.m_scored = g.counter("windows_scored")
        self.m_batches = g.counter("batches")
        self.m_batch_size = g.distribution("batch_size")
        self.m_infer_us = g.distribution("inference_us")
        self.m_late = g.counter("late_or_duplicate_frames")
        self.m_opened = g.counter("vad_events_opened")
        self.m_closed = g.counter("vad_events_closed")
        self.m_score = g.distribution("frame_score_x1000")

    def close(self):
        self.scorer = None

    def process_element(self, value, ctx: KeyedProcessFunction.Context):
        self.m_in.inc()
        self.pending.add(value)
        n = (self.count.value() or 0) + 1
        if n >= self.batch_size:
            yield from self._flush(ctx)
            return
        self.count.update(n)
        if n == 1:
            ts = ctx.timer_service()
            ts.register_processing_time_timer(ts.current_processing_time() + self.max_delay_ms)
            if ctx.timestamp() is not None:
                ts.register_event_time_timer(ctx.timestamp())

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext):
        # Stale timers of an already flushed batch find the buffer empty.
        if self.count.value():
            yield from self._flush(ctx)
        due = self.idle_due.value()
        if ctx.time_domain() == TimeDomain.EVENT_TIME and due is not None and timestamp >= due:
            yield from self._close_idle(timestamp)

    def _emit(self, events: list[dict]):
        for e in events:
            if e["phase"] == "open":
                self.m_opened.inc()
            elif e["phase"] == "close":
                self.m_closed.inc()
            yield json.dumps(e, separators=(",", ":"))

    def _close_idle(self, watermark: int):
        next_due = None
        for cam, raw in list(self.cameras.items()):
            st = state_from_dict(raw)
            if st.open is None:
                continue
            due = st.last_ts + self.idle_close_ms
            if due <= watermark:
                events = self.detector.close(st, cam, reason="idle")
                self.cameras.put(cam, state_to_dict(st))
                yield from self._emit(events)
            else:
                # Its last flush registered a timer at or after this time, so the scan runs again.
                next_due = due if next_due is None else min(next_due, due)
        if next_due is None:
            self.idle_due.clear()
        else:
            self.idle_due.update(next_due)

    def _flush(self, ctx):
        items = list(self.pending.get() or [])
        self.pending.clear()
        self.count.clear()
        recs = []
        for raw in items:
            try:
                recs.append(decode(bytes(raw)))
            except SchemaError as e:
                self.m_dead.inc()
                yield DEAD_LETTER, dead_letter(bytes(raw), e)
        # Frames that arrived out of order within one batch are put back in order per camera.
        recs.sort(key=lambda r: (r.camera_id, r.frame_index))
        windows, keep, hist = [], [], {}
        for r in recs:
            cam = r.camera_id
            if cam not in hist:
                hist[cam] = self.history.get(cam)
            h = hist[cam]
            if h is not None and not r.gap and r.frame_index <= h[0]:
                self.m_late.inc()
                continue
            grids = [r.features] if r.gap or h is None else [*h[1], r.features]
            grids = grids[-self.window :]
            hist[cam] = (r.frame_index, grids)
            windows.append(window_at(np.stack(grids), self.window))
            keep.append(r)
        for cam, h in hist.items():
            if h is not None:
                self.history.put(cam, (h[0], h[1][-(self.window - 1) :] if self.window > 1 else []))
        if not windows:
            return
        t0 = time.perf_counter()
        frame, cells = self.scorer.score(np.stack(windows))
        self.m_infer_us.update(int((time.perf_counter() - t0) * 1e6))
        self.m_batches.inc()
        self.m_batch_size.update(len(windows))
        self.m_scored.inc(len(windows))
        yield from self._detect(keep, frame, cells, ctx)

    def _detect(self, recs, frame, cells, ctx):
        states: dict[str, CameraState] = {}
        for r, f, c in zip(recs, frame, cells, strict=True):
            cam = r.camera_id
            st = states.get(cam)
            if st is None:
                raw = self.cameras.get(cam)
                st = states[cam] = state_from_dict(raw) if raw else CameraState()
            score = float(f)
            self.m_score.update(int(score * 1000))
            yield from self._emit(self.detector.step(st, cam, r.frame_index, r.ts_ms, score, c, gap=r.gap))
            if self.emit_scores:
                rec = {"camera_id": cam, "frame_index": r.frame_index, "ts_ms": r.ts_ms, "score": score}
                yield SCORES, json.dumps(rec)
        latest_open = 0
        for cam, st in states.items():
            self.cameras.put(cam, state_to_dict(st))
            if st.open is not None:
                latest_open = max(latest_open, st.last_ts)
        if latest_open:
            # Closes the episode of a camera that goes silent, once the watermark passes this point.
            due = latest_open + self.idle_close_ms
            ctx.timer_service().register_event_time_timer(due)
            current = self.idle_due.value()
            self.idle_due.update(due if current is None else min(current, due))
