"""A camera's schedule (``cameras.<id>.schedule``, vad/config/schedule.py) applied to event time: what
is in force at a frame's ``ts_ms`` (epoch ms, UTC) in the camera's time zone, and for how long.

Only the frame's event time is read, never a clock, so a replay of the same records gives the same
events. ``InForce`` carries the span of event time over which its answer holds (up to the next rule
boundary or local midnight), so a detector asks again only when a frame leaves it: about once per
rule boundary, not once per frame.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from vad.config.schedule import DAYS, MINUTES_PER_DAY

_MINUTE_MS = 60_000


@dataclass(frozen=True)
class InForce:
    """What applies to a camera from ``start_ms`` (inclusive) to ``end_ms`` (exclusive) of event time."""

    enabled: bool
    sensitivity: float
    start_ms: int
    end_ms: int
    rule: int | None  # index of the matching rule; None: no rule, the camera's own sensitivity

    def holds(self, ts_ms: int) -> bool:
        return self.start_ms <= ts_ms < self.end_ms


@dataclass(frozen=True)
class _Rule:
    days: frozenset[int]  # 0 = Monday, as datetime.weekday()
    start: int  # minutes since local midnight
    end: int  # exclusive; below start: on the next day
    enabled: bool
    sensitivity: float | None

    def matches(self, day: int, minute: int) -> bool:
        if self.start < self.end:
            return day in self.days and self.start <= minute < self.end
        # Over midnight: the evening part on one of its days, the morning part on the day after one.
        return (day in self.days and minute >= self.start) or ((day - 1) % 7 in self.days and minute < self.end)


class Schedule:
    """One camera's rules in its time zone, with its own sensitivity for the times no rule covers."""

    def __init__(self, rules: Sequence[Any], timezone: str, sensitivity: float):
        self.tz = zoneinfo.ZoneInfo(timezone)
        self.sensitivity = float(sensitivity)
        self.rules = [
            _Rule(
                frozenset(DAYS.index(d) for d in r.days),
                r.start_min,
                r.end_min,
                bool(r.enabled),
                None if r.sensitivity is None else float(r.sensitivity),
            )
            for r in rules
        ]
        # Where a rule can start or stop applying, in local minutes; midnight changes the weekday.
        self._bounds = sorted({0, MINUTES_PER_DAY, *(r.start for r in self.rules), *(r.end for r in self.rules)})

    @classmethod
    def of(cls, camera: Any) -> Schedule | None:
        """The schedule of a ``cameras.<id>`` entry, or None when it has no rules."""
        rules = getattr(camera, "schedule", None)
        if not rules:
            return None
        return cls(rules, getattr(camera, "timezone", "UTC"), getattr(camera, "sensitivity", 1.0))

    def match(self, day: int, minute: int) -> int | None:
        """Index of the first rule covering this local weekday (0 = Monday) and minute, or None."""
        for i, r in enumerate(self.rules):
            if r.matches(day, minute):
                return i
        return None

    def at(self, ts_ms: int) -> InForce:
        """What is in force at this event time, and the span of event time it holds over."""
        local = datetime.fromtimestamp(ts_ms // 1000, self.tz)
        minute = local.hour * 60 + local.minute
        i = self.match(local.weekday(), minute)
        start = ts_ms - local.second * 1000 - ts_ms % 1000  # the local minute's start
        nxt = next(b for b in self._bounds if b > minute)
        end = start + (nxt - minute) * _MINUTE_MS
        # Wall-clock minutes are event-time minutes only while the UTC offset stays put: across a
        # daylight-saving change the answer is taken to hold for the current minute only (offsets
        # change on a minute), and asked again after it.
        if datetime.fromtimestamp((end - 1) // 1000, self.tz).utcoffset() != local.utcoffset():
            end = start + _MINUTE_MS
        if i is None:
            return InForce(True, self.sensitivity, start, end, None)
        r = self.rules[i]
        sens = self.sensitivity if r.sensitivity is None else r.sensitivity
        return InForce(r.enabled, sens, start, end, i)


class Schedules:
    """The schedules of a set of cameras, each answer kept for the span of event time it holds over.
    Derived from the frames' event time only, so the cache is not state (a restore asks again)."""

    def __init__(self, cameras: Mapping[str, Any]):
        self._of = {c: s for c, s in ((c, Schedule.of(o)) for c, o in cameras.items()) if s is not None}
        self._in_force: dict[str, InForce] = {}

    def in_force(self, camera_id: str, ts_ms: int) -> InForce | None:
        """What the camera's schedule says at this event time; None for a camera without one."""
        sched = self._of.get(camera_id)
        if sched is None:
            return None
        f = self._in_force.get(camera_id)
        if f is None or not f.holds(ts_ms):
            f = self._in_force[camera_id] = sched.at(ts_ms)
        return f
