import json
import os
import re

import pytest

from jobs.runtime import PYTHON_WORKER_MODE_ENV, local_run_options
from vad.config import load_config


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    monkeypatch.delenv("JVM_ARGS", raising=False)
    monkeypatch.delenv(PYTHON_WORKER_MODE_ENV, raising=False)
    monkeypatch.delenv("FLINK_LOG_DIR", raising=False)
    monkeypatch.delenv("TMPDIR", raising=False)


def test_local_jvm_options_go_to_the_gateway_unless_the_user_set_jvm_args(monkeypatch):
    local_run_options(load_config(env={}))

    assert os.environ["JVM_ARGS"] == "-XX:TieredStopAtLevel=1"
    monkeypatch.setenv("JVM_ARGS", "-Xmx2g")
    local_run_options(load_config(env={"VAD_JOB__LOCAL_JVM_OPTIONS": "-XX:+UseSerialGC"}))
    assert os.environ["JVM_ARGS"] == "-Xmx2g"
    monkeypatch.delenv("JVM_ARGS")
    local_run_options(load_config(env={"VAD_JOB__LOCAL_JVM_OPTIONS": "-XX:+UseSerialGC"}))
    assert os.environ["JVM_ARGS"] == "-XX:+UseSerialGC"


def test_the_local_jvm_keeps_its_temporary_files_where_tmpdir_says(monkeypatch, tmp_path):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    local_run_options(load_config(env={}))
    assert os.environ["JVM_ARGS"] == f"-XX:TieredStopAtLevel=1 -Djava.io.tmpdir={tmp_path}"
    local_run_options(load_config(env={}))  # once, however often it runs
    assert os.environ["JVM_ARGS"].count("java.io.tmpdir") == 1
    monkeypatch.setenv("JVM_ARGS", "-Djava.io.tmpdir=/elsewhere")
    local_run_options(load_config(env={}))
    assert os.environ["JVM_ARGS"] == "-Djava.io.tmpdir=/elsewhere"
    monkeypatch.setenv("JVM_ARGS", "")
    local_run_options(load_config(env={}))
    assert os.environ["JVM_ARGS"] == f"-Djava.io.tmpdir={tmp_path}"
    # PyFlink splits JVM_ARGS at whitespace: such a folder would become a stray argument of java.
    monkeypatch.delenv("JVM_ARGS")
    monkeypatch.setenv("TMPDIR", str(tmp_path / "with space"))
    local_run_options(load_config(env={}))
    assert os.environ["JVM_ARGS"] == "-XX:TieredStopAtLevel=1"


def test_a_local_run_starts_its_python_worker_as_a_process_unless_told_otherwise(monkeypatch):
    local_run_options(load_config(env={}))
    assert os.environ[PYTHON_WORKER_MODE_ENV] == "process"
    monkeypatch.delenv(PYTHON_WORKER_MODE_ENV)
    local_run_options(load_config(env={"VAD_JOB__LOCAL_PYTHON_WORKER": "loopback"}))
    assert os.environ[PYTHON_WORKER_MODE_ENV] == "loopback"
    local_run_options(load_config(env={}))  # what is in the environment already wins
    assert os.environ[PYTHON_WORKER_MODE_ENV] == "loopback"
    with pytest.raises(Exception, match="local_python_worker"):
        load_config(env={"VAD_JOB__LOCAL_PYTHON_WORKER": "thread"})


def test_a_local_run_logs_to_the_stack_state_folder_unless_told_otherwise(monkeypatch, tmp_path):
    local_run_options(load_config(env={"VAD_STACK__STATE_DIR": str(tmp_path / "st")}))
    assert os.environ["FLINK_LOG_DIR"] == str((tmp_path / "st" / "log").resolve())
    assert (tmp_path / "st" / "log").is_dir()
    monkeypatch.setenv("FLINK_LOG_DIR", str(tmp_path / "mine"))
    local_run_options(load_config(env={"VAD_STACK__STATE_DIR": str(tmp_path / "st")}))
    assert os.environ["FLINK_LOG_DIR"] == str(tmp_path / "mine")
    # Run by `flink run` or PythonDriver: the JVM is there already, with its own log; nothing created.
    monkeypatch.delenv("FLINK_LOG_DIR")
    monkeypatch.setenv("PYFLINK_GATEWAY_PORT", "25333")
    local_run_options(load_config(env={"VAD_STACK__STATE_DIR": str(tmp_path / "other")}))
    assert "FLINK_LOG_DIR" not in os.environ and not (tmp_path / "other").exists()


