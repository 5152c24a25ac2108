"""Loitering: per camera and zone (``cameras.<id>.zones``), how long something stays, beside the
motion score (vad/detect.py). Pure logic on the frames' features and event time, so a replay gives
the same events and ids.

Rules, per zone, on frames in (event time, frame index) order:
- the zone is occupied on a frame when one of its cells has ``fg`` (the foreground cue: mean absolute
  frame difference, vad/edge/features.py) at or above the zone's ``presence_level``;
- a stay starts at the first occupied frame and lasts while the zone is occupied, empty spells
  shorter than ``hold_s`` included (someone keeping still moves no pixels for a moment);
- OPEN (kind loitering) once a stay has lasted ``min_dwell_s``; the event starts at the stay's first
  frame; UPDATE every ``detect.update_every_s`` while it lasts;
- the camera's schedule (``cameras.<id>.schedule``) applies as to motion: a disabling rule closes
  the open stays (close reason ``schedule``) and none starts inside the window;
- CLOSE when the zone has been empty for ``hold_s`` (close reason ``clear``; the event ends at the
  last occupied frame), at a stream gap (``gap``: any open zone closes, every stay restarts), or
  when the camera goes silent (``idle``: the job's timer, or a frame more than the idle timeout
  after the last one).
The event id is a UUID 5 of camera, zone, start event time and start frame in a namespace of its
own, so it never equals a motion episode's id.

Learned loitering (``cameras.<id>.loitering``) watches every cell against the view's normal dwell
times (the model card's ``dwell``, vad/cell_stays.py's rule): a cell whose stay lasts ``factor``
times its longest normal stay, and at least ``min_dwell_s``, is over; the camera's one learned stay
(zone ``*``, a name no configured zone can have) opens with the first cell over, starting at that
cell's stay's start, and closes (``clear``) when no cell is over any more. Its ``peak_score`` is the
highest stay over the cell's normal longest (floored at min_dwell_s / factor), ``threshold`` the
factor, and ``heatmap`` those ratios per cell at the peak.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from vad.cell_stays import FG, CellStays
from vad.config import DetectConfig
from vad.detect import _heatmap_json, _ms, starts_afresh
from vad.schedule import Schedules

if TYPE_CHECKING:
    from vad.records import Event


class DwellNorms(Protocol):
    """A view's normal dwell times per cell (the model card's ``dwell``, models/card.py)."""

    presence_level: float
    hold_s: float
    longest_s: list[list[float]]


_NO_CELLS = np.empty(0, np.intp)
LEARNED_ZONE = "*"  # the learned detector's zone: configured zone names start with a letter or digit
_DWELL_NAMESPACE = uuid.UUID("3b0e6c1d-9f42-4a57-8d2e-5c7a1f0b9e64")


def dwell_event_id(camera_id: str, zone: str, start_ts_ms: int, start_frame: int) -> str:
    """UUID 5 of the stay's camera, zone, start event time and start frame."""
    return uuid.uuid5(_DWELL_NAMESPACE, f"{camera_id}/{zone}/{start_ts_ms}/{start_frame}").hex


@dataclass
class Stay:
    start_frame: int
    start_ts: int
    last_frame: int  # the last occupied frame
    last_ts: int
    peak: float  # the highest presence (fg) of the stay
    peak_frame: int
    event_id: str | None = None  # set once the stay opened an event
    seq: int = 0
    last_update_ts: int = 0
    heatmap: np.ndarray | None = None  # learned stays: the per-cell ratios at the peak
    # The zone's level when the stay opened: its close still says it if the zone leaves the config.
    threshold: float = 0.0


@dataclass
class DwellState:
    """One camera's dwell state: the last frame seen, and the stay in progress per zone."""

    last_frame: int = -1
    last_ts: int = 0
    stays: dict[str, Stay] = field(default_factory=dict)
    cells: CellStays | None = None  # learned loitering: each cell's stay
    learned: Stay | None = None  # learned loitering: the camera's stay while a cell is over

    def any_open(self) -> bool:
        return self.learned is not None or any(s.event_id is not None for s in self.stays.values())


