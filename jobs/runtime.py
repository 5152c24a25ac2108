"""Flink runtime settings derived from the typed config: one place for checkpointing, restarts,
state backend, the Python worker and the connector jar."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pyflink
from pyflink.common import Configuration

from vad.config import LOCAL_CHECKPOINT_DIR, LOCAL_SAVEPOINT_DIR, REPO_ROOT, Config, state_dir
from vad.jvm import with_tmpdir

CONNECTOR_DIR = REPO_ROOT / ".cache" / "jars" / "flink"


def connector_jars() -> list[Path]:
    """The Kafka connector and the job's own Java class (io.github.vad.flink.ShardedRecords)."""
    jars = sorted(CONNECTOR_DIR.glob("flink-sql-connector-kafka-*.jar"))
    if not jars:
        raise FileNotFoundError(f"Flink Kafka connector jar missing in {CONNECTOR_DIR}: run `make setup`")
    records = CONNECTOR_DIR / "vad-records.jar"
    if not records.is_file():
        raise FileNotFoundError(f"{records} missing: run `make setup`")
    return [*jars, records]


# PyFlink reads this (private, but what its own tests use) when a job is executed: "process" or
# "loopback". Unset, a local run gets "loopback".
PYTHON_WORKER_MODE_ENV = "_python_worker_execution_mode"


def local_run_options(cfg: Config) -> None:
    """Settings of a local run that PyFlink takes from the environment, so call this before anything
    else. JVM flags: its gateway reads JVM_ARGS when it launches the JVM, before the first Java object
    exists. The Python worker: as its own process (as on a cluster) or inside this client process.
    The JVM's log: in the stack's state folder (``log/flink-*-python-*.log``) rather than PyFlink's
    default, inside the installed package; not when a JVM runs this already (``flink run``,
    PythonDriver on Kubernetes: PYFLINK_GATEWAY_PORT is set), whose log is its own. The JVM's
    temporary files (the mini-cluster's folders, the RPC jar it unpacks, about 20 MB a run) go where
    TMPDIR says, as the Python side's do: Java ignores TMPDIR, and a JVM that is killed leaves them
    behind (not a TMPDIR with a space: PyFlink splits JVM_ARGS at whitespace). What the user set in
    the environment wins."""
    if cfg.job.local_jvm_options and "JVM_ARGS" not in os.environ:
        os.environ["JVM_ARGS"] = cfg.job.local_jvm_options
    if (tmp := os.environ.get("TMPDIR")) and (args := with_tmpdir(os.environ.get("JVM_ARGS", ""), tmp)):
        os.environ["JVM_ARGS"] = args
    os.environ.setdefault(PYTHON_WORKER_MODE_ENV, cfg.job.local_python_worker)
    if "FLINK_LOG_DIR" not in os.environ and "PYFLINK_GATEWAY_PORT" not in os.environ:
        log_dir = state_dir(cfg) / "log"
        log_dir.mkdir(parents=True, exist_ok=True)
        os.environ["FLINK_LOG_DIR"] = str(log_dir)
    if "PYFLINK_GATEWAY_PORT" not in os.environ and any(
        k.startswith("metrics.reporter.") for k in cfg.job.local_flink_settings
    ):
        # A mini-cluster finds metrics reporters on its classpath only (it has no plugin manager),
        # and PyFlink's gateway puts HADOOP_CLASSPATH on the local JVM's classpath.
        jars = [str(p) for p in sorted((Path(pyflink.__file__).parent / "plugins").glob("metrics-*/*.jar"))]
        os.environ["HADOOP_CLASSPATH"] = os.pathsep.join(filter(None, [os.environ.get("HADOOP_CLASSPATH"), *jars]))


def on_cluster() -> bool:
    """This driver runs inside a JVM that a cluster's client started (``flink run``, PythonDriver on
    Kubernetes): PyFlink then connects to that JVM's gateway instead of starting a local one."""
    return "PYFLINK_GATEWAY_PORT" in os.environ


def snapshot_dirs(cfg: Config, cluster: bool) -> dict[str, str]:
    """The checkpoint and savepoint directories the job sets. Flink gives the job's own settings
    precedence over the cluster's, so on a cluster only the ones the config names explicitly are set,
    and the deployment's (the FlinkDeployment's object store) apply otherwise; a local run has no
    cluster settings, so it falls back to the repository's .cache folders."""
    j, out = cfg.job, {}
    for key, explicit, local in (
        ("execution.checkpointing.dir", j.checkpoint_dir, LOCAL_CHECKPOINT_DIR),
        ("execution.checkpointing.savepoint-dir", j.savepoint_dir, LOCAL_SAVEPOINT_DIR),
    ):
        where = explicit or (None if cluster else local)
        if where is not None:
            out[key] = cfg.resolve_uri(where)
    return out


def flink_configuration(cfg: Config, cluster: bool | None = None) -> Configuration:
    """The job's Flink settings. ``cluster``: whether a cluster runs the job (default: ``on_cluster()``)."""
    j = cfg.job
    cluster = on_cluster() if cluster is None else cluster
    c = Configuration()
    settings = {
        "pipeline.jars": ";".join(p.as_uri() for p in connector_jars()),
        "parallelism.default": str(j.parallelism),
        "python.executable": sys.executable,
        "python.client.executable": sys.executable,
        # Process mode: PyFlink's thread mode fails on this job's array payloads.
        "python.execution-mode": "process",
        "python.fn-execution.bundle.size": str(j.bundle_size),
        "python.fn-execution.bundle.time": str(j.bundle_time_ms),
        # Flink's default (100 ms) holds a record in a half-full network buffer at every exchange.
        "execution.buffer-timeout.interval": f"{j.buffer_timeout_ms} ms",
        "execution.checkpointing.interval": f"{j.checkpoint_interval_ms} ms",
        "execution.checkpointing.mode": "EXACTLY_ONCE",
        "execution.checkpointing.checkpoints-after-tasks-finish": "true",
        "execution.checkpointing.storage": "filesystem",
        **snapshot_dirs(cfg, cluster),
        # Kept when the job is cancelled or dies, so it can resume from the last one.
        "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
        "execution.checkpointing.num-retained": "3",
        "execution.checkpointing.tolerable-failed-checkpoints": str(j.tolerable_checkpoint_failures),
        "state.backend.type": j.state_backend,
        "restart-strategy.type": "exponential-delay",
        "restart-strategy.exponential-delay.initial-backoff": f"{j.restart_initial_backoff_ms} ms",
        "restart-strategy.exponential-delay.max-backoff": f"{j.restart_max_backoff_ms} ms",
        # Not a count before the backoff resets (as its name reads) but before the job fails.
        "restart-strategy.exponential-delay.attempts-before-reset-backoff": str(j.restart_attempts or 2**31 - 1),
        "pipeline.name": "vad-anomaly-detection",
    }
    if not cluster:
        # A local run's mini-cluster serves its REST API and web UI (which can cancel the job), its
        # blob server and data exchange on loopback only: Flink's defaults bind every interface. A
        # cluster keeps its own settings.
        for key in (
            "rest.bind-address",
            "rest.address",
            "jobmanager.bind-host",
            "taskmanager.bind-host",
            "taskmanager.host",
        ):
            settings[key] = "127.0.0.1"
        if j.local_rest_port:
            settings["rest.port"] = str(j.local_rest_port)
        settings = {**j.local_flink_settings, **settings}
    if j.restore_from:
        settings["execution.state-recovery.path"] = cfg.resolve_uri(j.restore_from)
    for k, v in settings.items():
        c.set_string(k, v)
    return c
