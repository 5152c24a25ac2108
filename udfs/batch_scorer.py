"""Batched ONNX scoring across cameras: the job's vectorized UDF.

Keyed by a shard of cameras, not by camera, so one ONNX call scores the windows of many cameras.
Arriving frames wait in checkpointed ListState (not Python memory, which a failure would lose) until
the batch is full, a processing-time timer fires (``batch_max_delay_ms``, the latency bound for a
partial batch), or the watermark passes (which also flushes everything at the end of a bounded run).
Each camera's last T-1 grids live in MapState; windows are built at flush time, in frame order.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
from pyflink.common import Types
from pyflink.common.time import Time
from pyflink.datastream import KeyedProcessFunction, RuntimeContext
from pyflink.datastream.state import ListStateDescriptor, MapStateDescriptor, StateTtlConfig, ValueStateDescriptor

from udfs.onnx_session import OnnxScorer
from vad.windows import window_at

log = logging.getLogger(__name__)


class BatchScorer(KeyedProcessFunction):
    """(shard, camera, idx, ts, gap, grid) -> (camera, idx, ts, gap, frame score, cells [R, C])."""

    def __init__(self, model_path: str, window: int, batch_size: int, max_delay_ms: int, ttl_s: int):
        self.model_path = model_path
        self.window = window
        self.batch_size = batch_size
        self.max_delay_ms = max_delay_ms
        self.ttl_s = ttl_s

    def open(self, runtime_context: RuntimeContext):
        self.scorer = OnnxScorer(Path(self.model_path))
        log.info("scoring on %s", self.scorer.providers)
        self.pending = runtime_context.get_list_state(ListStateDescriptor("pending", Types.PICKLED_BYTE_ARRAY()))
        self.count = runtime_context.get_state(ValueStateDescriptor("pending_count", Types.INT()))
        hist = MapStateDescriptor("history", Types.STRING(), Types.PICKLED_BYTE_ARRAY())
        # Cameras that vanish must not leak their history forever.
        hist.enable_time_to_live(StateTtlConfig.new_builder(Time.seconds(self.ttl_s)).build())
        self.history = runtime_context.get_map_state(hist)
        g = runtime_context.get_metrics_group().add_group("vad")
        self.windows_scored = g.counter("windows_scored")
        self.batches = g.counter("batches")
        self.batch_sizes = g.distribution("batch_size")
        self.infer_us = g.distribution("inference_us")
        self.late = g.counter("late_or_duplicate_frames")

    def close(self):
        self.scorer = None

    def process_element(self, value, ctx: KeyedProcessFunction.Context):
        self.pending.add(value[1:])
        n = (self.count.value() or 0) + 1
        if n >= self.batch_size:
            yield from self._flush()
            return
        self.count.update(n)
        if n == 1:
            ts = ctx.timer_service()
            ts.register_processing_time_timer(ts.current_processing_time() + self.max_delay_ms)
            if ctx.timestamp() is not None:
                ts.register_event_time_timer(ctx.timestamp())

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext):
        # Stale timers of an already flushed batch find the buffer empty and do nothing.
        if self.count.value():
            yield from self._flush()

    def _flush(self):
        items = list(self.pending.get() or [])
        self.pending.clear()
        self.count.clear()
        if not items:
            return
        windows, keep, hist_cache = [], [], {}
        for cam, idx, ts, gap, grid in items:
            h = hist_cache.get(cam)
            if h is None:
                h = self.history.get(cam)
            if h is not None and not gap and idx <= h[0]:
                self.late.inc()  # stated rule: a frame not newer than the last scored one is dropped
                continue
            grids = [grid] if gap or h is None else [*h[1], grid]
            grids = grids[-self.window :]
            hist_cache[cam] = (idx, grids)
            windows.append(window_at(np.stack(grids), self.window))
            keep.append((cam, idx, ts, gap))
        for cam, (idx, grids) in hist_cache.items():
            self.history.put(cam, (idx, grids[-(self.window - 1) :] if self.window > 1 else []))
        if not windows:
            return
        t0 = time.perf_counter()
        frame, cells = self.scorer.score(np.stack(windows))
        self.infer_us.update(int((time.perf_counter() - t0) * 1e6))
        self.batches.inc()
        self.batch_sizes.update(len(windows))
        self.windows_scored.inc(len(windows))
        for (cam, idx, ts, gap), f, c in zip(keep, frame, cells, strict=False):
            yield cam, idx, ts, gap, float(f), c
