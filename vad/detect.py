"""Per-camera episode detection on a stream of frame scores: the one implementation used by the
Flink job and by offline evaluation, so both give the same events for the same scores.

Rules (all causal: a decision at frame i uses frames <= i only):
- smoothing: exponential moving average of the frame score (``ema_alpha`` weight on the new frame);
- OPEN when the smoothed score has stayed >= threshold for ``min_duration_s`` of event time and the
  camera is out of its cooldown (``cooldown_s`` after its last CLOSE); the event starts at the first
  frame of that run;
- UPDATE every ``update_every_s`` while open, carrying the peak score and the peak's cell heatmap;
- CLOSE when the smoothed score has stayed below ``threshold * close_ratio`` (hysteresis) for
  ``merge_gap_s``: a dip shorter than that, and the run after it, stay one event; the event ends at
  the last frame before the dip. Also at a stream gap, or when the camera goes silent (the job's
  timer calls ``close``), at once;
- the camera's schedule (``cameras.<id>.schedule``, vad/schedule.py) is read at each frame's event
  time in the camera's time zone: a rule's sensitivity replaces the camera's; a disabling rule
  closes the open event at the last frame before the window (close reason ``schedule``) and no run
  starts inside it, while frames are still scored and smoothed;
- frames are ordered by (event time, frame index): a frame not after the last one seen is a
  duplicate or late and is dropped (counted), unless it carries the GAP flag: every producer stream
  starts with one, so a GAP frame going back is a new stream (an edge restarted within the event
  time of its previous stream), which closes the open event and starts afresh, cooldown included. A
  frame after the last one by event time but not by index is a new stream too (from an edge that
  did not flag it) and is taken as a gap; so is a frame that skips an index (``starts_afresh``).
The event id is derived from camera, start event time and start frame, so a replay of the same
frames yields the same ids and an episode of a restarted stream (whose frame index restarts at 0,
its event time does not) gets a new one.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from vad.config import DetectConfig
from vad.schedule import Schedules

if TYPE_CHECKING:
    from vad.records import Event

_ID_NAMESPACE = uuid.UUID("6f1c8f5e-6a39-4c1e-9a57-0d1f1f7c2a10")


def event_id(camera_id: str, start_ts_ms: int, start_frame: int) -> str:
    """UUID 5 of the episode's camera, start event time and start frame: the same on a replay, new
    after an edge restart (frame indices restart at 0 with each producer stream)."""
    return uuid.uuid5(_ID_NAMESPACE, f"{camera_id}/{start_ts_ms}/{start_frame}").hex


def starts_afresh(gap: bool, frame: int, last_frame: int | None) -> bool:
    """Whether a frame, after the camera's last one by event time, starts its window and episode
    afresh: it carries GAP, its index does not follow the last one's (an edge restart the edge did
    not flag), or it skips an index. The edge gives every sampled frame the next index, one it drops
    too, so a skipped index is a record that never arrived: dropped, or lost in delivery, where the
    edge cannot always flag the next record (a Kafka client reports a failed send after it has taken
    the records behind it). Holes are found here, whatever the edge could flag."""
    return gap or (last_frame is not None and frame != last_frame + 1)


@dataclass
class OpenEvent:
    event_id: str
    start_frame: int
    start_ts_ms: int
    peak_score: float
    peak_frame: int
    heatmap: np.ndarray | None  # float32 [rows, cols] cell scores at the peak; a list in events
    seq: int = 0
    last_update_frame: int = 0
    last_update_ts: int = 0
    # The dip below the close level that may end the event: the last frame before it, and when it
    # began (None while the score is above the close level).
    dip_end_frame: int | None = None
    dip_since_ts: int | None = None


@dataclass
class CameraState:
    last_frame: int = -1
    last_ts: int = 0
    ema: float | None = None
    run: int = 0  # consecutive frames with ema >= threshold
    run_start_frame: int = 0
    run_start_ts: int = 0
    cooldown_until: int = -1  # event time (ms) before which no new event opens
    open: OpenEvent | None = None
    dropped: int = 0


class EpisodeDetector:
    def __init__(
        self, cfg: DetectConfig, threshold: float, model_version: str = "", cameras: Mapping[str, Any] | None = None
    ):
        """``cameras``: the config's ``cameras`` section (each entry's ``sensitivity``, ``mask``,
        ``timezone`` and ``schedule``); a camera not in it has sensitivity 1, no mask and no schedule."""
        if not threshold > 0:
            raise ValueError("threshold must be positive")
        self.cfg = cfg
        self.base_threshold = float(threshold)
        self.model_version = model_version
        self.cameras = dict(cameras or {})
        self.schedules = Schedules(self.cameras)
        self.in_force = self.schedules.in_force

    def threshold_for(self, camera_id: str, ts_ms: int | None = None) -> float:
        """The camera's threshold: at this event time when given (its schedule's sensitivity), else
        with its own sensitivity."""
        f = None if ts_ms is None else self.in_force(camera_id, ts_ms)
        if f is not None:
            return self.base_threshold / f.sensitivity
        o = self.cameras.get(camera_id)
        return self.base_threshold / (o.sensitivity if o is not None else 1.0)

    def frame_score(self, camera_id: str, frame_score: float, cells: np.ndarray | None) -> float:
        """The model's frame score is the max over cells; the camera's mask recomputes it without
        the masked cells (the same cells whose features the edge zeroes)."""
        o = self.cameras.get(camera_id)
        if o is None or not o.mask or cells is None:
            return float(frame_score)
        m = cells.astype(np.float32, copy=True)
        # The mask was checked against the camera's grid at load; a cell outside the model's grid
        # (a config the edge did not run with) is skipped rather than failing the job.
        for r, c in o.mask:
            if 0 <= r < m.shape[0] and 0 <= c < m.shape[1]:
                m[r, c] = -np.inf
        return float(m.max()) if np.isfinite(m).any() else 0.0

    def step(
        self,
        st: CameraState,
        camera_id: str,
        frame: int,
        ts_ms: int,
        score: float,
        cells: np.ndarray | None = None,
        gap: bool = False,
    ) -> list[Event]:
        after = (ts_ms, frame) > (st.last_ts, st.last_frame)
        if not after and not gap:
            st.dropped += 1
            return []
        out: list[Event] = []
        if starts_afresh(gap, frame, st.last_frame):
            out += self.close(st, camera_id, reason="gap")
            st.ema, st.run = None, 0
            if not after:  # a new stream earlier in event time: the old stream's cooldown is not its
                st.cooldown_until = -1
        rule = self.in_force(camera_id, ts_ms)
        if rule is not None and not rule.enabled:
            # The schedule disables the camera from this frame on: its episode ends at the frame
            # before (the last one seen, so called before this frame is recorded).
            out += self.close(st, camera_id, reason="schedule")
        prev_frame = st.last_frame
        st.last_frame, st.last_ts = frame, ts_ms
        s = self.frame_score(camera_id, score, cells)
        a = self.cfg.ema_alpha
        st.ema = s if st.ema is None else a * s + (1 - a) * st.ema
        if rule is not None and not rule.enabled:
            # The average keeps smoothing, but a run, and so an episode, starts only once the
            # camera is enabled again.
            st.run = 0
            return out
        thr = self.threshold_for(camera_id, ts_ms)
        if st.ema >= thr:
            if st.run == 0:
                st.run_start_frame, st.run_start_ts = frame, ts_ms
            st.run += 1
        else:
            st.run = 0
        ev = st.open
        if ev is None:
            long_enough = st.run > 0 and ts_ms - st.run_start_ts >= _ms(self.cfg.min_duration_s)
            if long_enough and ts_ms > st.cooldown_until:
                st.open = OpenEvent(
                    event_id=event_id(camera_id, st.run_start_ts, st.run_start_frame),
                    start_frame=st.run_start_frame,
                    start_ts_ms=st.run_start_ts,
                    peak_score=st.ema,
                    peak_frame=frame,
                    heatmap=_heatmap(cells),
                    last_update_frame=frame,
                    last_update_ts=ts_ms,
                )
                out.append(self._event(st.open, camera_id, "open", frame, ts_ms, thr))
            return out
        if st.ema > ev.peak_score:
            ev.peak_score, ev.peak_frame, ev.heatmap = st.ema, frame, _heatmap(cells)
        if st.ema < thr * self.cfg.close_ratio:
            if ev.dip_since_ts is None:
                ev.dip_end_frame, ev.dip_since_ts = prev_frame, ts_ms
            if ts_ms - ev.dip_since_ts >= _ms(self.cfg.merge_gap_s):
                return out + self.close(st, camera_id, reason="score", ts_ms=ts_ms)
            return out
        ev.dip_end_frame = ev.dip_since_ts = None
        if ts_ms - ev.last_update_ts >= _ms(self.cfg.update_every_s):
            ev.last_update_frame, ev.last_update_ts = frame, ts_ms
            out.append(self._event(ev, camera_id, "update", frame, ts_ms, thr))
        return out

    def close(self, st: CameraState, camera_id: str, reason: str, ts_ms: int | None = None) -> list[Event]:
        """Closes the camera's open event, if any: it ends at the last frame before a dip in progress,
        else at the last frame seen."""
        ev = st.open
        if ev is None:
            return []
        st.open = None
        st.run = 0
        end = ev.dip_end_frame if ev.dip_end_frame is not None else st.last_frame
        ts = st.last_ts if ts_ms is None else ts_ms
        st.cooldown_until = ts + _ms(self.cfg.cooldown_s)
        return [self._event(ev, camera_id, "close", end, ts, self.threshold_for(camera_id, st.last_ts), reason)]

    def _event(
        self, ev: OpenEvent, camera_id: str, phase: str, frame: int, ts_ms: int, thr: float, reason: str | None = None
    ) -> Event:
        # Imported here: vad.records imports this module (the job's state holds the detector's), and
        # events are rare, the state's pickling is not.
        from vad.records import Event

        ev.seq += 1
        return Event(
            event_id=ev.event_id,
            camera_id=camera_id,
            phase=phase,
            seq=ev.seq,
            start_frame=ev.start_frame,
            end_frame=frame,
            start_ts_ms=ev.start_ts_ms,
            ts_ms=ts_ms,
            peak_score=round(float(ev.peak_score), 5),
            peak_frame=ev.peak_frame,
            threshold=round(float(thr), 5),
            heatmap=_heatmap_json(ev.heatmap),
            model_version=self.model_version,
            close_reason=reason,
        )


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _heatmap(cells: np.ndarray | None) -> np.ndarray | None:
    # Kept as float32 in keyed state (~1 KB pickled; a list of Python floats was ~2.3 KB, and a
    # camera's state is written back once per batch); rounded to a list only when an event is emitted.
    return None if cells is None else np.array(cells, np.float32)


def _heatmap_json(h) -> list[list[float]]:
    if h is None or len(h) == 0:
        return []
    return np.round(np.asarray(h, np.float64), 3).tolist()


def state_to_dict(st: CameraState) -> dict:
    # Shallow, not dataclasses.asdict: that deep-copies the heatmap on every write, which profiled
    # as a tenth of the scoring operator's time. The dict is pickled into state right after.
    d = dict(vars(st))
    d["open"] = dict(vars(st.open)) if st.open is not None else None
    return d


def state_from_dict(d: dict) -> CameraState:
    d = dict(d)
    ev = d.pop("open")
    st = CameraState(**d)
    if ev:
        h = ev.get("heatmap")  # an array, or a list in state restored from an older savepoint
        st.open = OpenEvent(**{**ev, "heatmap": None if h is None or len(h) == 0 else np.asarray(h, np.float32)})
    return st
