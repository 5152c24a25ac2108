"""The job's vectorized scoring UDF, fused with per-camera detection.

Keyed by a *shard* of cameras (not by camera), so one ONNX call scores the windows of many cameras.
Measured on this project's 2-core machines, a PyFlink job spends most of its time moving elements
between the JVM and the Python worker, not in ONNX: so the records of a shard arrive here already
batched in the JVM (``io.github.vad.flink.BatchRecords``: full batch, a processing-time bound or the
watermark, whichever comes first; the batch waits in checkpointed state there), one element per
batch. This operator keeps each camera's window and detector state in one MapState entry of its
shard (one state read and one write per camera and batch) and emits little, one element per output
and batch: the batch's events as one newline-joined string of their JSON, twice, as the ``EVENTS``
side output (split into one Kafka record per event in the JVM) and as the main output
``Row(shard, the same string)`` for the Redis writer, a task of its own keyed by the same shard
(``udfs.redis_sink``); optionally the batch's per-frame score lines (``ScoreLine``) as one
newline-joined string (split into one record per frame in the JVM). The records' types and the
state's (``CameraState``) are in ``vad.records``.

Rules: frames of a camera are ordered by (event time, frame index), not by index alone, as an edge
restart starts its indices at 0 again; within a batch they are put in that order between GAP flags
(arrival order across them); a frame not after the last one scored for its camera is late or a
duplicate and is dropped (counted), unless it carries the GAP flag, which the first record of every
producer stream does: then it is a new stream (see ``vad.detect``). A GAP flag, an index not after
the last one's, or a skipped index (a record that never arrived, counted in ``frames_missing``),
resets the camera's window and closes its open event (``vad.detect.starts_afresh``). An open event closes
as idle only when its own camera stopped sending, never because another camera's event time is
ahead (a partition's watermark follows its fastest camera): at the camera's next record if its event
time is more than ``idle_close_ms`` after the last one's (so a replay closes it where the live run
did), else once no record of the camera has arrived for ``idle_close_ms`` of processing time (a
timer: it closes even when every camera is silent and the watermark stalls, well before the state
TTL), and at the end of a bounded input. A record the model cannot score (another grid, another
feature layout) is dead-lettered.
"""

from __future__ import annotations

import time
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from pyflink.common import Row, Types
from pyflink.common.time import Time
from pyflink.datastream import KeyedProcessFunction, OutputTag, RuntimeContext, TimeDomain
from pyflink.datastream.state import MapStateDescriptor, StateTtlConfig, ValueStateDescriptor

from udfs.batches import dead_letter, unpack_batch
from udfs.beam_sampler import disable_sampling_thread
from udfs.metrics import Announcement, vad_metrics
from udfs.model_set import ModelSet, edge_mismatch
from udfs.score_drift import ScoreDrift
from vad.batch_decode import decode_batch
from vad.config import DetectConfig, views_of
from vad.dead_letter_reasons import DEAD_LETTER_REASONS
from vad.detect import CameraState as DetectorState
from vad.detect import starts_afresh
from vad.dwell import DwellDetector, DwellState
from vad.records import CameraState, Event, Kind, ScoreLine
from vad.schema import SchemaError

EVENT_KINDS = typing.get_args(Kind)
DEAD_LETTER = OutputTag("dead-letter", Types.STRING())
SCORES = OutputTag("frame-scores", Types.STRING())
EVENTS = OutputTag("events", Types.STRING())
# The main output: (the shard's key, the batch's events as newline-joined JSON).
EVENTS_BY_SHARD = Types.ROW([Types.INT(), Types.STRING()])
IDLE_TICK_MS = 1000
# The watermark of an input that has ended (a bounded run): its timer closes every open event.
END_OF_INPUT = 2**63 - 1


def _ttl(seconds: int) -> StateTtlConfig:
    # Cameras that vanish must not leak state. ReturnExpiredIfNotCleanedUp keeps PyFlink's Python-side
    # state cache on (NeverReturnExpired switches it off and made every access a JVM round trip).
    return (
        StateTtlConfig.new_builder(Time.seconds(seconds))
        .set_state_visibility(StateTtlConfig.StateVisibility.ReturnExpiredIfNotCleanedUp)
        .build()
    )


def _in_order(recs: list) -> list:
    """The records of a batch, each camera's in (event time, frame index) order between its GAP
    records: a frame reordered in transit (a Kafka producer's retry) is put back in place, but a
    restarted stream that went back in event time stays after the old stream it arrived after."""
    stream: dict[str, int] = {}
    keyed = []
    for n, r in enumerate(recs):
        s = stream[r.camera_id] = stream.get(r.camera_id, 0) + r.gap
        keyed.append((r.camera_id, s, r.ts_ms, r.frame_index, n))
    return [recs[k[-1]] for k in sorted(keyed)]


