import os

from jobs.runtime import local_jvm_options
from vad.config import load_config


def test_local_jvm_options_go_to_the_gateway_unless_the_user_set_jvm_args(monkeypatch):
    monkeypatch.delenv("JVM_ARGS", raising=False)
    local_jvm_options(load_config(env={}))

    assert os.environ["JVM_ARGS"] == "-XX:TieredStopAtLevel=1"
    monkeypatch.setenv("JVM_ARGS", "-Xmx2g")
    local_jvm_options(load_config(env={"VAD_JOB__LOCAL_JVM_OPTIONS": "-XX:+UseSerialGC"}))
    assert os.environ["JVM_ARGS"] == "-Xmx2g"
    monkeypatch.delenv("JVM_ARGS")
    local_jvm_options(load_config(env={"VAD_JOB__LOCAL_JVM_OPTIONS": "-XX:+UseSerialGC"}))
    assert os.environ["JVM_ARGS"] == "-XX:+UseSerialGC"


def test_the_source_batches_its_fetches_within_a_latency_bound():
    from jobs.anomaly_job import source_properties

    props = source_properties(load_config(env={"VAD_KAFKA__SECURITY_PROTOCOL": "SSL"}))
    assert props["fetch.min.bytes"] == "65536" and props["fetch.max.wait.ms"] == "20"
    assert props["security.protocol"] == "SSL"  # the connection settings are still there
    props = source_properties(load_config(env={"VAD_JOB__SOURCE_FETCH_MAX_WAIT_MS": "5"}))
    assert props["fetch.max.wait.ms"] == "5"
