"""The job's output records and its keyed state, typed and versioned: the contract for downstream
consumers, beside the input record's schema (``vad.schema``).

- ``Event``: an anomaly event (Kafka events topic and Redis), ``schema: "vad.event/v1"``;
- ``DeadLetter``: a record the job could not score (dead-letter topic), ``schema: "vad.dead-letter/v1"``;
- ``ScoreLine``: one frame's model score (scores topic, optional), version ``vad.score/v1``;
- ``CameraState``: one camera's keyed state in the scoring operator (pickled by Flink), version 4.

Event, DeadLetter and ScoreLine are pydantic models, so the JSON Schemas published in
``docs/schemas/`` are generated from them (``vad schemas``). Their ``to_json`` writes exactly what
the job has always written (``json.dumps``, not pydantic's serializer, whose float and non-ASCII
formatting differ), and ``parse`` reads and validates it. Events and dead letters are rare, so a
validated model per record costs nothing that matters; score lines are one per frame, so the job
formats them from the scored frames directly (``ScoreLine.join_frames``), no model per frame.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Self

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic.json_schema import GenerateJsonSchema, SkipJsonSchema

from vad.dead_letter_reasons import DEAD_LETTER_REASONS
from vad.detect import CameraState as DetectorState
from vad.detect import state_from_dict, state_to_dict
from vad.dwell import DwellState, dwell_from_dict, dwell_to_dict

if TYPE_CHECKING:
    from vad.schema import FrameFeatures

EVENT_SCHEMA = "vad.event/v1"
DEAD_LETTER_SCHEMA = "vad.dead-letter/v1"
SCORE_LINE_SCHEMA = "vad.score/v1"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

Phase = Literal["open", "update", "close"]
CloseReason = Literal["score", "gap", "idle", "schedule", "clear", "config"]
Kind = Literal["motion", "loitering"]

_COMPACT = (",", ":")


def _all_required(schema: dict[str, Any], *optional: str) -> None:
    # In the JSON every field is always written (``schema`` too, though the class fills it in), so
    # the published schema requires them all, whatever has a default in Python.
    schema["required"] = [k for k in schema["properties"] if k not in optional]


def _event_schema_extra(schema: dict[str, Any]) -> None:
    _all_required(schema, "close_reason", "kind", "zone")
    schema["allOf"] = [
        {
            "if": {"properties": {"phase": {"const": "close"}}},
            "then": {"required": ["close_reason"]},
            "else": {"not": {"required": ["close_reason"]}},
        },
        {
            "if": {"properties": {"kind": {"const": "loitering"}}, "required": ["kind"]},
            "then": {"required": ["zone"]},
            "else": {"not": {"required": ["zone"]}},
        },
    ]


def _finite_in_json(value: Any, info: ValidationInfo) -> Any:
    # JSON has no NaN or Infinity (RFC 8259), yet pydantic's reader takes them, and NaN never equals
    # itself: a consumer refuses such a record as invalid rather than hand on one other readers choke on.
    floats = [v for row in value for v in row] if isinstance(value, list) else [value]
    if info.mode == "json" and not all(math.isfinite(v) for v in floats):
        raise ValueError("numbers must be finite: JSON has no NaN or Infinity")
    return value


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


class _Versioned(BaseModel):
    """A record with a ``schema`` field: filled in when built in Python, required in JSON read."""

    @model_validator(mode="before")
    @classmethod
    def _version_in_the_json(cls, data: Any, info: ValidationInfo) -> Any:
        if info.mode == "json" and isinstance(data, dict) and "schema" not in data:
            raise ValueError("the record has no schema version")
        return data


class Event(_Versioned):
    """An anomaly event (schema vad.event/v1): one JSON object per message on the events topic and
    per entry of a camera's Redis stream. An episode of one camera is reported as an open event,
    update events while it lasts and one close event, all with the same event_id."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", strict=True, serialize_by_alias=True, json_schema_extra=_event_schema_extra
    )
    SCHEMA: ClassVar[str] = EVENT_SCHEMA

    schema_: Literal["vad.event/v1"] = Field(
        EVENT_SCHEMA,
        alias="schema",
        description="Version of this record's layout. A consumer should refuse a version it does not know.",
        json_schema_extra=_no_default,
    )
    event_id: str = Field(
        pattern=r"^[0-9a-f]{32}$",
        description="The episode's id: a UUID version 5 (32 hex digits) of camera id, start_ts_ms and "
        "start_frame, so a replay of the same frames yields the same id and an episode after an edge restart "
        "(frame indices start again at 0) a new one. Every event of one episode carries it.",
    )
    camera_id: str = Field(
        min_length=1,
        max_length=128,
        description="The camera, as named in its frame-feature records: ASCII segments of letters, digits "
        "and _.:- joined by /, with no empty, . or .. segment.",
    )
    # Motion events leave kind out: they are written byte for byte as before it existed, so a consumer
    # of the earlier vad.event/v1 layout reads them unchanged.
    kind: Kind = Field(
        "motion",
        description="What the episode is, for routing: motion (absent: motion, the model's score; every event "
        "written before this field) or loitering (something stayed in a zone of cameras.<id>.zones for its "
        "min_dwell_s; peak_score is then the zone's highest foreground cue fg, threshold its presence_level, "
        "heatmap empty; or, in zone *, a cell stayed in cameras.<id>.loitering.factor times its longest "
        "normal stay: peak_score is the highest such ratio, threshold the factor, heatmap the ratios per "
        "cell). Written only when not motion.",
    )
    zone: Annotated[str, Field(min_length=1, max_length=64)] | SkipJsonSchema[None] = Field(
        None,
        description="On loitering events only (absent otherwise): the zone's name in cameras.<id>.zones, "
        "or * for learned loitering anywhere in the grid (cameras.<id>.loitering).",
        json_schema_extra=_no_default,
    )
    phase: Phase = Field(
        description="open: the episode starts (the smoothed score stayed at or above the threshold for "
        "detect.min_duration_s); update: every detect.update_every_s while it lasts, with the peak so far; "
        "close: the episode ended (close_reason says why; a dip shorter than detect.merge_gap_s does not "
        "end it). Exactly one open and one close per episode."
    )
    seq: int = Field(
        ge=1,
        description="Number of this event within its episode: 1 for open, then 2, 3, ... (event_id, seq) is "
        "unique, so a consumer can drop a message it has seen (a replay after a restart).",
    )
    start_frame: int = Field(
        ge=0,
        description="Frame index where the episode starts (the producer's 0-based index, counted from the "
        "start of its stream: a restarted edge counts from 0 again).",
    )
    end_frame: int = Field(
        ge=0,
        description="Frame index this event reports up to: the frame that caused it; on close, the "
        "episode's last frame.",
    )
    start_ts_ms: int = Field(ge=0, description="Event time of start_frame, milliseconds since the Unix epoch.")
    ts_ms: int = Field(ge=0, description="Event time of end_frame, milliseconds since the Unix epoch.")
    peak_score: float = Field(
        description="Highest smoothed frame score of the episode so far (exponential moving average, "
        "detect.ema_alpha), rounded to 5 decimals."
    )
    peak_frame: int = Field(ge=0, description="Frame index of peak_score.")
    threshold: float = Field(
        ge=0,
        description="The threshold the smoothed score was compared with (the model's, or detect.threshold, "
        "divided by the camera's sensitivity, or by its schedule's at this event time), rounded to 5 decimals.",
    )
    heatmap: list[list[float]] = Field(
        description="The model's cell scores at peak_frame, rows x cols of the feature grid, rounded to 3 "
        "decimals: where in the image the anomaly is. Empty when the scorer gives no cell scores."
    )
    model_version: str = Field(description="Version of the model that scored the frames (its card's model_version).")
    close_reason: CloseReason | SkipJsonSchema[None] = Field(
        None,
        description="On close events only (absent otherwise): score, the smoothed score fell below "
        "threshold * detect.close_ratio; gap, the camera's stream broke (frames lost or a restart); idle, the "
        "camera stopped sending: its next frame came more than job.idle_timeout_ms of event time after its last, "
        "or none reached the job for job.idle_timeout_ms (another camera's time never closes it; also how a "
        "bounded input's end closes). ts_ms and end_frame are then the camera's last frame's; schedule, a "
        "rule of cameras.<id>.schedule disables the camera from the next frame's event time on: ts_ms and "
        "end_frame are the last frame's before that window; clear (loitering), the zone stayed empty for its hold_s: "
        "ts_ms and end_frame are its last occupied frame's; config (loitering), the zone or the camera's "
        "learned loitering is no longer configured (the job restarted from a savepoint with other zones): the "
        "close comes with the camera's next record, or when it goes idle, and ends at the last occupied frame.",
        json_schema_extra=_no_default,
    )

    _finite = field_validator("peak_score", "threshold", "heatmap")(_finite_in_json)

    @model_validator(mode="after")
    def _close_reason_on_close_only(self) -> Self:
        if (self.phase == "close") != (self.close_reason is not None):
            raise ValueError("close_reason is required on close events and absent on others")
        if (self.kind == "loitering") != (self.zone is not None):
            raise ValueError("zone is required on loitering events and absent on others")
        return self

    def to_dict(self) -> dict[str, Any]:
        """The JSON object, as ``json.loads(to_json())`` gives it."""
        return self.model_dump(exclude=self._absent())

    def to_json(self) -> str:
        """The wire form: compact JSON, fields in the order of the class; what ``to_dict`` holds.
        Serialised by pydantic's encoder: json.dumps of the dict spent 0.14 ms an event, 7x this, on
        the heatmap's floats. The bytes are json.dumps's but for floats under 1e-4 (0.00001 for
        1e-05, the same number); text beyond ASCII is escaped as json.dumps does (\\u00e9)."""
        out = self.model_dump_json(exclude=self._absent())
        return out if out.isascii() else json.dumps(self.to_dict(), separators=_COMPACT)

    def _absent(self) -> set[str]:
        """The fields an event leaves out of its JSON (``to_dict``)."""
        out = set()
        if self.close_reason is None:
            out.add("close_reason")
        if self.kind == "motion":
            out.add("kind")
        if self.zone is None:
            out.add("zone")
        return out

    @classmethod
    def parse(cls, text: str | bytes) -> Event:
        return cls.model_validate_json(text)


