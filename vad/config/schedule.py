"""A camera's schedule: rules that disable it, or change its sensitivity, by weekday and local time
of day in the camera's time zone (``cameras.<id>.timezone``). vad/schedule.py applies them to the
frames' event time."""

from __future__ import annotations

import re
import zoneinfo
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from vad.config.sections import _Strict

Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MINUTES_PER_DAY = 24 * 60
# Sensitivity's bounds, shared with the camera's own field (vad/config/edge.py).
SENSITIVITY_GT, SENSITIVITY_LE = 0, 100

_HHMM = re.compile(r"^(\d{2}):(\d{2})$")


def minutes(hhmm: str) -> int:
    """Minutes since local midnight of an "HH:MM" (already validated)."""
    h, m = hhmm.split(":")
    return int(h) * 60 + int(m)


def _local_time(latest: str):
    def check(value: Any) -> Any:
        # YAML 1.1 reads an unquoted 22:00 as the number 1320 (base 60) but 06:00 as a string: taking
        # the number would accept `start: 22` as 00:22, so a number is refused with the fix.
        if isinstance(value, int | float) and not isinstance(value, bool):
            raise ValueError(
                'a local time is a quoted "HH:MM" string (YAML reads an unquoted 22:00 as the number 1320), '
                f"got {value}"
            )
        if not isinstance(value, str):
            raise ValueError(f'a local time is "HH:MM", got {value!r}')
        m = _HHMM.match(value)
        if not m or int(m[2]) > 59 or minutes(value) > minutes(latest):
            raise ValueError(f'a local time is "HH:MM" from 00:00 to {latest}, got {value!r}')
        return value

    return BeforeValidator(check)


StartTime = Annotated[str, _local_time("23:59")]
EndTime = Annotated[str, _local_time("24:00")]


def check_timezone(value: str) -> str:
    """An IANA time zone name zoneinfo knows (the system's tz database or the tzdata package)."""
    # These name files of one machine's database, not zones: the machine's own zone (a replay elsewhere
    # would differ), a placeholder, and clocks counting leap seconds (27 s off the frames' epoch time).
    if value in ("localtime", "posixrules", "Factory") or value.startswith("right/"):
        raise ValueError(f"{value!r} is not a zone to schedule by: name one, such as Europe/Berlin or UTC")
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r}: an IANA name such as Europe/Berlin or UTC") from None
    return value


class ScheduleRule(_Strict):
    """One rule of ``cameras.<id>.schedule``: on these weekdays, from start to end local time, the camera
    is disabled or has this sensitivity. The first rule that matches a frame's event time wins; outside
    every rule the camera's own sensitivity applies. A rule whose end is before its start runs over
    midnight and belongs to the day it starts on (fri 22:00-06:00 covers Saturday 02:00)."""

    days: list[Day] = Field(
        default_factory=lambda: list(DAYS),
        min_length=1,
        max_length=7,
        description="weekdays the rule starts on, of mon tue wed thu fri sat sun (default: all)",
    )
    start: StartTime = Field(description='local time the rule starts, "HH:MM" 00:00 to 23:59, quoted in YAML')
    end: EndTime = Field(
        description='local time the rule ends (exclusive), "HH:MM" 00:00 to 24:00; before start: the next day'
    )
    enabled: bool = Field(
        True, description="false: no episode opens in the window and an open one closes (close_reason schedule)"
    )
    sensitivity: float | None = Field(
        None,
        gt=SENSITIVITY_GT,
        le=SENSITIVITY_LE,
        description="the camera's sensitivity in the window instead of its own (with enabled true)",
    )

    @field_validator("days")
    @classmethod
    def _no_repeats(cls, days: list[str]) -> list[str]:
        repeated = sorted({d for d in days if days.count(d) > 1}, key=DAYS.index)
        if repeated:
            raise ValueError(f"days repeated: {', '.join(repeated)}")
        return days

    @model_validator(mode="after")
    def _one_effect(self) -> ScheduleRule:
        if self.start == self.end:
            raise ValueError(f'start and end are both {self.start}: a whole day is "00:00" to "24:00"')
        if self.enabled and self.sensitivity is None:
            raise ValueError("a rule sets either `enabled: false` or a `sensitivity`; this one sets neither")
        if not self.enabled and self.sensitivity is not None:
            raise ValueError("a rule sets either `enabled: false` or a `sensitivity`, not both")
        return self

    @property
    def start_min(self) -> int:
        return minutes(self.start)

    @property
    def end_min(self) -> int:
        return minutes(self.end)
