"""One typed configuration for the whole system: defaults, then a YAML file, then ``VAD_`` environment
overrides.

Every field has a default, bounds and a description; unknown keys are refused (``extra="forbid"``) so
a typo fails at start with the field's path instead of being silently ignored. Environment overrides
use ``__`` to descend: ``VAD_JOB__PARALLELISM=4``, ``VAD_REDIS__PASSWORD=...``,
``VAD_CAMERAS__GATE-3__SENSITIVITY=2``. Secrets (passwords) are SecretStr so they never print in logs,
``--validate-config`` or ``vad config show``.

Everything that differs per camera is in one section, ``cameras``, keyed by camera id: its source, any
edge setting it overrides, its mask and its sensitivity. The edge and the job read the same entry.

``load_config_with_sources`` also returns where each value came from (``vad config show``);
vad/config_render.py writes the model out (config/default.yaml, docs/configuration.md).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    create_model,
    model_validator,
)

from vad.schema import SchemaError, validate_camera_id

ENV_PREFIX = "VAD_"
REPO_ROOT = Path(__file__).resolve().parent.parent


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


TopicName = Annotated[str, Field(min_length=1, max_length=249, pattern=r"^[A-Za-z0-9._\-]+$")]
Port = Annotated[int, Field(ge=1, le=65535)]


class TopicsConfig(_Strict):
    """Topic names."""

    features: TopicName = Field("vad.frame-features", description="frame-feature records (edge → job)")
    events: TopicName = Field("vad.events", description="anomaly events (job → consumers)")
    dead_letter: TopicName = Field("vad.dead-letter", description="records the job could not score, with a reason")
    scores: TopicName = Field("vad.frame-scores", description="per-frame scores, written with job.emit_scores")
    partitions: int = Field(4, ge=1, le=1024, description="partitions of the topics `vad stack up` creates")


class KafkaConfig(_Strict):
    """Kafka connection and topic names, shared by the edge, the job and the tools."""

    bootstrap_servers: str = Field("127.0.0.1:9092", min_length=3, description="Kafka brokers, host:port[,host:port]")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="TLS and/or SASL on the Kafka connections"
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="SASL mechanism, when the protocol uses SASL"
    )
    sasl_username: str | None = Field(None, description="SASL user")
    sasl_password: SecretStr | None = Field(
        None, description="SASL password; set it from the environment (VAD_KAFKA__SASL_PASSWORD), never printed"
    )
    ssl_cafile: str | None = Field(None, description="CA certificate file for TLS (also the JVM clients' truststore)")
    group_id: str = Field(
        "vad-job",
        min_length=1,
        max_length=255,
        description="the job's consumer group; also its transactional ids' prefix",
    )
    topics: TopicsConfig = Field(TopicsConfig(), description="topic names")


class RedisConfig(_Strict):
    """Where the job writes events and camera state."""

    host: str = Field("127.0.0.1", description="Redis host")
    port: Port = Field(6379, description="Redis port")
    db: int = Field(0, ge=0, le=15, description="Redis database number")
    password: SecretStr | None = Field(
        None, description="Redis password; set it from the environment (VAD_REDIS__PASSWORD), never printed"
    )
    tls: bool = Field(False, description="connect to Redis over TLS")
    key_prefix: str = Field(
        "vad", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$", description="prefix of every Redis key"
    )
    stream_maxlen: int = Field(10_000, ge=10, le=10_000_000, description="entries kept per camera stream")
    event_ttl_s: int = Field(
        7 * 86400, ge=60, le=365 * 86400, description="lifetime of the dedup keys and the recent-events index"
    )
    retry_attempts: int = Field(
        8, ge=1, le=100, description="tries of a Redis write before the job fails (and restarts from its checkpoint)"
    )
    retry_backoff_ms: int = Field(
        100, ge=1, le=60_000, description="first delay between Redis tries, doubling up to 5 s"
    )
    timeout_s: float = Field(2.0, gt=0, le=60, description="Redis socket timeout")


class StackConfig(_Strict):
    """The embedded single-machine stack (`vad stack up`): a KRaft broker and a Redis server."""

    state_dir: Path = Field(
        Path(".cache/stack"), description="the stack's data, logs and pid files (relative: to the repository)"
    )
    kafka_port: Port = Field(9092, description="the embedded broker's client port")
    controller_port: Port = Field(9093, description="the embedded broker's KRaft controller port")
    redis_port: Port = Field(6379, description="the embedded Redis server's port")
    kafka_heap_mb: int = Field(512, ge=128, le=8192, description="the embedded broker's JVM heap")
    start_timeout_s: float = Field(90, ge=5, le=900, description="how long `vad stack up` waits for the services")


class ClusterConfig(_Strict):
    """A Flink session cluster: where `vad submit` sends the job (any standalone, Kubernetes-session or
    YARN-session cluster's REST endpoint), and what `vad stack up --cluster` starts on this machine
    (one JobManager and one TaskManager on 127.0.0.1, REST on the port of ``rest_address``)."""

    rest_address: str = Field(
        "127.0.0.1:8081", pattern=r"^[A-Za-z0-9.\-]+:\d{1,5}$", description="the cluster's REST endpoint, host:port"
    )
    rpc_port: Port = Field(6123, description="JobManager RPC port of the local cluster")
    task_slots: int = Field(2, ge=1, le=64, description="slots of the local TaskManager")
    jobmanager_memory_mb: int = Field(
        1024, ge=512, le=65536, description="JobManager process memory of the local cluster"
    )
    taskmanager_memory_mb: int = Field(
        1728, ge=1024, le=262144, description="TaskManager process memory of the local cluster"
    )
    flink_home: Path | None = Field(None, description="Flink distribution; null: the one pyflink ships")
    start_timeout_s: float = Field(180, ge=10, le=1800, description="how long `vad cluster up` waits for the cluster")
    submit_timeout_s: float = Field(300, ge=10, le=3600, description="bound of one `flink run`")
    savepoint_timeout_s: float = Field(
        300, ge=5, le=3600, description="how long `vad savepoint` and `vad cancel --savepoint` wait"
    )


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
        1.0, gt=0, le=100, description="detection threshold divisor: above 1 the camera alerts more readily"
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


# Where a local run keeps its snapshots when the config names no directory (jobs/runtime.py).
LOCAL_CHECKPOINT_DIR = ".cache/checkpoints"
LOCAL_SAVEPOINT_DIR = ".cache/savepoints"


class JobConfig(_Strict):
    """The Flink job."""

    parallelism: int = Field(1, ge=1, le=1024, description="the job's parallelism")
    model_path: Path = Field(
        Path("models/default/model.onnx"),
        description="ONNX model; its card.json beside it gives window, grid and calibration",
    )
    # One shard per subtask: a subtask's records then make one stream of batches, which fill fastest.
    # More shards than subtasks let an autoscaler raise the parallelism without a new shard count
    # (which would move state).
    score_shards: int | None = Field(
        None, ge=1, le=4096, description="keys across which windows are batched; null: the parallelism"
    )
    batch_size: int = Field(64, ge=1, le=4096, description="records of a shard batched in the JVM per element")
    batch_max_delay_ms: int = Field(50, ge=1, le=10_000, description="flush a partial batch after this")
    checkpoint_interval_ms: int = Field(
        5000,
        ge=100,
        le=3_600_000,
        description="checkpoint interval; exactly-once output becomes visible per checkpoint",
    )
    # A cluster says where its snapshots live (on Kubernetes, the FlinkDeployment's object store);
    # a value here would override it, as the job's Flink settings take precedence over the cluster's.
    checkpoint_dir: str | None = Field(
        None,
        min_length=1,
        description=f"where checkpoints go, path or URI (s3://, file://); null: the cluster's "
        f"execution.checkpointing.dir, and {LOCAL_CHECKPOINT_DIR} on a local run",
    )
    savepoint_dir: str | None = Field(
        None,
        min_length=1,
        description=f"where savepoints go, path or URI; null: the cluster's execution.checkpointing.savepoint-dir, "
        f"and {LOCAL_SAVEPOINT_DIR} on a local run or the local cluster",
    )
    restore_from: str | None = Field(None, description="checkpoint or savepoint path to resume from")
    delivery: Literal["at_least_once", "exactly_once"] = Field(
        "at_least_once", description="the Kafka sinks' guarantee; exactly_once uses Kafka transactions"
    )
    transaction_timeout_ms: int = Field(
        600_000, ge=10_000, le=900_000, description="exactly_once's transaction timeout; at most the broker's maximum"
    )
    bounded: bool = Field(False, description="stop at the offsets current at start (demo, tests)")
    start_from: Literal["earliest", "latest", "committed"] = Field(
        "earliest",
        description="where the source starts without state: earliest, latest, or the group's committed offsets "
        "(earliest where none)",
    )
    watermark_ooo_ms: int = Field(500, ge=0, le=600_000, description="out-of-orderness allowed to frames' event time")
    idle_timeout_ms: int = Field(
        5000,
        ge=100,
        le=3_600_000,
        description="a camera without frames for this long (event time) has its open event closed; also the "
        "source's idleness",
    )
    bundle_size: int = Field(100, ge=1, le=100_000, description="PyFlink bundle, in elements (batches)")
    # Longer bundles make fewer, fuller hand-offs to the Python worker, whose cost dominates at high rates.
    bundle_time_ms: int = Field(
        50, ge=1, le=60_000, description="the JVM hands a bundle to the Python worker at the latest after this"
    )
    buffer_timeout_ms: int = Field(
        10, ge=0, le=60_000, description="flush network buffers between operators after this (0: every record)"
    )
    emit_scores: bool = Field(False, description="also write every frame's score to kafka.topics.scores")
    # By default a fetch returns as soon as one byte is there, so a live stream is fetched a few
    # records at a time; waiting a little for more cuts the job's CPU at no latency to speak of.
    source_fetch_min_bytes: int = Field(65536, ge=1, le=52_428_800, description="the source's Kafka fetch.min.bytes")
    source_fetch_max_wait_ms: int = Field(
        20, ge=0, le=1000, description="the source's Kafka fetch.max.wait.ms (the latency bound of a fetch)"
    )
    state_backend: Literal["hashmap", "rocksdb"] = Field(
        "hashmap", description="Flink state backend; rocksdb for more cameras' state than fits in memory"
    )
    state_ttl_s: int = Field(3600, ge=60, le=30 * 86400, description="forget cameras silent this long")
    # C1 only: a new JVM's C2 compiler takes CPU the job lacks for its first minutes.
    local_jvm_options: str = Field(
        "-XX:TieredStopAtLevel=1",
        max_length=2000,
        description="flags of the JVM `vad run` starts (JVM_ARGS, unless set already)",
    )
    # A process of its own, as on a cluster (python.execution-mode: process), so local runs and the
    # tests run the worker the way a deployment does.
    local_python_worker: Literal["process", "loopback"] = Field(
        "process",
        description="a local run's Python worker: its own process (as on a cluster) or inside the client (loopback)",
    )
    local_rest_port: int = Field(
        0, ge=0, le=65535, description="REST/web UI port of a local run, on loopback; 0: any free one (Flink logs it)"
    )
    # Beam joins that thread at every bundle's end while the JVM waits, and PyFlink drops its timings
    # unread (udfs/beam_sampler.py).
    beam_sampling_thread: bool = Field(False, description="Beam's per-bundle sampler thread in the Python worker")
    # By default the job retries for as long as an outage (Redis, Kafka, a TaskManager) lasts.
    restart_attempts: int = Field(
        0, ge=0, le=1_000_000, description="failures in a row before the job gives up for good; 0: never"
    )
    restart_initial_backoff_ms: int = Field(
        1000, ge=10, le=600_000, description="first restart delay after a failure, growing up to the max"
    )
    restart_max_backoff_ms: int = Field(30_000, ge=10, le=3_600_000, description="longest restart delay")

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


class DetectConfig(_Strict):
    """Episode detection from the scores (vad/detect.py); per camera: ``cameras.<id>.sensitivity``
    and ``cameras.<id>.mask``."""

    threshold: float | None = Field(
        None, gt=0, description="fixed frame-score threshold; null: the model card's, at calibration_quantile"
    )
    calibration_quantile: Literal["0.99", "0.995", "0.999", "0.9999"] = Field(
        "0.999", description="which calibration quantile of the model card becomes the threshold"
    )
    ema_alpha: float = Field(0.5, gt=0, le=1, description="causal smoothing weight of the new score")
    close_ratio: float = Field(0.8, gt=0, le=1, description="close an event below threshold * close_ratio")
    min_frames: int = Field(3, ge=1, le=1000, description="frames above threshold before OPEN")
    cooldown_frames: int = Field(10, ge=0, le=100_000, description="frames after CLOSE before a new OPEN")
    update_every: int = Field(10, ge=1, le=100_000, description="UPDATE an open event every n frames")


# Keys of the sections before per-camera settings had one place, and where they went.
_MOVED = {
    ("edge", "cameras"): "the top-level `cameras` section, keyed by camera id",
    ("detect", "cameras"): "the top-level `cameras` section (sensitivity, mask)",
    ("edge", "mask"): "`cameras.<id>.mask` (a mask belongs to one camera's view)",
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
    cameras: dict[CameraId, CameraConfig] = Field(  # type: ignore[valid-type]
        default_factory=dict,
        max_length=1024,
        description="per camera, keyed by its id (letters, digits and _.:-/): source, mask, sensitivity and any "
        "edge setting above compression to override; `vad produce --all` streams each",
        examples=[{"gate-3": {"source": "rtsp://camera-host/stream", "flow_scale": 0.25, "sensitivity": 1.5}}],
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
        if errors:
            raise ValueError("; ".join(errors))
        return self

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


def state_dir(cfg: Config) -> Path:
    """The local stack's state folder (broker and Redis data, pid files, local job logs), absolute.
    Resolved: a pid file is matched against the process's real working directory."""
    return cfg.resolve(cfg.stack.state_dir).resolve()


class ConfigError(ValueError):
    """Bad configuration; the message names each offending field by its dotted path."""


DEFAULT = "default"


def _record(value: Any, path: tuple[str, ...], label: str, sources: dict[str, str]) -> None:
    # Leaves only (a value that is not a mapping, or an empty one): a file setting edge.flow says
    # nothing about where edge.grid_rows came from.
    if isinstance(value, dict) and value:
        for k, v in value.items():
            _record(v, (*path, str(k)), label, sources)
    else:
        sources[".".join(path)] = label


def _apply_env(data: dict[str, Any], env: Mapping[str, str], sources: dict[str, str] | None = None) -> dict[str, Any]:
    sources = {} if sources is None else sources
    for key, raw in sorted(env.items()):
        if not key.startswith(ENV_PREFIX):
            continue
        parts = key[len(ENV_PREFIX) :].split("__")
        # VAD_<SECTION>__<FIELD>...; a single part only when it names a section (VAD_CAMERAS='{...}'),
        # so that other VAD_ variables are not taken for config.
        if len(parts) == 1 and parts[0].lower() not in Config.model_fields:
            continue
        node, path = data, []
        for i, part in enumerate(parts):
            # Names are lower case; a key already there matches whatever its case (a camera id).
            name = next((k for k in node if isinstance(k, str) and k.lower() == part.lower()), part.lower())
            path.append(name)
            if i == len(parts) - 1:
                break
            child = node.get(name)
            if not isinstance(child, dict):
                child = {}
                node[name] = child
            node = child
        # YAML parsing gives "4" -> 4, "true" -> True, "[1, 2]" -> list, like the file would.
        try:
            value = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError:
            value = raw
        node[path[-1]] = value
        dotted = ".".join(path)
        for k in [k for k in sources if k == dotted or k.startswith(dotted + ".")]:
            del sources[k]
        _record(value, tuple(path), f"env:{key}", sources)
    return data


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"invalid configuration ({source}):"]
    for e in err.errors():
        if e["loc"]:
            lines.append(f"  {'.'.join(str(p) for p in e['loc'])}: {e['msg']}")
        else:  # a rule over several fields: its message names them
            lines.append(f"  {e['msg'].removeprefix('Value error, ')}")
    return "\n".join(lines)