class DeadLetter(_Versioned):
    """A record the job could not score (schema vad.dead-letter/v1), one JSON object per message on
    the dead-letter topic. The job goes on with the next record."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", strict=True, serialize_by_alias=True, json_schema_extra=_all_required
    )
    SCHEMA: ClassVar[str] = DEAD_LETTER_SCHEMA
    SAMPLE_BYTES: ClassVar[int] = 256  # enough of a bad payload to debug it, small enough for any topic

    schema_: Literal["vad.dead-letter/v1"] = Field(
        DEAD_LETTER_SCHEMA,
        alias="schema",
        description="Version of this record's layout. A consumer should refuse a version it does not know.",
        json_schema_extra=_no_default,
    )
    reason: str = Field(
        pattern=r"^[a-z][a-z0-9_]*$",
        description="Short stable code of what is wrong, for metrics and alerts: "
        + ", ".join(f"{k} ({v})" if v else k for k, v in DEAD_LETTER_REASONS.items())
        + ".",
    )
    detail: str = Field(description="What exactly is wrong, for a human.")
    camera_id: str | None = Field(
        description="The camera id read from the record's header at best effort; null when unreadable."
    )
    size: int = Field(ge=0, description="Length of the record in bytes.")
    payload_b64: str = Field(
        description="The record's first 256 bytes, base64-encoded; empty for an empty record.",
    )
    seen_ms: int = Field(ge=0, description="Wall-clock time the job rejected the record, ms since the Unix epoch.")

    def to_json(self) -> str:
        """The wire form (``json.dumps`` with its default separators)."""
        return json.dumps(self.model_dump())

    @classmethod
    def parse(cls, text: str | bytes) -> DeadLetter:
        return cls.model_validate_json(text)


class ScoreLine(BaseModel):
    """One scored frame (version vad.score/v1), one JSON object per message on the scores topic
    (written when job.emit_scores is on). The version is not carried in each line: the lines are one
    per frame, and every byte of them is paid for at the frame rate."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, json_schema_extra=_all_required)
    SCHEMA: ClassVar[str] = SCORE_LINE_SCHEMA

    camera_id: str = Field(min_length=1, max_length=128, description="The camera, as in its frame-feature records.")
    frame_index: int = Field(ge=0, description="The frame's index (the producer's 0-based index).")
    ts_ms: int = Field(ge=0, description="The frame's event time, milliseconds since the Unix epoch.")
    score: float = Field(
        description="The model's frame score (the highest of its cell scores), before smoothing and any camera "
        "mask; the float32 value written exactly (shortest repr of the float64 holding it)."
    )
    _finite = field_validator("score")(_finite_in_json)

    def to_json(self) -> str:
        return ScoreLine.join_frames([self], [self.score])

    @classmethod
    def parse(cls, text: str | bytes) -> ScoreLine:
        return cls.model_validate_json(text)

    @staticmethod
    def join_frames(frames: Sequence[FrameFeatures | ScoreLine], scores: Sequence[float]) -> str:
        """The score lines of scored frames, newline-joined; the same text as ``to_json`` of each.
        Formatted by hand: a model, or json.dumps of a dict, per frame profiled as a tenth of the
        scoring operator. repr(float) is what json.dumps writes; each camera id is JSON-quoted once."""
        quoted = {cam: json.dumps(cam) for cam in {r.camera_id for r in frames}}
        return "\n".join(
            [
                f'{{"camera_id":{quoted[r.camera_id]},"frame_index":{r.frame_index},"ts_ms":{r.ts_ms},"score":{s!r}}}'
                for r, s in zip(frames, scores, strict=True)
            ]
        )


