import os

import pytest

from jobs.runtime import PYTHON_WORKER_MODE_ENV, local_run_options
from vad.config import load_config


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    monkeypatch.delenv("JVM_ARGS", raising=False)
    monkeypatch.delenv(PYTHON_WORKER_MODE_ENV, raising=False)


def test_local_jvm_options_go_to_the_gateway_unless_the_user_set_jvm_args(monkeypatch):
    local_run_options(load_config(env={}))

    assert os.environ["JVM_ARGS"] == "-XX:TieredStopAtLevel=1"
    monkeypatch.setenv("JVM_ARGS", "-Xmx2g")
    local_run_options(load_config(env={"VAD_JOB__LOCAL_JVM_OPTIONS": "-XX:+UseSerialGC"}))
    assert os.environ["JVM_ARGS"] == "-Xmx2g"
    monkeypatch.delenv("JVM_ARGS")
    local_run_options(load_config(env={"VAD_JOB__LOCAL_JVM_OPTIONS": "-XX:+UseSerialGC"}))
    assert os.environ["JVM_ARGS"] == "-XX:+UseSerialGC"


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


def test_the_source_batches_its_fetches_within_a_latency_bound():
    from jobs.anomaly_job import source_properties

    props = source_properties(load_config(env={"VAD_KAFKA__SECURITY_PROTOCOL": "SSL"}))
    assert props["fetch.min.bytes"] == "65536" and props["fetch.max.wait.ms"] == "20"
    assert props["security.protocol"] == "SSL"  # the connection settings are still there
    props = source_properties(load_config(env={"VAD_JOB__SOURCE_FETCH_MAX_WAIT_MS": "5"}))
    assert props["fetch.max.wait.ms"] == "5"


def test_a_local_runs_rest_port_is_set_on_loopback_only_when_asked():
    from jobs.runtime import flink_configuration

    conf = flink_configuration(load_config(env={})).to_dict()
    assert "rest.port" not in conf and "rest.bind-address" not in conf
    conf = flink_configuration(load_config(env={"VAD_JOB__LOCAL_REST_PORT": "18081"})).to_dict()
    assert conf["rest.port"] == "18081" and conf["rest.bind-address"] == "127.0.0.1"
    with pytest.raises(Exception, match="local_rest_port"):
        load_config(env={"VAD_JOB__LOCAL_REST_PORT": "70000"})