class ScoreAndDetect(KeyedProcessFunction):
    """a batch of raw records, keyed by shard -> Row(shard, its events' JSON, newline-joined) (side
    outputs: the same events' JSON, dead letters, frame scores)."""

    def __init__(
        self,
        model_path: str,
        detect: DetectConfig,
        idle_close_ms: int,
        ttl_s: int,
        emit_scores: bool,
        beam_sampling_thread: bool = True,  # Beam's default; the job passes job.beam_sampling_thread
        cameras: Mapping[str, Any] | None = None,  # the config's cameras: sensitivity and mask per camera
        registry: str | None = None,  # job.model_registry, for the cameras with a view
        refresh_s: float = 30.0,  # job.model_refresh_s
    ):
        self.model_path = model_path
        self.detect = detect
        self.idle_close_ms = idle_close_ms
        self.ttl_s = ttl_s
        self.emit_scores = emit_scores
        self.beam_sampling_thread = beam_sampling_thread
        self.camera_settings = dict(cameras or {})
        self.registry, self.refresh_s = registry, refresh_s

    def open(self, runtime_context: RuntimeContext):
        if not self.beam_sampling_thread:
            # For the whole worker process, before its first bundle (open runs while the worker
            # builds the operators that bundle will run).
            disable_sampling_thread()
        registry = Path(self.registry) if self.registry is not None else None
        cams, views = self.camera_settings, views_of(self.camera_settings)
        self.models = ModelSet(Path(self.model_path), self.detect, cams, registry, views, self.refresh_s)
        # camera id -> CameraState (last frame scored, its last T-1 grids, detector state)
        cams = MapStateDescriptor("camera", Types.STRING(), Types.PICKLED_BYTE_ARRAY())
        cams.enable_time_to_live(_ttl(self.ttl_s))
        self.cameras = runtime_context.get_map_state(cams)
        # The shard's pending silence check (a processing-time timer), so a batch registers none
        # while one is pending: the check scans the shard's cameras and registers the next.
        self.silence_check = runtime_context.get_state(ValueStateDescriptor("silence_check", Types.LONG()))
        # Camera with an open event -> processing time its last record reached this operator. Not
        # state: after a restart every camera counts from the restart (a restored timer must not close
        # the episode of a camera whose records are still waiting in Kafka).
        self.arrived: dict[str, int] = {}
        self.started: int | None = None
        g = vad_metrics(runtime_context)
        self.m_in = g.counter("records_in")
        self.m_dead = g.counter("vad_dead_letters")
        self.m_scored = g.counter("windows_scored")
        self.m_batches = g.counter("batches")
        self.m_batch_size = g.distribution("batch_size")
        self.m_infer_us = g.distribution("inference_us")
        self.m_late = g.counter("late_or_duplicate_frames")
        self.m_missing = g.counter("frames_missing")
        self.m_opened = g.counter("vad_events_opened")
        self.m_closed = g.counter("vad_events_closed")
        self.m_score = g.distribution("frame_score_x1000")
        self.m_swaps = g.counter("model_swaps")
        self.m_refused = g.counter("model_versions_refused")
        # Distributions reach Prometheus only as 0: a sum per batch gives the mean inference time.
        self.m_infer_sum = g.counter("inference_us_sum")
        self.drift = ScoreDrift(g)
        # Per kind under a `kind` key group (a label in Prometheus), so dashboards can split them.
        self.m_opened_by_kind = {k: g.add_group("kind", k).counter("events_opened") for k in EVENT_KINDS}
        # Dead letters per reason too, so an alert tells a mis-set edge (a camera not scored at all)
        # from malformed input.
        self.m_dead_by_reason = {r: g.add_group("reason", r).counter("dead_letters") for r in DEAD_LETTER_REASONS}
        self.announce = Announcement(
            self.m_dead,
            self.m_late,
            self.m_missing,
            self.m_opened,
            self.m_closed,
            *self.m_opened_by_kind.values(),
            *self.m_dead_by_reason.values(),
        )
        # Loitering per zone, beside the motion score: only cameras with zones are stepped.
        self.dwell = DwellDetector(self.detect, self.camera_settings, self.idle_close_ms)

    def close(self):
        self.models = None

    def process_element(self, value, ctx: KeyedProcessFunction.Context):
        self.announce()
        items = unpack_batch(value)
        self.m_in.inc(len(items))
        refused = len(self.models.refused)
        self.m_swaps.inc(len(self.models.refresh()))
        self.m_refused.inc(len(self.models.refused) - refused)
        yield from self._score_batch(items, ctx)

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext):
        if ctx.time_domain() == TimeDomain.PROCESSING_TIME:
            self.silence_check.clear()
            yield from self._close_silent(max(timestamp, self._now(ctx)), ctx)
        elif timestamp >= END_OF_INPUT:
            yield from self._close_silent(None, ctx)
        else:
            # An idle timer of a job that closed by event time (restored from its savepoint): the
            # episodes it left open get a silence check.
            self._arm(ctx, self._now(ctx) + self.idle_close_ms)

    def _now(self, ctx) -> int:
        now = ctx.timer_service().current_processing_time()
        if self.started is None:
            self.started = now
        return now

    def _arm(self, ctx, due: int) -> None:
        # A pending check is never later than a new one would be (each is due idle_close_ms after an
        # arrival that is already past). Rounded up to a whole IDLE_TICK_MS, as Flink keeps one
        # timer per key and time; the end-of-input timer is one per shard too.
        if self.silence_check.value() is None:
            tick = -(-due // IDLE_TICK_MS) * IDLE_TICK_MS
            ctx.timer_service().register_processing_time_timer(tick)
            ctx.timer_service().register_event_time_timer(END_OF_INPUT)
            self.silence_check.update(tick)

    def _emit(self, events: list[Event]) -> list[str]:
        out = []
        for e in events:
            if e.phase == "open":
                self.m_opened.inc()
                self.m_opened_by_kind[e.kind].inc()
            elif e.phase == "close":
                self.m_closed.inc()
            out.append(e.to_json())
        return out

    @staticmethod
    def _events_out(events: list[str], ctx):
        # One string for both: Kafka's copy is split in the JVM, the Redis writer's is keyed by shard
        # without a shuffle (the key is the one this operator is keyed by).
        joined = "\n".join(events)
        yield EVENTS, joined
        yield Row(ctx.get_current_key(), joined)

    def _close_silent(self, now: int | None, ctx):
        """Closes the shard's open events whose camera sent nothing for idle_close_ms of processing
        time (all of them at the end of the input: ``now`` None), and arms the check of the others.
        The close carries the camera's last frame and its time, as the in-stream close does."""
        next_due, events = None, []
        for cam, stored in list(self.cameras.items()):
            entry = CameraState.load(stored)
            st = entry.det
            if (st is None or st.open is None) and not _dwell_open(entry):
                continue
            since = self.arrived.get(cam, self.started)
            if now is None or since is None or now - since >= self.idle_close_ms:
                if st is not None:
                    events += self._emit(self.models.for_camera(cam).detector.close(st, cam, reason="idle"))
                if entry.dwell is not None:
                    label = self.models.for_camera(cam).label
                    events += self._emit(self.dwell.close(entry.dwell, cam, "idle", label))
                self.cameras.put(cam, entry)
                self.arrived.pop(cam, None)
            else:
                due = since + self.idle_close_ms
                next_due = due if next_due is None else min(next_due, due)
        if next_due is not None:
            self._arm(ctx, next_due)
        if events:
            yield from self._events_out(events, ctx)

    def _score_batch(self, items: list[bytes], ctx):
        decoded, errors = decode_batch(items)
        recs = []
        for i, r in decoded:
            model = self.models.for_camera(r.camera_id)
            if model.layout_error is not None:
                errors.append((i, model.layout_error))
            elif r.grid_shape != model.grid:
                # Valid on the wire but not scorable by this model: a camera whose edge runs with
                # other settings than the model was trained with.
                errors.append((i, SchemaError("grid_mismatch", f"grid {r.grid_shape}, the model scores {model.grid}")))
            elif model.frame_size is not None and (r.frame_width, r.frame_height) != model.frame_size:
                # Speeds are in the frame's pixels: a camera whose resolution changed since its model
                # was trained would be scored against scales of another unit, silently.
                w, h = model.frame_size
                size = f"frames {r.frame_width}x{r.frame_height}, the model was trained on {w}x{h}"
                errors.append((i, SchemaError("frame_size_mismatch", f"{size}: retrain it for this size")))
            elif r.edge_digest and model.edge_digest is not None and r.edge_digest != model.edge_digest:
                errors.append((i, edge_mismatch(r.edge_digest, model)))
            else:
                recs.append(r)
        errors.sort(key=lambda t: t[0])
        for i, e in errors:
            self.m_dead.inc()
            if e.reason in self.m_dead_by_reason:
                self.m_dead_by_reason[e.reason].inc()
            yield DEAD_LETTER, dead_letter(items[i], e)
        # Each camera's state is changed in place (the object the state cache holds) and written back
        # (put) in _detect; a camera with only late frames here keeps what it had.
        histories, keep, gaps, entries = [], [], [], {}
        for r in _in_order(recs):
            cam = r.camera_id
            e = entries.get(cam)
            if e is None:
                stored = self.cameras.get(cam)
                e = entries[cam] = CameraState() if stored is None else CameraState.load(stored)
            gap = r.gap
            if e.frame is not None:
                if not r.gap and (r.ts_ms, r.frame_index) <= (e.ts or 0, e.frame):
                    self.m_late.inc()
                    continue
                if r.frame_index > e.frame + 1:
                    self.m_missing.inc(r.frame_index - e.frame - 1)
                gap = starts_afresh(gap, r.frame_index, e.frame)
            window = self.models.for_camera(cam).window
            grids = [r.features] if gap or e.frame is None else [*e.grids, r.features]
            e.frame, e.ts, e.grids = r.frame_index, r.ts_ms, grids[-window:]
            histories.append(e.grids)
            keep.append(r)
            gaps.append(gap)
        for cam, e in entries.items():
            window = self.models.for_camera(cam).window
            e.grids = e.grids[-(window - 1) :] if window > 1 else []
        if not keep:  # only late frames: no entry changed
            return
        frame, cells = self._infer(keep, histories)
        self.m_batches.inc()
        self.m_batch_size.update(len(keep))
        self.m_scored.inc(len(keep))
        yield from self._detect(keep, gaps, frame, cells, entries, ctx)

    def _infer(self, recs: list, histories: list) -> tuple[np.ndarray, list[np.ndarray]]:
        t0 = time.perf_counter()
        frame, cells = self.models.score([r.camera_id for r in recs], histories)
        infer_us = int((time.perf_counter() - t0) * 1e6)
        self.m_infer_us.update(infer_us)
        self.m_infer_sum.inc(infer_us)
        return frame, cells

    def _detect(self, recs, gaps, frame, cells, entries: dict[str, CameraState], ctx):
        states: dict[str, DetectorState] = {}
        events = []
        scores = frame.tolist()  # the scores as Python floats, all at once
        for r, gap, score, c in zip(recs, gaps, scores, cells, strict=True):
            cam = r.camera_id
            model = self.models.for_camera(cam)
            detector = model.detector
            st = states.get(cam)
            if st is None:
                e = entries[cam]
                if e.det is None:
                    e.det = DetectorState()
                st = states[cam] = e.det
            if st.open is not None and r.ts_ms - st.last_ts > self.idle_close_ms:
                # Its own stream was silent longer than the idle timeout: the episode ended then,
                # whenever this record arrives (in a replay's burst as in the live run).
                events += self._emit(detector.close(st, cam, reason="idle"))
            self.m_score.update(int(score * 1000))
            self.drift.observe(cam, score, model.card.calibration, gap)
            events += self._emit(detector.step(st, cam, r.frame_index, r.ts_ms, score, c, gap=gap))
            e, watched = entries[cam], self.dwell.watches(cam)
            if watched or e.dwell is not None:
                e.dwell = e.dwell or DwellState()
                events += self._emit(
                    self.dwell.step(
                        e.dwell, cam, r.frame_index, r.ts_ms, r.features, gap, model.label, model.card.dwell
                    )
                )
                if not watched:
                    e.dwell = None  # its zones left the config: what they left open is closed now
        if events:  # one element per batch and output: the Redis writer stores them in one round trip
            yield from self._events_out(events, ctx)
        if self.emit_scores and recs:
            yield SCORES, ScoreLine.join_frames(recs, scores)
        for cam, e in entries.items():
            self.cameras.put(cam, e)
        now, any_open = self._now(ctx), False
        for cam, st in states.items():
            if st.open is not None or _dwell_open(entries[cam]):
                self.arrived[cam], any_open = now, True
            else:
                self.arrived.pop(cam, None)
        if any_open:
            # The silence check closes the episode of a camera that stops sending (_close_silent).
            self._arm(ctx, now + self.idle_close_ms)


def _dwell_open(entry: CameraState) -> bool:
    return entry.dwell is not None and entry.dwell.any_open()
