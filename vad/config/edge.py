"""The edge's settings (what every camera starts from) and one camera's entry in ``cameras``, which
may override any of them."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    create_model,
)

from vad.config.schedule import SENSITIVITY_GT, SENSITIVITY_LE, ScheduleRule, check_timezone
from vad.config.sections import _Strict
from vad.config.zones import LearnedLoiteringConfig, ZoneConfig, ZoneName
from vad.schema import SchemaError, validate_camera_id

Cell = tuple[Annotated[int, Field(ge=0, le=255)], Annotated[int, Field(ge=0, le=255)]]


class EdgeSettings(_Strict):
    """The feature and capture settings of one camera: the ``edge`` section's values, with the ones its
    ``cameras.<id>`` entry overrides.

    The feature fields (grid, flow, scale, normalisation, resize, sampling) must match the model's
    card: a model learns what the features of its camera look like under exactly these settings.
    """

    grid_rows: int = Field(12, ge=1, le=256, description="rows of the feature grid")
    grid_cols: int = Field(18, ge=1, le=256, description="columns of the feature grid")
    # DIS matches mean-normalised patches, so a global brightness change moves no flow.
    flow: Literal["dis", "farneback"] = Field(
        "dis",
        description="optical flow method; dis separated anomalies on training clips as well as farneback "
        "at about a fifth of the cost",
    )
    dis_preset: Literal["ultrafast", "fast", "medium"] = Field(
        "ultrafast", description="OpenCV DIS preset; the dis_* fields below override its knobs"
    )
    # The knobs below were chosen on training clips only (held-out normal clips against synthetic
    # anomalies, models/README.md); null keeps the preset's value.
    dis_finest_scale: int | None = Field(
        1, ge=0, le=6, description="pyramid level DIS stops at (0: full size; null: the preset's)"
    )
    dis_iterations: int | None = Field(
        25, ge=1, le=200, description="gradient descent iterations per level (null: the preset's)"
    )
    dis_refine_iterations: int | None = Field(
        None, ge=0, le=100, description="variational refinement iterations (null: the preset's)"
    )
    dis_patch_stride: int | None = Field(
        5, ge=1, le=32, description="pixels between DIS patches (null: the preset's, 4 for ultrafast)"
    )
    flow_scale: float = Field(0.5, gt=0.05, le=1.0, description="flow is computed at this fraction of the frame size")
    # A floor under flow_scale: a low-resolution camera at half size loses its small, far objects.
    flow_min_height: int = Field(
        120, ge=0, le=4320, description="compute flow on at least this many rows (the frame's own if fewer; 0: off)"
    )
    # Shake and pans move every textured pixel; without this a swaying pole is one long alarm.
    compensate_camera_motion: bool = Field(
        True,
        description="subtract the flow most of the frame shares (shake, sway, pan, tilt) before the cells "
        "are measured; a still camera's features are unchanged",
    )
    normalise: Literal["none", "equalize", "clahe"] = Field(
        "none",
        description="lighting normalisation before flow, for cameras whose contrast swings (night, IR); "
        "the model must be trained with the same",
    )
    flow_gate: float = Field(
        4.0, ge=0, le=255, description="zero flow where the 3x3-blurred frame difference is below this (0: off)"
    )
    clahe_clip: float = Field(2.0, gt=0, le=40, description="CLAHE contrast limit (normalise: clahe)")
    resize: tuple[Annotated[int, Field(ge=16, le=8192)], Annotated[int, Field(ge=16, le=8192)]] | None = Field(
        None, description="(width, height) frames are resized to before anything else; null keeps the size"
    )
    sample_every: int = Field(1, ge=1, le=1000, description="keep every n-th decoded frame")
    # The defaults (flow, gate, smoothing, detector durations in frames) were chosen on 10 fps video,
    # so a faster camera is analysed at that rate too, at a fraction of the cost.
    target_fps: float | None = Field(
        10.0, gt=0, le=240, description="then keep frames at about this rate (null: every frame sample_every keeps)"
    )
    fps: float = Field(10.0, gt=0, le=240, description="frame rate assumed when the source reports none")
    realtime: bool = Field(False, description="pace files at their native fps (streams are always live)")
    decoder: Literal["auto", "pyav", "opencv"] = Field("auto", description="video decoder; auto: PyAV when installed")
    decode_threads: int = Field(1, ge=0, le=64, description="decoder threads per camera; 0 lets FFmpeg pick")
    reconnect: Literal["auto", "always", "never"] = Field(
        "auto", description="reopen a source that ends or fails; auto: streams and devices only"
    )
    reconnect_initial_s: float = Field(
        0.5, ge=0.0, le=60, description="first reconnect delay, doubling per failed attempt"
    )
    reconnect_max_s: float = Field(30.0, ge=0.0, le=3600, description="longest reconnect delay")
    reconnect_attempts: int = Field(20, ge=0, le=1_000_000, description="consecutive failures before giving up")
    open_timeout_s: float = Field(10.0, gt=0, le=600, description="timeout opening a stream")
    read_timeout_s: float = Field(10.0, gt=0, le=600, description="timeout reading a frame from a stream")
    max_consecutive_corrupt: int = Field(
        100, ge=1, le=1_000_000, description="undecodable frames in a row after which the source counts as down"
    )
    # A covered or darkened camera sends no motion, which scores as normal: nothing else would tell.
    blind_after_s: float | None = Field(
        10.0,
        ge=0.5,
        le=86_400,
        description="a camera whose picture stays flat this long (event time) counts as blind: warned about "
        "and counted (vad_edge_blind); null: not checked",
    )
    blind_contrast: float = Field(
        3.0,
        gt=0,
        le=64,
        description="a picture is flat when its grey levels' standard deviation over every 8th pixel is "
        "below this (UCSD walkways: 38 or more); a blind camera sees again at twice it",
    )


def _camera_id(value: str) -> str:
    # The edge refuses to send any other id, so the config refuses it at load.
    try:
        return validate_camera_id(value)
    except SchemaError as e:
        raise ValueError(str(e)) from None


CameraId = Annotated[str, AfterValidator(_camera_id)]


class _CameraBase(_Strict):
    """One camera: where its video comes from, what it ignores, how readily it alerts, and any edge
    setting it overrides (null or absent: the ``edge`` section's value)."""

    source: str | None = Field(
        None,
        min_length=1,
        max_length=4096,
        description="file, stream URL or device number; null: only `vad produce --camera ID --source ...` streams it",
    )
    # One mask, applied twice: zeroed features keep the region's motion out of the model's windows,
    # and the cells' scores are ignored too, because zeros amid motion can themselves look anomalous.
    mask: list[Cell] = Field(
        default_factory=list,
        max_length=65536,
        description="(row, col) cells of the feature grid this camera ignores: their features are zeroed at the "
        "edge and their scores left out of the frame score in detection; checked against the camera's grid",
    )
    sensitivity: float = Field(
        1.0,
        gt=SENSITIVITY_GT,
        le=SENSITIVITY_LE,
        description="detection threshold divisor: above 1 the camera alerts more readily",
    )
    # A model learns one view's normal activity: cameras that see the same view can share it.
    view: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="the camera's view in `job.model_registry`: it is scored with that view's newest model "
        "version, picked up without a restart; null: `job.model_path`",
    )
    timezone: Annotated[str, AfterValidator(check_timezone)] = Field(
        "UTC",
        min_length=1,
        max_length=64,
        description="IANA time zone (Europe/Berlin) the schedule's days and times are in; daylight saving included",
    )
    # Applied to the frames' event time, not the clock of the machine scoring them, so a replay of the
    # same records gives the same events.
    schedule: list[ScheduleRule] = Field(
        default_factory=list,
        max_length=64,
        description="rules that disable the camera or change its sensitivity by weekday and local time, in "
        "event time; the first matching rule wins, outside all of them `sensitivity` applies",
    )
    zones: dict[ZoneName, ZoneConfig] = Field(
        default_factory=dict,
        max_length=64,
        description="named regions of cells the job watches for loitering: something staying in one for its "
        "min_dwell_s opens an event of kind loitering (vad/dwell.py); empty: motion events only",
    )
    loitering: LearnedLoiteringConfig | None = Field(
        None,
        description="loitering anywhere in the grid against the model card's normal dwell times per cell "
        "(needs a card with `dwell`, from `vad train`); null: only the zones",
    )
    # The job sees features only, never frames: a background is an image the operator chose to provide.
    snapshot_path: str | None = Field(
        None,
        min_length=1,
        max_length=4096,
        description="image file (PNG or JPEG) the review page draws the camera's heatmaps over; null: none",
    )
    snapshot_allowed: bool = Field(
        False, description="let the review page show snapshot_path (privacy: off unless the site allows it)"
    )