def test_the_source_batches_its_fetches_within_a_latency_bound():
    from jobs.anomaly_job import source_properties

    props = source_properties(load_config(env={"VAD_KAFKA__SECURITY_PROTOCOL": "SSL"}))
    assert props["fetch.min.bytes"] == "65536" and props["fetch.max.wait.ms"] == "20"
    assert props["security.protocol"] == "SSL"  # the connection settings are still there
    props = source_properties(load_config(env={"VAD_JOB__SOURCE_FETCH_MAX_WAIT_MS": "5"}))
    assert props["fetch.max.wait.ms"] == "5"


def test_a_local_run_serves_rest_on_loopback_and_a_cluster_keeps_its_own_settings():
    from jobs.runtime import flink_configuration

    conf = flink_configuration(load_config(env={}), cluster=False).to_dict()
    assert "rest.port" not in conf
    assert {
        k: conf[k] for k in ("rest.bind-address", "rest.address", "jobmanager.bind-host", "taskmanager.bind-host")
    } == dict.fromkeys(
        ("rest.bind-address", "rest.address", "jobmanager.bind-host", "taskmanager.bind-host"), "127.0.0.1"
    )
    conf = flink_configuration(load_config(env={"VAD_JOB__LOCAL_REST_PORT": "18081"}), cluster=False).to_dict()
    assert conf["rest.port"] == "18081" and conf["rest.bind-address"] == "127.0.0.1"
    conf = flink_configuration(load_config(env={"VAD_JOB__LOCAL_REST_PORT": "18081"}), cluster=True).to_dict()
    assert not {"rest.port", "rest.bind-address", "rest.address", "jobmanager.bind-host", "taskmanager.host"} & set(
        conf
    )
    with pytest.raises(Exception, match="local_rest_port"):
        load_config(env={"VAD_JOB__LOCAL_REST_PORT": "70000"})


def test_a_local_run_takes_extra_flink_settings_but_not_ones_the_job_sets_itself():
    from jobs.runtime import flink_configuration

    reporter = {"metrics.reporter.pgw.factory.class": "org.example.Factory", "metrics.reporter.pgw.interval": "1 s"}
    env = {"VAD_JOB__LOCAL_FLINK_SETTINGS": json.dumps(reporter)}
    conf = flink_configuration(load_config(env=env), cluster=False).to_dict()
    assert {k: conf[k] for k in reporter} == reporter and conf["python.execution-mode"] == "process"
    # A cluster's settings are its own.
    assert not set(reporter) & set(flink_configuration(load_config(env=env), cluster=True).to_dict())
    for key in ("python.execution-mode", "parallelism.default", "execution.checkpointing.interval", "rest.port"):
        with pytest.raises(Exception, match=rf"job\.local_flink_settings.*{re.escape(key)}.*set by the job"):
            load_config(env={"VAD_JOB__LOCAL_FLINK_SETTINGS": json.dumps({key: "1"})})
    with pytest.raises(Exception, match="not a Flink setting"):
        load_config(env={"VAD_JOB__LOCAL_FLINK_SETTINGS": json.dumps({"a b": "1"})})


def test_the_job_restarts_for_as_long_as_a_failure_lasts_unless_capped():
    from jobs.runtime import flink_configuration

    key = "restart-strategy.exponential-delay."
    conf = flink_configuration(load_config(env={})).to_dict()
    # Flink's own default for this strategy: a cap would fail the job after so many failures in a row.
    assert conf[key + "attempts-before-reset-backoff"] == str(2**31 - 1)
    assert conf[key + "initial-backoff"] == "1000 ms" and conf[key + "max-backoff"] == "30000 ms"
    env = {"VAD_JOB__RESTART_ATTEMPTS": "5", "VAD_JOB__RESTART_INITIAL_BACKOFF_MS": "200"}
    conf = flink_configuration(load_config(env=env)).to_dict()
    assert conf[key + "attempts-before-reset-backoff"] == "5" and conf[key + "initial-backoff"] == "200 ms"
    with pytest.raises(Exception, match=r"job.*restart_max_backoff_ms is below"):
        load_config(env={"VAD_JOB__RESTART_MAX_BACKOFF_MS": "500"})


def test_the_job_tolerates_failed_checkpoints_through_a_storage_outage():
    from jobs.runtime import flink_configuration

    key = "execution.checkpointing.tolerable-failed-checkpoints"
    cfg = load_config(env={})
    # Flink's default, 0, would restart the job at the first checkpoint its storage refuses; the
    # default must outlast minutes of outage at the default interval.
    assert int(flink_configuration(cfg).to_dict()[key]) * cfg.job.checkpoint_interval_ms >= 5 * 60_000
    conf = flink_configuration(load_config(env={"VAD_JOB__TOLERABLE_CHECKPOINT_FAILURES": "0"})).to_dict()
    assert conf[key] == "0"
    with pytest.raises(Exception, match=r"job\.tolerable_checkpoint_failures"):
        load_config(env={"VAD_JOB__TOLERABLE_CHECKPOINT_FAILURES": "-1"})


