"""One typed configuration for the whole system: YAML file, then ``VAD_`` environment overrides.

Every field has a default and bounds; unknown keys are refused (``extra="forbid"``) so a typo fails at
start with the field's path instead of being silently ignored. Environment overrides use ``__`` to
descend: ``VAD_JOB__PARALLELISM=4``, ``VAD_REDIS__PASSWORD=...``. Secrets (passwords) are SecretStr so
they never print in logs or ``--validate-config`` output.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

ENV_PREFIX = "VAD_"
REPO_ROOT = Path(__file__).resolve().parent.parent


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


TopicName = Annotated[str, Field(min_length=1, max_length=249, pattern=r"^[A-Za-z0-9._\-]+$")]
Port = Annotated[int, Field(ge=1, le=65535)]


class TopicsConfig(_Strict):
    features: TopicName = "vad.frame-features"
    events: TopicName = "vad.events"
    dead_letter: TopicName = "vad.dead-letter"
    scores: TopicName = "vad.frame-scores"
    partitions: int = Field(4, ge=1, le=1024, description="partitions for topics the stack creates")


class KafkaConfig(_Strict):
    bootstrap_servers: str = Field("127.0.0.1:9092", min_length=3)
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = None
    group_id: str = Field("vad-job", min_length=1, max_length=255)
    topics: TopicsConfig = TopicsConfig()


class RedisConfig(_Strict):
    host: str = "127.0.0.1"
    port: Port = 6379
    db: int = Field(0, ge=0, le=15)
    password: SecretStr | None = None
    tls: bool = False
    key_prefix: str = Field("vad", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    stream_maxlen: int = Field(10_000, ge=10, le=10_000_000, description="entries kept per camera stream")
    event_ttl_s: int = Field(7 * 86400, ge=60, le=365 * 86400, description="dedup keys and recent index")
    retry_attempts: int = Field(8, ge=1, le=100)
    retry_backoff_ms: int = Field(100, ge=1, le=60_000)
    timeout_s: float = Field(2.0, gt=0, le=60)


class StackConfig(_Strict):
    """The embedded single-machine stack (`vad stack up`): a KRaft broker and a Redis server."""

    state_dir: Path = Path(".cache/stack")
    kafka_port: Port = 9092
    controller_port: Port = 9093
    redis_port: Port = 6379
    kafka_heap_mb: int = Field(512, ge=128, le=8192)
    start_timeout_s: float = Field(90, ge=5, le=900)


class EdgeConfig(_Strict):
    grid_rows: int = Field(12, ge=1, le=256)
    grid_cols: int = Field(18, ge=1, le=256)
    flow: Literal["dis", "farneback"] = "dis"
    dis_preset: Literal["ultrafast", "fast", "medium"] = "medium"
    flow_scale: float = Field(0.5, gt=0.05, le=1.0, description="flow computed at this fraction of size")
    normalise: Literal["none", "equalize", "clahe"] = "clahe"
    sample_every: int = Field(1, ge=1, le=1000, description="keep every n-th decoded frame")
    fps: float = Field(10.0, gt=0, le=240, description="used when the source reports no frame rate")
    realtime: bool = False
    compression: Literal["none", "gzip", "lz4", "zstd"] = "lz4"
    linger_ms: int = Field(20, ge=0, le=5000)
    queue_size: int = Field(256, ge=1, le=100_000)


class JobConfig(_Strict):
    parallelism: int = Field(1, ge=1, le=1024)
    model_path: Path = Path("models/default/model.onnx")
    window: int = Field(8, ge=1, le=64, description="grids per scored window (T)")
    stride: int = Field(1, ge=1, le=64, description="emit a window every `stride` frames")
    score_shards: int = Field(4, ge=1, le=4096, description="keys across which windows are batched")
    batch_size: int = Field(64, ge=1, le=4096)
    batch_max_delay_ms: int = Field(50, ge=1, le=10_000, description="flush a partial batch after this")
    checkpoint_interval_ms: int = Field(5000, ge=100, le=3_600_000)
    delivery: Literal["at_least_once", "exactly_once"] = "at_least_once"
    transaction_timeout_ms: int = Field(600_000, ge=10_000, le=900_000, description="<= broker max")
    bounded: bool = Field(False, description="stop at the offsets current at start (demo, tests)")
    start_from: Literal["earliest", "latest", "committed"] = "earliest"
    watermark_ooo_ms: int = Field(500, ge=0, le=600_000)
    idle_timeout_ms: int = Field(5000, ge=100, le=3_600_000)
    bundle_size: int = Field(100, ge=1, le=100_000)
    bundle_time_ms: int = Field(20, ge=1, le=60_000)
    emit_scores: bool = False
    state_backend: Literal["hashmap", "rocksdb"] = "hashmap"
    state_ttl_s: int = Field(3600, ge=60, le=30 * 86400, description="forget cameras silent this long")


class CameraOverride(_Strict):
    sensitivity: float = Field(1.0, gt=0, le=100, description=">1 lowers the threshold")
    mask: list[tuple[int, int]] = Field(default_factory=list, description="(row, col) cells to ignore")


class DetectConfig(_Strict):
    threshold: float | None = Field(None, gt=0, description="fixed frame-score threshold; else card")
    calibration_quantile: Literal["0.99", "0.995", "0.999", "0.9999"] = "0.999"
    ema_alpha: float = Field(0.5, gt=0, le=1, description="causal smoothing weight of the new score")
    close_ratio: float = Field(0.8, gt=0, le=1, description="close below threshold * close_ratio")
    min_frames: int = Field(3, ge=1, le=1000, description="frames above threshold before OPEN")
    cooldown_frames: int = Field(10, ge=0, le=100_000, description="frames after CLOSE before a new OPEN")
    update_every: int = Field(10, ge=1, le=100_000, description="UPDATE an open event every n frames")
    cameras: dict[str, CameraOverride] = Field(default_factory=dict)


class Config(_Strict):
    kafka: KafkaConfig = KafkaConfig()
    redis: RedisConfig = RedisConfig()
    stack: StackConfig = StackConfig()
    edge: EdgeConfig = EdgeConfig()
    job: JobConfig = JobConfig()
    detect: DetectConfig = DetectConfig()

    def resolve(self, path: Path) -> Path:
        """Relative paths in the config are relative to the repository root, not the cwd."""
        return path if path.is_absolute() else REPO_ROOT / path


class ConfigError(ValueError):
    """Bad configuration; the message names each offending field by its dotted path."""


def _apply_env(data: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    for key, raw in sorted(env.items()):
        if not key.startswith(ENV_PREFIX) or "__" not in key:
            continue
        path = [p.lower() for p in key[len(ENV_PREFIX) :].split("__")]
        node = data
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        # YAML parsing gives "4" -> 4, "true" -> True, "[1, 2]" -> list, like the file would.
        try:
            node[path[-1]] = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError:
            node[path[-1]] = raw
    return data


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"invalid configuration ({source}):"]
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "<root>"
        lines.append(f"  {where}: {e['msg']}")
    return "\n".join(lines)


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Load YAML (optional) plus environment overrides; raise ConfigError naming the bad fields."""
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        p = Path(path)
        source = str(p)
        try:
            loaded = yaml.safe_load(p.read_text()) or {}
        except FileNotFoundError as e:
            raise ConfigError(f"config file not found: {p}") from e
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {p} is not valid YAML: {e}") from e
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {p} must hold a mapping at the top level")
        data = loaded
    data = _apply_env(data, env)
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_errors(e, source)) from None


def dump_config(cfg: Config) -> str:
    """YAML of the effective config with secrets masked (SecretStr prints as **********)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