@dataclass(slots=True, eq=False)
class CameraState:
    """One camera's keyed state in the scoring operator (a MapState entry of its shard, pickled).

    Pickled as (version, frame, grids, the detector state as a dict: ``vad.detect.state_to_dict``,
    ts)
    through ``_restore_camera_state``: the stored form names no class but that function, so it does
    not depend on the classes' names or layout, and a new version can convert what an older job
    stored. Version 1 is the plain dict {"frame", "grids", "det"} the job stored before this class:
    ``load`` still reads it, so the job resumes from such a savepoint.

    The state cache of PyFlink's MapState hands back the object last put, so a camera's state is
    pickled only when Flink writes it out (a bundle's end), not on every batch."""

    VERSION: ClassVar[int] = 4

    frame: int | None = None  # the last frame index scored; None before the first
    grids: list[np.ndarray] = field(default_factory=list)  # the last T-1 grids, oldest first (float32)
    det: DetectorState | None = None  # the episode detector's state; None before the first frame
    # The event time of the last frame scored: frames are ordered by (ts, frame), as an edge restart
    # starts its frame indices at 0 again (vad.detect).
    ts: int | None = None
    dwell: DwellState | None = None  # the dwell detector's state; None for a camera without zones

    def __reduce__(self):
        det = None if self.det is None else state_to_dict(self.det)
        dwell = None if self.dwell is None else dwell_to_dict(self.dwell)
        return _restore_camera_state, (self.VERSION, self.frame, self.grids, det, self.ts, dwell)

    @classmethod
    def load(cls, stored: CameraState | dict) -> CameraState:
        """The state as read from Flink: this class (versions 2 and 3), or a version-1 dict."""
        if type(stored) is cls:
            return stored
        if isinstance(stored, dict):
            return _restore_camera_state(1, stored.get("frame"), stored.get("grids") or [], stored.get("det"))
        raise TypeError(f"not a camera state: {type(stored).__name__}")


