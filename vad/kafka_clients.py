"""Kafka clients built from the one KafkaConfig: kafka-python for Python processes, properties for
the Flink connector. Security settings (TLS, SASL) are applied the same way to both."""

from __future__ import annotations

from pathlib import Path

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from vad.config import KafkaConfig


def security_settings(cfg: KafkaConfig) -> dict:
    """kafka-python's keyword arguments for the configured TLS and SASL."""
    out: dict = {"security_protocol": cfg.security_protocol}
    if cfg.sasl_mechanism:
        out["sasl_mechanism"] = cfg.sasl_mechanism
        out["sasl_plain_username"] = cfg.sasl_username
        out["sasl_plain_password"] = cfg.sasl_password.get_secret_value() if cfg.sasl_password else None
    if cfg.ssl_cafile:
        out["ssl_cafile"] = _existing(cfg.ssl_cafile, "kafka.ssl_cafile")
    return out


def _existing(path: str, field: str) -> str:
    if not Path(path).is_file():
        raise FileNotFoundError(f"{field}: no such file {path}")
    return path


def jaas_quote(value: str) -> str:
    """A JAAS option value, double-quoted: the JAAS parser reads backslash escapes in quoted strings,
    so a password with ``"``, ``\\``, ``;`` or ``=`` stays one value (and a line break cannot end it)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'


def make_producer(
    cfg: KafkaConfig, linger_ms: int = 20, compression: str = "lz4", delivery_timeout_ms: int = 120_000
) -> KafkaProducer:
    """A producer, bootstrapped; if it cannot connect, AccessError with one line saying why (a refused
    login, a TLS mismatch, nothing listening) instead of kafka-python's timeout."""
    from vad.access_check import AccessError, bootstrap_reasons, kafka_problem

    settings = security_settings(cfg)
    with bootstrap_reasons() as reasons:
        try:
            return _producer(cfg, linger_ms, compression, settings, delivery_timeout_ms)
        except Exception as e:
            raise AccessError(kafka_problem(cfg, reasons, 30.0)) from e


def _producer(
    cfg: KafkaConfig, linger_ms: int, compression: str, settings: dict, delivery_timeout_ms: int
) -> KafkaProducer:
    return KafkaProducer(
        bootstrap_servers=cfg.bootstrap_servers,
        acks="all",
        linger_ms=linger_ms,
        compression_type=None if compression == "none" else compression,
        batch_size=256 * 1024,
        max_request_size=2 * 1024 * 1024,
        retries=10,
        delivery_timeout_ms=delivery_timeout_ms,
        # kafka-python's own sensors cost ~7% of the send path's CPU (measured on the edge bench) and
        # nothing reads them: delivery is counted from the send futures' callbacks.
        metrics_enabled=False,
        **settings,
    )


def make_consumer(cfg: KafkaConfig, *topics: str, group_id: str | None = None, **kw) -> KafkaConsumer:
    return KafkaConsumer(
        *topics,
        bootstrap_servers=cfg.bootstrap_servers,
        group_id=group_id,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
        **security_settings(cfg),
        **kw,
    )


def ensure_topics(cfg: KafkaConfig, timeout_s: float = 30.0) -> list[str]:
    """Create the configured topics if missing; returns the names it created."""
    t = cfg.topics
    admin = KafkaAdminClient(
        bootstrap_servers=cfg.bootstrap_servers, request_timeout_ms=int(timeout_s * 1000), **security_settings(cfg)
    )
    try:
        existing = set(admin.list_topics())
        want = [t.features, t.events, t.dead_letter, t.scores]
        new = [
            NewTopic(name, num_partitions=t.partitions, replication_factor=1) for name in want if name not in existing
        ]
        if new:
            try:
                admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass
        return [n.name for n in new]
    finally:
        admin.close()


# The job's connector (flink-sql-connector-kafka) carries the Kafka client relocated under this
# package: a JAAS login module must be named there, or the client finds none.
FLINK_KAFKA_PACKAGE = "org.apache.flink.kafka.shaded.org.apache.kafka"


def flink_properties(cfg: KafkaConfig, kafka_package: str = FLINK_KAFKA_PACKAGE) -> dict[str, str]:
    """Client properties for the Flink Kafka connector (Java client names); `kafka_package`: where
    the Kafka client's classes are (``org.apache.kafka`` for an unshaded client)."""
    props = {"security.protocol": cfg.security_protocol}
    if cfg.sasl_mechanism:
        props["sasl.mechanism"] = cfg.sasl_mechanism
        module = (
            f"{kafka_package}.common.security.plain.PlainLoginModule"
            if cfg.sasl_mechanism == "PLAIN"
            else f"{kafka_package}.common.security.scram.ScramLoginModule"
        )
        pw = cfg.sasl_password.get_secret_value() if cfg.sasl_password else ""
        props["sasl.jaas.config"] = (
            f"{module} required username={jaas_quote(cfg.sasl_username)} password={jaas_quote(pw)};"
        )
    if cfg.ssl_cafile:
        props["ssl.truststore.type"] = "PEM"
        props["ssl.truststore.location"] = _existing(cfg.ssl_cafile, "kafka.ssl_cafile")
    return props
