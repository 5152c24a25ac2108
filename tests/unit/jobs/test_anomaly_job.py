"""The job's Kafka sinks as built for the JVM: the producer settings each config gives them."""

from __future__ import annotations

import pytest
from pyflink.util.java_utils import add_jars_to_context_class_loader

from jobs.anomaly_job import kafka_sink
from jobs.runtime import connector_jars
from vad.config import load_config


@pytest.fixture(scope="module", autouse=True)
def _connector():
    add_jars_to_context_class_loader([p.as_uri() for p in connector_jars()])


def producer_settings(sink) -> dict[str, str]:
    """The Kafka producer properties the built sink (a Java KafkaSink) hands its writers."""
    j = sink.get_java_function()
    field = j.getClass().getDeclaredField("kafkaProducerConfig")
    field.setAccessible(True)
    props = field.get(j)
    return {str(k): str(props.get(k)) for k in props.keySet()}


@pytest.mark.parametrize(("env", "want"), [({}, "lz4"), ({"VAD_JOB__SINK_COMPRESSION": "none"}, "none")])
def test_the_sinks_compress_as_configured(env, want):
    cfg = load_config(env=env)
    got = producer_settings(kafka_sink(cfg, cfg.kafka.topics.events, "events"))
    assert got["compression.type"] == want, got


def test_an_exactly_once_sink_is_transactional_with_the_configured_timeout():
    cfg = load_config(env={"VAD_JOB__DELIVERY": "exactly_once", "VAD_JOB__TRANSACTION_TIMEOUT_MS": "60000"})
    got = producer_settings(kafka_sink(cfg, cfg.kafka.topics.dead_letter, "dlq"))
    assert got["transaction.timeout.ms"] == "60000" and got["compression.type"] == "lz4", got