def test_snapshot_dirs_are_the_clusters_unless_the_config_names_them(monkeypatch):
    from jobs.runtime import flink_configuration, on_cluster
    from vad.config import REPO_ROOT

    ckpt, sp = "execution.checkpointing.dir", "execution.checkpointing.savepoint-dir"
    # A local run has no cluster settings: the repository's .cache folders, as before.
    local = flink_configuration(load_config(env={}), cluster=False).to_dict()
    assert local[ckpt] == (REPO_ROOT / ".cache" / "checkpoints").as_uri()
    assert local[sp] == (REPO_ROOT / ".cache" / "savepoints").as_uri()
    # On a cluster the job leaves them to the cluster (its settings would take precedence).
    conf = flink_configuration(load_config(env={}), cluster=True).to_dict()
    assert ckpt not in conf and sp not in conf and conf["execution.checkpointing.storage"] == "filesystem"
    # A directory the config names is the job's everywhere.
    env = {"VAD_JOB__CHECKPOINT_DIR": "s3://b/ckpt", "VAD_JOB__SAVEPOINT_DIR": "sp"}
    for cluster in (True, False):
        conf = flink_configuration(load_config(env=env), cluster=cluster).to_dict()
        assert conf[ckpt] == "s3://b/ckpt" and conf[sp] == (REPO_ROOT / "sp").as_uri()
    # Which case applies: a JVM that runs this driver (flink run, PythonDriver) hands PyFlink its
    # gateway's port. The gateway of this process is up already (above), so the variable is inert.
    assert not on_cluster()
    monkeypatch.setenv("PYFLINK_GATEWAY_PORT", "25333")
    assert on_cluster() and ckpt not in flink_configuration(load_config(env={})).to_dict()


# Flink's own merge of the job's settings over the cluster's, as `flink run` and the Kubernetes
# operator's PythonDriver set it up (StreamContextEnvironment.setAsContext with the cluster's
# configuration). A process of its own: the context factory is JVM-global.
_MERGE = """
import json
from pyflink.common import Configuration
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.java_gateway import get_gateway
from jobs.runtime import flink_configuration
from vad.config import load_config

jvm = get_gateway().jvm
cluster = Configuration()
cluster.set_string("execution.checkpointing.dir", "s3://bucket/checkpoints")
cluster.set_string("execution.checkpointing.savepoint-dir", "s3://bucket/savepoints")
context = jvm.org.apache.flink.client.program.StreamContextEnvironment
loader = jvm.org.apache.flink.core.execution.DefaultExecutorServiceLoader()
context.setAsContext(loader, cluster._j_configuration, jvm.java.lang.Thread.currentThread().getContextClassLoader(),
                     False, True)
out = {}
try:
    for name, env in (("default", {}), ("explicit", {"VAD_JOB__CHECKPOINT_DIR": "s3://other/ckpt"})):
        for on_cluster in (True, False):
            job = flink_configuration(load_config(env=env), cluster=on_cluster)
            j_env = StreamExecutionEnvironment.get_execution_environment(job)._j_stream_execution_environment
            conf = dict(j_env.getConfiguration().toMap())
            out[f"{name}/{'cluster' if on_cluster else 'local'}"] = [
                j_env.getClass().getSimpleName(),
                conf.get("execution.checkpointing.dir"),
                conf.get("execution.checkpointing.savepoint-dir"),
            ]
finally:
    context.unsetAsContext()
print(json.dumps(out))
"""


def test_flinks_merge_keeps_the_deployments_snapshot_dirs():
    import json
    import subprocess
    import sys

    from vad.config import REPO_ROOT

    env = {k: v for k, v in os.environ.items() if k not in ("PYFLINK_GATEWAY_PORT", "PYFLINK_GATEWAY_DISABLED")}
    r = subprocess.run(
        [sys.executable, "-c", _MERGE], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    s3 = ["StreamContextEnvironment", "s3://bucket/checkpoints", "s3://bucket/savepoints"]
    assert got["default/cluster"] == s3  # what the job runs with on Kubernetes: the FlinkDeployment's
    # What the job used to do (the local folders whatever the cluster said) would have won the merge.
    local = (REPO_ROOT / ".cache").as_uri()
    assert got["default/local"][1:] == [f"{local}/checkpoints", f"{local}/savepoints"]
    # A directory named in the config is the job's, the other stays the cluster's.
    assert got["explicit/cluster"] == ["StreamContextEnvironment", "s3://other/ckpt", "s3://bucket/savepoints"]