def _restore_camera_state(
    version: int, frame: int | None, grids: list, det: dict | None, ts: int | None = None, dwell: dict | None = None
) -> CameraState:
    # Named in every pickled CameraState: keep the name and keep reading every version written.
    # Versions 1 and 2 hold the same fields (1 as a dict, read by CameraState.load); 3 adds ts, which
    # for the older ones is the detector's last event time (it saw every frame scored); 4 adds the
    # dwell state, which older ones have none of (their stays start afresh).
    if version not in (1, 2, 3, 4):
        raise ValueError(f"camera state version {version}, this job reads up to {CameraState.VERSION}")
    restored = state_from_dict(det) if det else None
    if version < 3 and frame is not None:
        ts = restored.last_ts if restored is not None else 0
    return CameraState(frame, list(grids), restored, ts, dwell_from_dict(dwell) if dwell else None)


class _Generator(GenerateJsonSchema):
    """Pydantic's JSON Schema without a title per field (the name says it) and with its dialect."""

    def field_title_should_be_set(self, schema) -> bool:
        return False

    def generate(self, schema, mode="validation"):
        out = super().generate(schema, mode)
        out["description"] = " ".join(out["description"].split())  # the class docstring, unwrapped
        first = ("title", "description", "type", "properties", "required", "additionalProperties")
        return {"$schema": JSON_SCHEMA_DIALECT, **{k: out[k] for k in first if k in out}, **out}


PUBLISHED: dict[str, type[BaseModel]] = {
    "event.schema.json": Event,
    "dead_letter.schema.json": DeadLetter,
    "score_line.schema.json": ScoreLine,
}


def json_schemas() -> dict[str, str]:
    """{file name: its text}: the JSON Schemas of the published records, as committed in docs/schemas."""
    return {
        name: json.dumps(cls.model_json_schema(schema_generator=_Generator), indent=2) + "\n"
        for name, cls in PUBLISHED.items()
    }


def write_schemas(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, text in json_schemas().items():
        (folder / name).write_text(text)
        out.append(folder / name)
    return out


def stale_schemas(folder: Path) -> list[str]:
    """The published schema files in ``folder`` that are missing or differ from the classes."""
    return [
        name
        for name, text in json_schemas().items()
        if not (folder / name).is_file() or (folder / name).read_text() != text
    ]
