"""The whole configuration: its sections, the per-camera section, and the checks across them."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import (
    Field,
    ValidationError,
    model_validator,
)

from vad.config.edge import CameraConfig, CameraId, EdgeConfig, EdgeSettings
from vad.config.sections import (
    REPO_ROOT,
    ClusterConfig,
    DetectConfig,
    JobConfig,
    KafkaConfig,
    RedisConfig,
    StackConfig,
    _Strict,
)
from vad.config.ui import UiConfig

# Keys of the sections before per-camera settings had one place, and where they went.
_MOVED = {
    ("edge", "cameras"): "the top-level `cameras` section, keyed by camera id",
    ("detect", "cameras"): "the top-level `cameras` section (sensitivity, mask)",
    ("edge", "mask"): "`cameras.<id>.mask` (a mask belongs to one camera's view)",
    ("detect", "min_frames"): "`detect.min_duration_s` (seconds of event time)",
    ("detect", "cooldown_frames"): "`detect.cooldown_s` (seconds of event time)",
    ("detect", "update_every"): "`detect.update_every_s` (seconds of event time)",
}


class Config(_Strict):
    """The whole configuration."""

    kafka: KafkaConfig = Field(KafkaConfig(), description="Kafka connection and topic names")
    redis: RedisConfig = Field(RedisConfig(), description="Redis, where the job writes events and camera state")
    stack: StackConfig = Field(StackConfig(), description="the embedded single-machine stack of `vad stack up`")
    cluster: ClusterConfig = Field(ClusterConfig(), description="the Flink session cluster of `vad submit`")
    edge: EdgeConfig = Field(EdgeConfig(), description="the edge producer and the settings every camera starts from")
    job: JobConfig = Field(JobConfig(), description="the Flink job")
    detect: DetectConfig = Field(DetectConfig(), description="episode detection")
    ui: UiConfig = Field(UiConfig(), description="the live review page of `vad ui`")
    cameras: dict[CameraId, CameraConfig] = Field(  # type: ignore[valid-type]
        default_factory=dict,
        max_length=1024,
        description="per camera, keyed by its id (ASCII segments of letters, digits and _.:- joined by /): "
        "source, mask, sensitivity, time zone and schedule, and any edge setting above compression to override; "
        "`vad produce --all` streams each",
        examples=[
            {
                "gate-3": {
                    "source": "rtsp://camera-host/stream",
                    "flow_scale": 0.25,
                    "sensitivity": 1.5,
                    "timezone": "Europe/Berlin",
                    "schedule": [
                        {"start": "22:00", "end": "06:00", "enabled": False},
                        {"days": ["sat", "sun"], "start": "10:00", "end": "18:00", "sensitivity": 0.7},
                    ],
                }
            }
        ],
    )

    @model_validator(mode="before")
    @classmethod
    def _refuse_moved(cls, data: Any) -> Any:
        if isinstance(data, dict):
            moved = [
                f"{sec}.{key}: moved to {where}"
                for (sec, key), where in _MOVED.items()
                if isinstance(data.get(sec), dict) and key in data[sec]
            ]
            if moved:
                raise ValueError("; ".join(moved))
        return data

    @model_validator(mode="after")
    def _cameras_resolve(self) -> Config:
        errors = []
        for cid, cam in self.cameras.items():
            try:
                s = self.edge.settings_for(cam)
            except ValidationError as e:
                errors += [f"cameras.{cid}.{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors()]
                continue
            bad = [c for c in cam.mask if c[0] >= s.grid_rows or c[1] >= s.grid_cols]
            if bad:
                errors.append(
                    f"cameras.{cid}.mask: cells {bad[:5]} outside the camera's {s.grid_rows}x{s.grid_cols} grid"
                )
            errors += _zone_errors(cid, cam, s.grid_rows, s.grid_cols)
            if cam.view is not None and self.job.model_registry is None:
                errors.append(f"cameras.{cid}.view: {cam.view!r} needs job.model_registry, which is null")
        if errors:
            raise ValueError("; ".join(errors))
        return self

    def views(self) -> dict[str, str]:
        """Camera id -> its view in the model registry, for the cameras that have one."""
        return views_of(self.cameras)

    def camera(self, camera_id: str) -> Any | None:
        """The camera's entry in ``cameras``, or None."""
        return self.cameras.get(camera_id)

    def edge_settings(self, camera_id: str) -> EdgeSettings:
        """The settings the camera's edge runs with: ``edge`` and the camera's overrides."""
        return self.edge.settings_for(self.cameras.get(camera_id))

    def mask_for(self, camera_id: str) -> list[tuple[int, int]]:
        """The camera's mask (``cameras.<id>.mask``), empty for a camera not listed."""
        cam = self.cameras.get(camera_id)
        return list(cam.mask) if cam is not None else []

    def resolve_uri(self, where: str) -> str:
        """A local path (relative to the repository) as a file:// URI; URIs pass through."""
        return where if "://" in where else self.resolve(Path(where)).as_uri()

    def resolve(self, path: Path) -> Path:
        """Relative paths in the config are relative to the repository root, not the cwd."""
        return path if path.is_absolute() else REPO_ROOT / path


def _zone_errors(cid: str, cam: Any, rows: int, cols: int) -> list[str]:
    # The edge zeroes masked cells, so a zone of masked cells only could never be occupied.
    errors = []
    masked = set(cam.mask)
    for name, zone in cam.zones.items():
        where = f"cameras.{cid}.zones.{name}.cells"
        bad = [c for c in zone.cells if c[0] >= rows or c[1] >= cols]
        if bad:
            errors.append(f"{where}: cells {bad[:5]} outside the camera's {rows}x{cols} grid")
        elif all(c in masked for c in zone.cells):
            errors.append(f"{where}: every cell is in cameras.{cid}.mask, whose features are zeroed")
    return errors


def views_of(cameras: Mapping[str, Any]) -> dict[str, str]:
    """Camera id -> its view in the model registry, for the ``cameras`` entries that name one."""
    return {cid: cam.view for cid, cam in cameras.items() if getattr(cam, "view", None) is not None}


def state_dir(cfg: Config) -> Path:
    """The local stack's state folder (broker and Redis data, pid files, local job logs), absolute.
    Resolved: a pid file is matched against the process's real working directory."""
    return cfg.resolve(cfg.stack.state_dir).resolve()