def _overridable(model: type[BaseModel]) -> dict[str, Any]:
    # Same types and bounds as EdgeSettings, but optional: None means "inherit from edge".
    out: dict[str, Any] = {}
    for name, f in model.model_fields.items():
        ann = Annotated[(f.annotation, *f.metadata)] if f.metadata else f.annotation
        out[name] = (Optional[ann], Field(None, description=f.description))  # noqa: UP045
    return out


CameraConfig = create_model(  # type: ignore[misc]
    "CameraConfig", __base__=_CameraBase, __doc__=_CameraBase.__doc__, **_overridable(EdgeSettings)
)
CAMERA_OWN_FIELDS = tuple(_CameraBase.model_fields)


class EdgeConfig(EdgeSettings):
    """The edge producer (`vad produce`): the EdgeSettings every camera starts from, and the Kafka send
    path. Each field above ``compression`` can be overridden per camera in ``cameras.<id>``."""

    compression: Literal["none", "gzip", "lz4", "zstd"] = Field("lz4", description="Kafka compression of the records")
    # Every byte of a record is copied several times on its way through the job.
    wire_precision: Literal["float16", "float32"] = Field(
        "float16",
        description="feature values' type on the wire (vad/schema.py): float16 makes a record about 40 % "
        "smaller and moves the model's scores by at most 0.04 %; float32 sends the values exactly",
    )
    # A live camera's records go out one by one whatever the linger, so there it only adds latency.
    linger_ms: int = Field(20, ge=0, le=5000, description="producer linger for live sources and --realtime files")
    # A file backfilled as fast as it decodes sends hundreds of records a second: the request rate is the cost.
    backfill_linger_ms: int = Field(
        50, ge=0, le=5000, description="producer linger when every source is a file backfilled as fast as it decodes"
    )
    queue_size: int = Field(256, ge=1, le=100_000, description="records between capture and send, per camera")
    queue_block_ms: int = Field(
        0, ge=0, le=60_000, description="a live source waits this long for queue space, then drops the record"
    )
    send_timeout_s: float = Field(
        30.0, gt=0, le=3600, description="a backfilled file's wait for queue space; the final flush's bound"
    )
    # kafka-python's default; a record is acknowledged or failed within it, so a client that reports
    # nothing for longer (plus a margin) while records are outstanding is stuck (vad/edge/stall.py).
    delivery_timeout_s: float = Field(
        120.0,
        ge=35,
        le=3600,
        description="a record not acknowledged within this is failed (and the next one flagged GAP); no "
        "delivery reported for this plus 30 s while records are outstanding ends the process (exit 1)",
    )
    stats_every_s: float = Field(10.0, ge=0.5, le=3600, description="per-camera counters logged this often")
    # Half a second of backlog is five frames at 10 fps, and it adds to every event's latency.
    lag_warn_ms: int = Field(500, ge=50, le=600_000, description="warn when a paced camera's backlog passes this")
    metrics_port: int | None = Field(
        None, ge=1, le=65535, description="serve Prometheus /metrics from the edge process on this port; null: off"
    )
    # Loopback unless opened on purpose: the counters name every camera.
    metrics_host: str = Field(
        "127.0.0.1", min_length=1, max_length=253, description="address /metrics binds to (0.0.0.0: every interface)"
    )
    progress: bool = Field(True, description="tqdm progress bar for files")

    def settings_for(self, cam: Any | None = None) -> EdgeSettings:
        """This section's EdgeSettings with the camera's overrides applied (validated again). An
        override is a field the camera's entry sets, null included (``target_fps: null``)."""
        base = {k: getattr(self, k) for k in EdgeSettings.model_fields}
        if cam is not None:
            base.update({k: getattr(cam, k) for k in cam.model_fields_set if k in EdgeSettings.model_fields})
        return EdgeSettings.model_validate(base)