def load_config_with_sources(
    path: str | Path | None = None, env: Mapping[str, str] | None = None
) -> tuple[Config, dict[str, str]]:
    """The config, and where its values came from: dotted path -> ``file:<path>`` or ``env:VAD_...``
    for every value the file or the environment set (``source_of`` answers for the others)."""
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    sources: dict[str, str] = {}
    where = "defaults"
    if path is not None:
        p = Path(path)
        where = str(p)
        try:
            loaded = yaml.safe_load(p.read_text()) or {}
        except FileNotFoundError as e:
            raise ConfigError(f"config file not found: {p}") from e
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {p} is not valid YAML: {e}") from e
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {p} must hold a mapping at the top level")
        data = loaded
        _record(data, (), f"file:{p}", sources)
        sources.pop("", None)  # an empty file
    data = _apply_env(data, env, sources)
    try:
        return Config.model_validate(data), sources
    except ValidationError as e:
        raise ConfigError(_format_errors(e, where)) from None


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Load YAML (optional) plus environment overrides; raise ConfigError naming the bad fields."""
    return load_config_with_sources(path, env)[0]


def source_of(sources: Mapping[str, str], dotted: str) -> str:
    """Where the value at this dotted path came from: ``file:...``, ``env:...`` or ``default``."""
    return sources.get(dotted, DEFAULT)


def dump_config(cfg: Config) -> str:
    """YAML of the effective config with secrets masked (SecretStr prints as **********)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