def dwell_to_dict(st: DwellState) -> dict:
    return {
        "last_frame": st.last_frame,
        "last_ts": st.last_ts,
        "stays": {z: vars(s) for z, s in st.stays.items()},
        "cells": None if st.cells is None else st.cells.to_dict(),
        "learned": None if st.learned is None else vars(st.learned),
    }


def dwell_from_dict(d: dict) -> DwellState:
    cells, learned = d.get("cells"), d.get("learned")
    return DwellState(
        d["last_frame"],
        d["last_ts"],
        {z: Stay(**s) for z, s in d["stays"].items()},
        None if cells is None else CellStays.from_dict(cells),
        None if learned is None else Stay(**learned),
    )


@dataclass(frozen=True)
class _Zone:
    name: str
    rows: np.ndarray
    cols: np.ndarray
    level: float
    min_dwell_ms: int
    hold_ms: int


class DwellDetector:
    def __init__(self, cfg: DetectConfig, cameras: Mapping[str, Any], idle_close_ms: int | None = None):
        """``cameras``: the config's ``cameras`` section; only cameras with ``zones`` are watched."""
        self.update_ms = _ms(cfg.update_every_s)
        self.idle_close_ms = idle_close_ms
        self.zones: dict[str, list[_Zone]] = {}
        for cam, o in cameras.items():
            zs = getattr(o, "zones", None) or {}
            self.zones[cam] = [
                _Zone(
                    name,
                    np.array([r for r, _ in z.cells], np.intp),
                    np.array([c for _, c in z.cells], np.intp),
                    float(z.presence_level),
                    _ms(z.min_dwell_s),
                    _ms(z.hold_s),
                )
                for name, z in sorted(zs.items())
            ]
        self.zones = {c: z for c, z in self.zones.items() if z}
        self._zone_names = {c: frozenset(z.name for z in zs) for c, zs in self.zones.items()}
        self.learned = {c: o.loitering for c, o in cameras.items() if getattr(o, "loitering", None) is not None}
        none = np.empty(0, np.intp)
        self.learned_zones = {c: _Zone(LEARNED_ZONE, none, none, o.factor, 0, 0) for c, o in self.learned.items()}
        self._needs: dict[str, tuple[DwellNorms, np.ndarray]] = {}
        self.schedules = Schedules({c: cameras[c] for c in {*self.zones, *self.learned}})

    def _disabled(self, camera_id: str, ts_ms: int) -> bool:
        f = self.schedules.in_force(camera_id, ts_ms)
        return f is not None and not f.enabled

    def watches(self, camera_id: str) -> bool:
        return camera_id in self.zones or camera_id in self.learned

    def _unconfigured(self, st: DwellState, camera_id: str, model_version: str) -> list[Event]:
        """Closes (reason ``config``) the open stays of zones, or of the learned detector, that the
        configuration no longer has (a restart from a savepoint with edited zones): nothing else
        would ever close them."""
        names = self._zone_names.get(camera_id, frozenset())
        learned_gone = camera_id not in self.learned and (st.learned is not None or st.cells is not None)
        if not learned_gone and st.stays.keys() <= names:
            return []  # the usual case, checked on every record: nothing to retire
        gone = [(name, st.stays.pop(name)) for name in sorted(st.stays.keys() - names)]
        if learned_gone:
            gone.append((LEARNED_ZONE, st.learned))
            st.learned, st.cells = None, None
        out = []
        for name, stay in gone:
            if stay is not None and stay.event_id is not None:
                z = _Zone(name, _NO_CELLS, _NO_CELLS, stay.threshold, 0, 0)
                out.append(
                    self._event(stay, camera_id, z, "close", stay.last_frame, stay.last_ts, model_version, "config")
                )
        return out

    def step(
        self,
        st: DwellState,
        camera_id: str,
        frame: int,
        ts_ms: int,
        features: np.ndarray,
        gap: bool = False,
        model_version: str = "",
        norms: DwellNorms | None = None,
    ) -> list[Event]:
        """``norms``: the camera's model card's normal dwell times (learned loitering). A camera
        that is no longer watched (``watches``) but has state from before is stepped once more, to
        close what it left open."""
        zones = self.zones.get(camera_id, [])
        out = self._unconfigured(st, camera_id, model_version)
        if not zones and camera_id not in self.learned:
            return out
        seen = st.last_frame >= 0
        if seen and not gap and (ts_ms, frame) <= (st.last_ts, st.last_frame):
            return out  # late or a duplicate
        if seen and self.idle_close_ms is not None and ts_ms - st.last_ts > self.idle_close_ms:
            out += self.close(st, camera_id, "idle", model_version)
        if starts_afresh(gap, frame, st.last_frame if seen else None):
            out += self.close(st, camera_id, "gap", model_version)
        st.last_frame, st.last_ts = frame, ts_ms
        if self._disabled(camera_id, ts_ms):
            return out + self.close(st, camera_id, "schedule", model_version)
        rows, cols = features.shape[0], features.shape[1]
        for z in zones:
            inside = (z.rows < rows) & (z.cols < cols)  # a grid other than the config's: skip cells
            p = float(features[z.rows[inside], z.cols[inside], FG].max()) if inside.any() else 0.0
            stay = st.stays.get(z.name)
            if p >= z.level:
                if stay is None:
                    stay = st.stays[z.name] = Stay(frame, ts_ms, frame, ts_ms, p, frame)
                else:
                    stay.last_frame, stay.last_ts = frame, ts_ms
                    if p > stay.peak:
                        stay.peak, stay.peak_frame = p, frame
                if stay.event_id is None:
                    if ts_ms - stay.start_ts >= z.min_dwell_ms:
                        stay.event_id = dwell_event_id(camera_id, z.name, stay.start_ts, stay.start_frame)
                        stay.last_update_ts, stay.threshold = ts_ms, z.level
                        out.append(self._event(stay, camera_id, z, "open", frame, ts_ms, model_version))
                elif ts_ms - stay.last_update_ts >= self.update_ms:
                    stay.last_update_ts = ts_ms
                    out.append(self._event(stay, camera_id, z, "update", frame, ts_ms, model_version))
            elif stay is not None and ts_ms - stay.last_ts >= z.hold_ms:
                del st.stays[z.name]
                if stay.event_id is not None:
                    out.append(
                        self._event(stay, camera_id, z, "close", stay.last_frame, stay.last_ts, model_version, "clear")
                    )
        learned = self.learned.get(camera_id)
        if learned is not None:
            out += self._step_learned(st, camera_id, frame, ts_ms, features, learned, norms, model_version)
        return out

    def _learned_need(self, camera_id: str, cfg, norms: DwellNorms) -> np.ndarray:
        """Per cell, how long a stay must last (ms) for the camera with these norms; kept until the
        camera's model (and so its card's norms) changes."""
        cached = self._needs.get(camera_id)
        if cached is None or cached[0] is not norms:
            longest_ms = np.asarray(norms.longest_s, np.float64) * 1000
            cached = self._needs[camera_id] = (norms, np.maximum(cfg.min_dwell_s * 1000, cfg.factor * longest_ms))
        return cached[1]

    def _step_learned(self, st, camera_id, frame, ts_ms, features, cfg, norms, model_version) -> list[Event]:
        need_ms = None if norms is None else self._learned_need(camera_id, cfg, norms)
        if need_ms is None or need_ms.shape != features.shape[:2]:
            # No normal dwell times for this grid (a model without them swapped in, or another
            # grid, whose records are dead-lettered anyway): a stay in progress cannot go on.
            st.cells, stay, st.learned = None, st.learned, None
            if stay is None:
                return []
            z = self.learned_zones[camera_id]
            return [self._event(stay, camera_id, z, "close", stay.last_frame, stay.last_ts, model_version, "clear")]
        if st.cells is None or st.cells.start_ts.shape != need_ms.shape:
            st.cells = CellStays.empty(*need_ms.shape)
        st.cells.step(features, frame, ts_ms, norms.presence_level, _ms(norms.hold_s))
        ratio = st.cells.durations_ms() * cfg.factor / need_ms
        over = ratio >= cfg.factor
        stay, z = st.learned, self.learned_zones[camera_id]
        if not over.any():
            if stay is None:
                return []
            st.learned = None
            return [self._event(stay, camera_id, z, "close", stay.last_frame, stay.last_ts, model_version, "clear")]
        peak = float(ratio.max())
        if stay is None:
            first = np.unravel_index(np.argmin(np.where(over, st.cells.start_ts, np.iinfo(np.int64).max)), over.shape)
            start_ts, start_frame = int(st.cells.start_ts[first]), int(st.cells.start_frame[first])
            stay = st.learned = Stay(start_frame, start_ts, frame, ts_ms, peak, frame, last_update_ts=ts_ms)
            stay.event_id = dwell_event_id(camera_id, LEARNED_ZONE, start_ts, start_frame)
            stay.heatmap, stay.threshold = ratio, z.level
            return [self._event(stay, camera_id, z, "open", frame, ts_ms, model_version)]
        if (over & (st.cells.last_ts == ts_ms)).any():  # within a hold, a stay is over but not occupied
            stay.last_frame, stay.last_ts = frame, ts_ms
        if peak > stay.peak:
            stay.peak, stay.peak_frame, stay.heatmap = peak, frame, ratio  # a new array each frame: no copy
        if ts_ms - stay.last_update_ts >= self.update_ms:
            stay.last_update_ts = ts_ms
            return [self._event(stay, camera_id, z, "update", frame, ts_ms, model_version)]
        return []

    def close(self, st: DwellState, camera_id: str, reason: str, model_version: str = "") -> list[Event]:
        """Ends every stay of the camera; the open ones close at their last occupied frame."""
        out = self._unconfigured(st, camera_id, model_version)
        zones = {z.name: z for z in self.zones.get(camera_id, [])}
        for name, stay in sorted(st.stays.items()):
            if stay.event_id is not None and name in zones:
                out.append(
                    self._event(
                        stay, camera_id, zones[name], "close", stay.last_frame, stay.last_ts, model_version, reason
                    )
                )
        st.stays.clear()
        learned, st.learned = st.learned, None
        if st.cells is not None:
            st.cells.clear()
        if learned is not None and camera_id in self.learned:
            z = self.learned_zones[camera_id]
            out.append(
                self._event(learned, camera_id, z, "close", learned.last_frame, learned.last_ts, model_version, reason)
            )
        return out

    @staticmethod
    def _event(
        stay: Stay, camera_id: str, z: _Zone, phase: str, frame: int, ts_ms: int, model_version: str, reason=None
    ) -> Event:
        # Imported here: vad.records imports this module for the job's state.
        from vad.records import Event

        stay.seq += 1
        return Event(
            event_id=stay.event_id,
            camera_id=camera_id,
            kind="loitering",
            zone=z.name,
            phase=phase,
            seq=stay.seq,
            start_frame=stay.start_frame,
            end_frame=frame,
            start_ts_ms=stay.start_ts,
            ts_ms=ts_ms,
            peak_score=round(stay.peak, 5),
            peak_frame=stay.peak_frame,
            threshold=round(z.level, 5),
            heatmap=_heatmap_json(stay.heatmap),
            model_version=model_version,
            close_reason=reason,
        )
