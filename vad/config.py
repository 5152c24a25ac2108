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
from typing import Annotated, Any, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, create_model, model_validator

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


class ClusterConfig(_Strict):
    """A Flink session cluster: where `vad submit` sends the job (any standalone, Kubernetes-session or
    YARN-session cluster's REST endpoint), and what `vad stack up --cluster` starts on this machine
    (one JobManager and one TaskManager on 127.0.0.1, REST on the port of ``rest_address``)."""

    rest_address: str = Field("127.0.0.1:8081", pattern=r"^[A-Za-z0-9.\-]+:\d{1,5}$", description="host:port")
    rpc_port: Port = Field(6123, description="JobManager RPC port of the local cluster")
    task_slots: int = Field(2, ge=1, le=64, description="slots of the local TaskManager")
    jobmanager_memory_mb: int = Field(1024, ge=512, le=65536)
    taskmanager_memory_mb: int = Field(1728, ge=1024, le=262144)
    flink_home: Path | None = Field(None, description="Flink distribution; None: the one pyflink ships")
    start_timeout_s: float = Field(180, ge=10, le=1800)
    submit_timeout_s: float = Field(300, ge=10, le=3600, description="bound of one `flink run`")
    savepoint_timeout_s: float = Field(300, ge=5, le=3600)


Cell = tuple[Annotated[int, Field(ge=0, le=255)], Annotated[int, Field(ge=0, le=255)]]


class EdgeSettings(_Strict):
    """Feature and capture settings a camera may override (``edge.cameras[i].<field>``).

    The feature fields (grid, flow, scale, normalisation, resize, sampling) must match the model's
    card: a model learns what the features of its camera look like under exactly these settings.
    """

    grid_rows: int = Field(12, ge=1, le=256)
    grid_cols: int = Field(18, ge=1, le=256)
    # DIS ultrafast refined to pyramid level 1 at half size, 25 descent iterations, no lighting
    # normalisation: chosen on training clips only (held-out normal clips against synthetic anomalies,
    # models/README.md), where it separated anomalies as well as Farneback at half size for a fifth of
    # the cost: ~460-590 frames/s per core end to end with Kafka sends. DIS matches mean-normalised patches, so a global
    # brightness change moves no flow; equalisation made it worse here. `flow: farneback` remains.
    flow: Literal["dis", "farneback"] = "dis"
    dis_preset: Literal["ultrafast", "fast", "medium"] = "ultrafast"
    # Optional overrides of the preset's knobs; None keeps the preset's value.
    dis_finest_scale: int | None = Field(1, ge=0, le=6, description="pyramid level DIS stops at (0 = full)")
    dis_iterations: int | None = Field(25, ge=1, le=200, description="gradient descent iterations per level")
    dis_refine_iterations: int | None = Field(None, ge=0, le=100, description="variational refinement iterations")
    dis_patch_stride: int | None = Field(5, ge=1, le=32, description="pixels between DIS patches (preset: 4)")
    flow_scale: float = Field(0.5, gt=0.05, le=1.0, description="flow computed at this fraction of size")
    # A floor on the flow's height: half size suits Ped2's 240 rows (flow at 120), but on a
    # low-resolution camera it loses the small, far objects (Ped2 with flow at 84 rows instead of 120:
    # training-clip proxy 0.9915 against 0.9987, models/README.md). Costs nothing at 240 rows or more.
    flow_min_height: int = Field(
        120, ge=0, le=4320, description="compute flow on at least this many rows (the frame's own if fewer; 0: off)"
    )
    # For cameras whose contrast swings (night, IR): equalize or clahe, and a model trained with it.
    normalise: Literal["none", "equalize", "clahe"] = "none"
    flow_gate: float = Field(
        4.0, ge=0, le=255, description="zero flow where the 3x3-blurred frame difference is below this (0 = off)"
    )
    clahe_clip: float = Field(2.0, gt=0, le=40, description="CLAHE contrast limit")
    resize: tuple[Annotated[int, Field(ge=16, le=8192)], Annotated[int, Field(ge=16, le=8192)]] | None = Field(
        None, description="(width, height) frames are resized to before anything else; None keeps the size"
    )
    mask: list[Cell] = Field(default_factory=list, max_length=65536, description="(row, col) cells zeroed")
    sample_every: int = Field(1, ge=1, le=1000, description="keep every n-th decoded frame")
    # The defaults (flow, gate, smoothing, detector durations in frames) were chosen on 10 fps video:
    # a 25-30 fps camera is analysed at ~10 fps too, at a third of the cost per camera. A rate at or
    # above the camera's (or null) keeps every frame.
    target_fps: float | None = Field(
        10.0, gt=0, le=240, description="then keep frames at about this rate (null: every frame sample_every keeps)"
    )
    fps: float = Field(10.0, gt=0, le=240, description="used when the source reports no frame rate")
    realtime: bool = Field(False, description="pace files at their native fps (streams are always live)")
    decoder: Literal["auto", "pyav", "opencv"] = Field("auto", description="auto: PyAV when installed")
    decode_threads: int = Field(1, ge=0, le=64, description="decoder threads per camera; 0 lets FFmpeg pick")
    reconnect: Literal["auto", "always", "never"] = Field("auto", description="auto: streams and devices only")
    reconnect_initial_s: float = Field(0.5, ge=0.0, le=60)
    reconnect_max_s: float = Field(30.0, ge=0.0, le=3600)
    reconnect_attempts: int = Field(20, ge=0, le=1_000_000, description="consecutive failures before giving up")
    open_timeout_s: float = Field(10.0, gt=0, le=600)
    read_timeout_s: float = Field(10.0, gt=0, le=600)
    max_consecutive_corrupt: int = Field(100, ge=1, le=1_000_000, description="then the source counts as down")


