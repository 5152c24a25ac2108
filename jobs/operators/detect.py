"""Per-camera episode detection (the shared EpisodeDetector) over keyed, checkpointed state."""

from __future__ import annotations

import json
from pathlib import Path

from pyflink.common import Types
from pyflink.common.time import Time
from pyflink.datastream import KeyedProcessFunction, OutputTag, RuntimeContext
from pyflink.datastream.state import StateTtlConfig, ValueStateDescriptor

from models.card import ModelCard, card_path
from vad.config import DetectConfig
from vad.detect import CameraState, EpisodeDetector, state_from_dict, state_to_dict

SCORES = OutputTag("frame-scores", Types.STRING())


def resolve_threshold(cfg: DetectConfig, model_path: Path) -> tuple[float, str]:
    card = ModelCard.load(card_path(model_path))
    thr = cfg.threshold if cfg.threshold is not None else card.threshold(cfg.calibration_quantile)
    return thr, card.model_version


class DetectEpisodes(KeyedProcessFunction):
    """(camera, idx, ts, gap, score, cells) -> event JSON (OPEN / UPDATE / CLOSE)."""

    def __init__(self, cfg: DetectConfig, model_path: str, idle_close_ms: int, ttl_s: int, emit_scores: bool):
        self.cfg = cfg
        self.model_path = model_path
        self.idle_close_ms = idle_close_ms
        self.ttl_s = ttl_s
        self.emit_scores = emit_scores

    def open(self, runtime_context: RuntimeContext):
        thr, version = resolve_threshold(self.cfg, Path(self.model_path))
        self.detector = EpisodeDetector(self.cfg, thr, version)
        desc = ValueStateDescriptor("camera", Types.PICKLED_BYTE_ARRAY())
        desc.enable_time_to_live(StateTtlConfig.new_builder(Time.seconds(self.ttl_s)).build())
        self.state = runtime_context.get_state(desc)
        g = runtime_context.get_metrics_group().add_group("vad")
        self.opened = g.counter("vad_events_opened")
        self.closed = g.counter("vad_events_closed")
        self.scores = g.distribution("frame_score_x1000")

    def _emit(self, events):
        for e in events:
            if e["phase"] == "open":
                self.opened.inc()
            elif e["phase"] == "close":
                self.closed.inc()
            yield json.dumps(e, separators=(",", ":"))

    def process_element(self, value, ctx: KeyedProcessFunction.Context):
        cam, idx, ts, gap, score, cells = value
        raw = self.state.value()
        st = state_from_dict(raw) if raw else CameraState()
        self.scores.update(int(score * 1000))
        events = self.detector.step(st, cam, idx, ts, score, cells, gap=gap)
        self.state.update(state_to_dict(st))
        if self.emit_scores:
            yield SCORES, json.dumps({"camera_id": cam, "frame_index": idx, "ts_ms": ts, "score": score})
        yield from self._emit(events)
        if st.open is not None:
            # A camera that goes silent mid-episode is closed once the watermark passes this point.
            ctx.timer_service().register_event_time_timer(ts + self.idle_close_ms)

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext):
        raw = self.state.value()
        if not raw:
            return
        st = state_from_dict(raw)
        if st.open is None or st.last_ts + self.idle_close_ms > timestamp:
            return
        events = self.detector.close(st, ctx.get_current_key(), reason="idle")
        self.state.update(state_to_dict(st))
        yield from self._emit(events)
