"""The configuration sections other than the edge's and the cameras': Kafka, Redis, the local
stack, a Flink session cluster, the job and episode detection."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
# What jobs/runtime.flink_configuration sets from the job's own fields: job.local_flink_settings
# may not set it a second way.
JOB_OWNED_FLINK_KEYS = frozenset(
    {"parallelism.default", "rest.port", "rest.address", "rest.bind-address", "jobmanager.bind-host"}
    | {"taskmanager.bind-host", "taskmanager.host", "state.backend.type"}
)
JOB_OWNED_FLINK_PREFIXES = ("python.", "pipeline.", "execution.", "restart-strategy.", "state.checkpoints.")


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

    @model_validator(mode="after")
    def _security_complete(self) -> KafkaConfig:
        # Refused here, not at the first connection: a half-set SASL config would fail later with a
        # client error that names no field.
        if self.security_protocol.startswith("SASL_"):
            for name in ("sasl_mechanism", "sasl_username", "sasl_password"):
                if not getattr(self, name):
                    raise ValueError(f"kafka.{name} is required with security_protocol {self.security_protocol}")
        else:
            for name in ("sasl_mechanism", "sasl_username", "sasl_password"):
                if getattr(self, name) is not None:
                    raise ValueError(f"kafka.{name} is set but security_protocol {self.security_protocol} uses no SASL")
        if self.ssl_cafile and not self.security_protocol.endswith("SSL"):
            raise ValueError(f"kafka.ssl_cafile is set but security_protocol {self.security_protocol} uses no TLS")
        return self


class RedisConfig(_Strict):
    """Where the job writes events and camera state."""

    host: str = Field("127.0.0.1", description="Redis host")
    port: Port = Field(6379, description="Redis port")
    db: int = Field(0, ge=0, le=15, description="Redis database number")
    password: SecretStr | None = Field(
        None, description="Redis password; set it from the environment (VAD_REDIS__PASSWORD), never printed"
    )
    username: str | None = Field(
        None, min_length=1, max_length=128, description="Redis ACL user; null: the default user (password only)"
    )
    tls: bool = Field(False, description="connect to Redis over TLS")
    tls_cafile: str | None = Field(
        None, description="CA certificate file that signed the Redis server's certificate; null: the system CAs"
    )
    key_prefix: str = Field(
        "vad", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$", description="prefix of every Redis key"
    )
    stream_maxlen: int = Field(10_000, ge=10, le=10_000_000, description="entries kept per camera stream")
    event_ttl_s: int = Field(
        7 * 86400, ge=60, le=365 * 86400, description="lifetime of the dedup keys and the recent-events index"
    )
    # Redis is a view of the events topic: an outage holds its writes back, never the job or Kafka.
    retry_attempts: int = Field(
        8,
        ge=1,
        le=100,
        description="tries of the writes still held back when the job's input ends (bounded run, drained stop) "
        "before they are dropped; a running job retries them until Redis is back",
    )
    retry_backoff_ms: int = Field(
        100, ge=1, le=60_000, description="first delay between Redis tries, doubling up to 5 s"
    )
    pending_max_events: int = Field(
        20_000,
        ge=1,
        le=10_000_000,
        description="events held back per scoring shard while Redis is away, in checkpointed state; beyond, the "
        "oldest are dropped from Redis, down to nine tenths of this (Kafka has them)",
    )
    timeout_s: float = Field(2.0, gt=0, le=60, description="Redis socket timeout")

    @model_validator(mode="after")
    def _security_complete(self) -> RedisConfig:
        if self.username and not self.password:
            raise ValueError("redis.password is required with redis.username")
        if self.tls_cafile and not self.tls:
            raise ValueError("redis.tls_cafile is set but redis.tls is false")
        return self


class StackConfig(_Strict):
    """The embedded single-machine stack (`vad stack up`): a KRaft broker and a Redis server."""

    state_dir: Path = Field(
        Path(".cache/stack"), description="the stack's data, logs and pid files (relative: to the repository)"
    )
    kafka_port: Port = Field(9092, description="the embedded broker's client port")
    controller_port: Port = Field(9093, description="the embedded broker's KRaft controller port")
    redis_port: Port = Field(6379, description="the embedded Redis server's port")
    redis_appendfsync: Literal["always", "everysec", "no"] = Field(
        "everysec",
        description="the embedded Redis's appendfsync (its append-only file is always on): always keeps every "
        "acknowledged write through a crash of the machine too, everysec all but the last second's",
    )
    kafka_heap_mb: int = Field(512, ge=128, le=8192, description="the embedded broker's JVM heap")
    secure: bool = Field(
        False,
        description="Kafka with a SASL_SSL listener (SCRAM, ACLs; kafka.sasl_username is its super user) and Redis "
        "with TLS and redis.password (and redis.username as an ACL user), under a CA of their own in <state_dir>/tls "
        "(docs/security.md)",
    )
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


# Where a local run keeps its snapshots when the config names no directory (jobs/runtime.py).
LOCAL_CHECKPOINT_DIR = ".cache/checkpoints"
LOCAL_SAVEPOINT_DIR = ".cache/savepoints"
# A silent camera's open event closes idle_timeout_ms after its last record (plus a timer tick and
# the worker's latency); its state must outlive that by a margin a busy worker cannot eat.
IDLE_CLOSE_MARGIN_MS = 30_000


class JobConfig(_Strict):
    """The Flink job."""

    parallelism: int = Field(1, ge=1, le=1024, description="the job's parallelism")
    model_path: Path = Field(
        Path("models/default/model.onnx"),
        description="ONNX model; its card.json beside it gives window, grid and calibration",
    )
    # Folders <view>/<version>/ with model.onnx and card.json (models/registry.py); a version is
    # published by renaming its folder into place, so a half-copied one is never read.
    model_registry: Path | None = Field(
        None, description="folder of per-view models for the cameras with a `view`; null: no registry"
    )
    model_refresh_s: float = Field(
        30.0,
        ge=1,
        le=86_400,
        description="how often the job looks for a newer version of each view's model in the registry",
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
    # Not zstd: its codec (zstd-jni) is not in flink-dist, where the connector's client finds lz4's.
    sink_compression: Literal["none", "gzip", "lz4"] = Field(
        "lz4", description="Kafka compression of the job's events, scores and dead letters"
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
        description="a camera that stopped sending has its open event closed as idle: at its next frame if that "
        "is this much event time after its last, else after this long without a frame of it reaching the job "
        "(processing time); another camera's time never closes it. Also the source's idleness",
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
    state_ttl_s: int = Field(
        3600,
        ge=60,
        le=30 * 86400,
        description="forget cameras silent this long; at least idle_timeout_ms plus 30 s, so an open event "
        "is always closed before its state can expire",
    )
    # C1 only: a new JVM's C2 compiler takes CPU the job lacks for its first minutes.
    local_jvm_options: str = Field(
        "-XX:TieredStopAtLevel=1",
        max_length=2000,
        description="flags of the JVM `vad run` starts (JVM_ARGS, unless set already); its java.io.tmpdir "
        "follows TMPDIR unless they name one",
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
    # A mini-cluster takes its cluster settings (metrics reporters above all) from the job's own
    # configuration; on a cluster they are the cluster's (flinkConfiguration in k8s/).
    local_flink_settings: dict[str, str] = Field(
        {},
        description="extra Flink settings of a local run's mini-cluster, such as a metrics reporter "
        "(metrics.reporter.<name>.*); keys the job sets from its own fields are refused",
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
    # Flink's default, 0, fails (and restarts) the job at the first checkpoint its storage refuses;
    # 120 keeps it serving through a ten-minute storage outage at the default interval.
    tolerable_checkpoint_failures: int = Field(
        120,
        ge=0,
        le=1_000_000,
        description="checkpoints in a row that may fail (storage full or unwritable, timed out) before the job "
        "fails and restarts; meanwhile it keeps serving, and a crash replays from the last good checkpoint",
    )

    @field_validator("local_flink_settings")
    @classmethod
    def _not_the_jobs_own(cls, v: dict[str, str]) -> dict[str, str]:
        for key in v:
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", key):
                raise ValueError(f"{key!r} is not a Flink setting's name")
            if key in JOB_OWNED_FLINK_KEYS or key.startswith(JOB_OWNED_FLINK_PREFIXES):
                raise ValueError(f"{key!r} is set by the job from its own fields (job.*, see docs/configuration.md)")
        return v

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
        if self.state_ttl_s * 1000 < self.idle_timeout_ms + IDLE_CLOSE_MARGIN_MS:
            need = -(-(self.idle_timeout_ms + IDLE_CLOSE_MARGIN_MS) // 1000)
            raise ValueError(
                f"state_ttl_s ({self.state_ttl_s}) is below idle_timeout_ms plus 30 s ({need} s): an open "
                "event's state could expire before its idle close"
            )
        return self

    @property
    def shards(self) -> int:
        """The scoring shards the job uses: ``score_shards``, or one per subtask."""
        return self.score_shards or self.parallelism


class DetectConfig(_Strict):
    """Episode detection from the scores (vad/detect.py); per camera: ``cameras.<id>.sensitivity``,
    ``cameras.<id>.mask`` and ``cameras.<id>.schedule``."""

    threshold: float | None = Field(
        None,
        gt=0,
        description="fixed frame-score threshold; null: the model card's, for target_false_alarms_per_hour "
        "(or at calibration_quantile)",
    )
    calibration_quantile: Literal["0.99", "0.995", "0.999", "0.9999"] = Field(
        "0.999",
        description="the model card's calibration quantile that becomes the threshold when "
        "target_false_alarms_per_hour is null or the card has no tail model (card format 1)",
    )
    # The card's tail model turns a rate into a threshold (models/tail.py); the default was chosen
    # on held-out normal training clips of two scenes (docs/models.md).
    target_false_alarms_per_hour: float | None = Field(
        10.0,
        gt=0,
        le=3600,
        description="threshold from the model card's tail model: this many false episodes per hour of "
        "normal video per camera (before its sensitivity); null: calibration_quantile",
    )
    ema_alpha: float = Field(0.5, gt=0, le=1, description="causal smoothing weight of the new score")
    close_ratio: float = Field(0.8, gt=0, le=1, description="close an event below threshold * close_ratio")
    # Durations are in event time (the frames' timestamps), so they mean the same at any frame rate
    # and in a replay.
    min_duration_s: float = Field(
        0.2, ge=0, le=600, description="the smoothed score stays at or above the threshold this long before OPEN"
    )
    # One alert per real event: a cyclist hidden by a tree for two seconds is still one cyclist.
    merge_gap_s: float = Field(
        3.0,
        ge=0,
        le=3600,
        description="an open event whose score falls below the close level and comes back within this time "
        "stays one event; CLOSE is sent once the score has stayed low this long (0: close at once)",
    )
    cooldown_s: float = Field(1.0, ge=0, le=86_400, description="after CLOSE, no new OPEN for this long")
    update_every_s: float = Field(1.0, gt=0, le=86_400, description="UPDATE an open event this often")
