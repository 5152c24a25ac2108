"""Zones of a camera (``cameras.<id>.zones``): regions of grid cells with a dwell rule, watched by the
job's dwell detector (vad/dwell.py) beside the motion score."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from vad.config.sections import _Strict

ZONE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
ZoneName = Annotated[str, Field(min_length=1, max_length=64, pattern=ZONE_NAME_PATTERN)]
_Cell = tuple[Annotated[int, Field(ge=0, le=255)], Annotated[int, Field(ge=0, le=255)]]


class ZoneConfig(_Strict):
    """One zone: its cells and how long something may stay in it before a loitering event opens."""

    cells: list[_Cell] = Field(
        min_length=1,
        max_length=65536,
        description="(row, col) cells of the feature grid the zone covers; checked against the camera's grid",
    )
    min_dwell_s: float = Field(
        30.0,
        gt=0,
        le=86_400,
        description="seconds of event time the zone must stay occupied before a loitering event opens",
    )
    # fg is the mean absolute frame difference (vad/edge/features.py): someone standing about still
    # fidgets a little, so a low level, with hold_s bridging the frames where they keep still.
    presence_level: float = Field(
        0.02,
        gt=0,
        le=1,
        description="the zone is occupied on a frame when one of its cells has a foreground cue (fg, 0-1) "
        "at or above this",
    )
    hold_s: float = Field(
        3.0,
        ge=0,
        le=3600,
        description="the zone must stay unoccupied this long to end a stay (and close its event): shorter "
        "empty spells count as part of the stay",
    )


class LearnedLoiteringConfig(_Strict):
    """Loitering anywhere in the grid, against the view's normal dwell times: a cell occupied longer
    than ``factor`` times the longest stay its model card saw there in normal video (and at least
    ``min_dwell_s``) opens an event of kind loitering, zone ``*``."""

    factor: float = Field(
        3.0,
        ge=1,
        le=1000,
        description="how many times the cell's longest normal stay (model card `dwell`) a stay must last",
    )
    # Cells nobody stayed in during training (a lawn, a wall) have a longest stay of 0.
    min_dwell_s: float = Field(
        30.0,
        gt=0,
        le=86_400,
        description="seconds a stay must last in any case, and all it needs in cells without a normal stay",
    )