class _CameraBase(_Strict):
    """One camera of ``edge.cameras``: an id, a source, and any EdgeSettings field to override."""

    id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:\-/]*$")
    source: str = Field(min_length=1, max_length=4096, description="file, stream URL or device number")


def _overridable(model: type[BaseModel]) -> dict[str, Any]:
    # Same types and bounds as EdgeSettings, but optional: None means "inherit from edge".
    out: dict[str, Any] = {}
    for name, f in model.model_fields.items():
        ann = Annotated[(f.annotation, *f.metadata)] if f.metadata else f.annotation
        out[name] = (Optional[ann], Field(None, description=f.description))  # noqa: UP045
    return out


CameraConfig = create_model("CameraConfig", __base__=_CameraBase, **_overridable(EdgeSettings))  # type: ignore[misc]


class EdgeConfig(EdgeSettings):
    """Edge producer: the default EdgeSettings, the Kafka send path and the list of cameras."""

    compression: Literal["none", "gzip", "lz4", "zstd"] = "lz4"
    # The feature values' type on the wire (vad/schema.py, HALF): float16 makes a Ped2 record ~1.25 KB
    # instead of ~2.1 KB, and every byte is copied several times on its way through the job; the
    # model's scores move by at most 0.04 % (measured on Ped2). float32 sends the values exactly.
    wire_precision: Literal["float16", "float32"] = "float16"
    # kafka-python's sender costs ~1 ms of CPU per produce request whatever its size. A live camera
    # sends a record per frame (10-30/s) and each goes out on its own whatever the linger, so the
    # linger only adds latency there: keep it short. A file backfilled as fast as it decodes sends
    # hundreds a second, where the request rate is the cost: 50 ms (a 256 KiB batch fills in about
    # that at 500 fps) halved the sender's CPU against 20 ms.
    linger_ms: int = Field(20, ge=0, le=5000, description="live sources and --realtime files")
    backfill_linger_ms: int = Field(50, ge=0, le=5000, description="when every source is a file backfilled")
    queue_size: int = Field(256, ge=1, le=100_000, description="records between capture and send, per camera")
    queue_block_ms: int = Field(0, ge=0, le=60_000, description="a live source waits this long, then drops")
    send_timeout_s: float = Field(30.0, gt=0, le=3600, description="backfill wait for queue space; flush bound")
    stats_every_s: float = Field(10.0, ge=0.5, le=3600, description="per-camera counters logged this often")
    # Half a second of backlog is five frames at 10 fps, and it adds to every event's latency.
    lag_warn_ms: int = Field(500, ge=50, le=600_000, description="warn when a paced camera's backlog passes this")
    # Prometheus endpoint of the edge process (vad/edge/metrics.py); bound to loopback unless opened.
    metrics_port: int | None = Field(None, ge=1, le=65535, description="serve /metrics on this port; None: off")
    metrics_host: str = Field("127.0.0.1", min_length=1, max_length=253, description="address /metrics binds to")
    progress: bool = Field(True, description="tqdm progress bar for files")
    cameras: list[CameraConfig] = Field(default_factory=list, max_length=1024)  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _cameras_resolve(self) -> EdgeConfig:
        seen: set[str] = set()
        for i, cam in enumerate(self.cameras):
            if cam.id in seen:
                raise ValueError(f"cameras.{i}.id: duplicate camera id {cam.id!r}")
            seen.add(cam.id)
            try:
                self.settings_for(cam)
            except ValidationError as e:
                where = "; ".join(f"cameras.{i}.{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())
                raise ValueError(where) from None
            except ValueError as e:
                raise ValueError(f"cameras.{i}.{e}") from None
        _check_mask(self)
        return self

    def camera(self, camera_id: str) -> Any | None:
        return next((c for c in self.cameras if c.id == camera_id), None)

    def settings_for(self, cam: Any | None) -> EdgeSettings:
        """This config's EdgeSettings with the camera's overrides applied (validated again)."""
        base = {k: getattr(self, k) for k in EdgeSettings.model_fields}
        if cam is not None:
            base.update(cam.model_dump(exclude_none=True, exclude={"id", "source"}))
        s = EdgeSettings.model_validate(base)
        _check_mask(s)
        return s


def _check_mask(s: EdgeSettings) -> None:
    bad = [c for c in s.mask if c[0] >= s.grid_rows or c[1] >= s.grid_cols]
    if bad:
        raise ValueError(f"mask: cells {bad[:5]} outside the {s.grid_rows}x{s.grid_cols} grid")


class JobConfig(_Strict):
    parallelism: int = Field(1, ge=1, le=1024)
    model_path: Path = Path("models/default/model.onnx")
    # One shard per subtask by default: a subtask's records then make one stream of batches, which
    # fill fastest. Live at 4,500 records/s, parallelism 1, p99 297 / 635 ms with one shard against
    # 870 / 1,624 with four, alternated (README, Benchmarks). More shards than subtasks leave room
    # for an autoscaler to raise the parallelism without a new shard count (which moves state).
    score_shards: int | None = Field(
        None, ge=1, le=4096, description="keys across which windows are batched; None: the parallelism"
    )
    batch_size: int = Field(64, ge=1, le=4096, description="records of a shard batched in the JVM per element")
    batch_max_delay_ms: int = Field(50, ge=1, le=10_000, description="flush a partial batch after this")
    checkpoint_interval_ms: int = Field(5000, ge=100, le=3_600_000)
    checkpoint_dir: str = Field(".cache/checkpoints", min_length=1, description="path or URI (s3://, file://)")
    savepoint_dir: str = Field(".cache/savepoints", min_length=1, description="path or URI")
    restore_from: str | None = Field(None, description="checkpoint or savepoint path to resume from")
    delivery: Literal["at_least_once", "exactly_once"] = "at_least_once"
    transaction_timeout_ms: int = Field(600_000, ge=10_000, le=900_000, description="<= broker max")
    bounded: bool = Field(False, description="stop at the offsets current at start (demo, tests)")
    start_from: Literal["earliest", "latest", "committed"] = "earliest"
    watermark_ooo_ms: int = Field(500, ge=0, le=600_000)
    idle_timeout_ms: int = Field(5000, ge=100, le=3_600_000)
    bundle_size: int = Field(100, ge=1, le=100_000, description="PyFlink bundle, in elements (batches)")
    # Live, the JVM hands a bundle to the Python worker when it closes and waits for it: 50 ms
    # bundles made fewer, fuller hand-offs. At 10,000 records/s (half a fast machine's backlog
    # rate) p99 430-751 ms in four runs against 653-2,857 with 20 ms (README, Benchmarks).
    # The price at lower rates: at 4,500/s (a slower machine, worker in the client) p99 321 / 323
    # against 227-303 with 20 ms.
    bundle_time_ms: int = Field(50, ge=1, le=60_000)
    buffer_timeout_ms: int = Field(
        10, ge=0, le=60_000, description="flush network buffers between operators after this (0: every record)"
    )
    emit_scores: bool = False
    # The source's Kafka consumer: by default a fetch returns as soon as one byte is there, so a live
    # stream is fetched a few records at a time. Waiting up to 20 ms for 64 KB (~30 Ped2 records)
    # cut the job's CPU at 500 records/s from 0.56 / 0.50 to 0.40 / 0.44 core (two pairs), p99 the same.
    source_fetch_min_bytes: int = Field(65536, ge=1, le=52_428_800, description="Kafka fetch.min.bytes")
    source_fetch_max_wait_ms: int = Field(20, ge=0, le=1000, description="Kafka fetch.max.wait.ms (latency bound)")
    state_backend: Literal["hashmap", "rocksdb"] = "hashmap"
    state_ttl_s: int = Field(3600, ge=60, le=30 * 86400, description="forget cameras silent this long")
    # A new JVM's C2 compiler took 0.3-0.4 of a core for its first ~90 s of a job here, which the
    # job then lacked; with C1 only, compilation was over in ~20 s at the same sustained rate
    # (README, Benchmarks). Applies to the JVM of a local run (JVM_ARGS, if not set already).
    local_jvm_options: str = Field(
        "-XX:TieredStopAtLevel=1", max_length=2000, description="flags of the JVM `vad run` starts"
    )
    # A local run's Python worker. PyFlink's default there ("loopback") runs it inside the client
    # process, beside the py4j gateway's threads; "process" starts it as a process of its own, as a
    # cluster does (python.execution-mode: process), so a local run and the tests run the worker
    # the way a deployment does. Live at 10,000 records/s with 50 ms bundles, p99 430-751 ms as a
    # process (four runs) against 760 and 1,370 in the client (README, Benchmarks).
    local_python_worker: Literal["process", "loopback"] = "process"
    # A local run's mini-cluster serves Flink's REST API and web UI (metrics, backpressure): on this
    # loopback port, or with 0 on a free one that Flink logs. A cluster keeps its own REST settings.
    local_rest_port: int = Field(0, ge=0, le=65535, description="REST/web UI port of a local run; 0: any free one")
    # Beam starts a state-sampling thread for every bundle of the Python worker and joins it at the
    # bundle's end, 5.2 ms a bundle on average at 9,000 records/s (p99 21.6), while the JVM waits;
    # its per-step timings are dropped by PyFlink unread (udfs/beam_sampler.py).
    beam_sampling_thread: bool = Field(False, description="Beam's per-bundle sampler thread in the Python worker")
    # After a failure (Redis or Kafka away, a TaskManager lost) the job restarts from its last
    # checkpoint, the delay growing from the initial to the max backoff. A cap of N fails the job
    # for good after N failures in a row (the count resets after an hour without one): with 10,
    # a 2-minute Redis outage did (README). By default it retries for as long as the outage lasts.
    restart_attempts: int = Field(0, ge=0, le=1_000_000, description="failures in a row before giving up; 0: never")
    restart_initial_backoff_ms: int = Field(1000, ge=10, le=600_000)
    restart_max_backoff_ms: int = Field(30_000, ge=10, le=3_600_000)

    @model_validator(mode="after")
    def _consistent(self) -> JobConfig:
        if self.score_shards is not None and self.score_shards < self.parallelism:
            raise ValueError(
                f"score_shards ({self.score_shards}) is below parallelism ({self.parallelism}): "
                "subtasks without a shard would get no records"
            )
        if self.restart_max_backoff_ms < self.restart_initial_backoff_ms:
            m, i = self.restart_max_backoff_ms, self.restart_initial_backoff_ms
            raise ValueError(f"restart_max_backoff_ms is below restart_initial_backoff_ms ({m} < {i})")
        return self

    @property
    def shards(self) -> int:
        """The scoring shards the job uses: ``score_shards``, or one per subtask."""
        return self.score_shards or self.parallelism


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
    cluster: ClusterConfig = ClusterConfig()
    edge: EdgeConfig = EdgeConfig()
    job: JobConfig = JobConfig()
    detect: DetectConfig = DetectConfig()

    def resolve_uri(self, where: str) -> str:
        """A local path (relative to the repository) as a file:// URI; URIs pass through."""
        return where if "://" in where else self.resolve(Path(where)).as_uri()

    def resolve(self, path: Path) -> Path:
        """Relative paths in the config are relative to the repository root, not the cwd."""
        return path if path.is_absolute() else REPO_ROOT / path


def state_dir(cfg: Config) -> Path:
    """The local stack's state folder (broker and Redis data, pid files, local job logs), absolute.
    Resolved: a pid file is matched against the process's real working directory."""
    return cfg.resolve(cfg.stack.state_dir).resolve()


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
