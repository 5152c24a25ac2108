"""The anomaly detection job: Kafka frame features -> per-camera windows -> batched ONNX scores ->
episode detection -> events to Kafka, and beside it to Redis. Malformed records go to the dead-letter
topic. The model is checked before the job is built: a job that cannot score never starts.

    python -m jobs.anomaly_job --config config/default.yaml   (or: vad run)
"""

from __future__ import annotations

import argparse
import logging
import sys

from pyflink.common import Duration, Types, WatermarkStrategy
from pyflink.common.serialization import (
    ByteArraySchema,
    DeserializationSchema,
    SerializationSchema,
    SimpleStringSchema,
)
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.datastream.connectors.base import DeliveryGuarantee
from pyflink.datastream.connectors.kafka import (
    KafkaOffsetResetStrategy,
    KafkaOffsetsInitializer,
    KafkaRecordSerializationSchema,
    KafkaSink,
    KafkaSource,
)
from pyflink.java_gateway import get_gateway

from jobs.jvm_operators import (
    batch_by_shard,
    camera_key,
    java_side_output,
    key_groups,
    reinterpret_by_shard,
    sharded_records,
    split_events,
    split_lines,
)
from jobs.model_check import check_model
from jobs.runtime import flink_configuration, local_run_options
from udfs.redis_sink import WriteEventsToRedis
from udfs.score_detect import DEAD_LETTER, EVENTS, EVENTS_BY_SHARD, SCORES, ScoreAndDetect
from vad.config import Config, ConfigError, load_config
from vad.kafka_clients import flink_properties

log = logging.getLogger(__name__)


def source_properties(cfg: Config) -> dict[str, str]:
    """The source consumer's client properties: connection settings plus fetch batching."""
    return {
        **flink_properties(cfg.kafka),
        "fetch.min.bytes": str(cfg.job.source_fetch_min_bytes),
        "fetch.max.wait.ms": str(cfg.job.source_fetch_max_wait_ms),
    }


def kafka_source(cfg: Config, values: DeserializationSchema | None = None) -> KafkaSource:
    k, j = cfg.kafka, cfg.job
    start = {
        "earliest": KafkaOffsetsInitializer.earliest(),
        "latest": KafkaOffsetsInitializer.latest(),
        "committed": KafkaOffsetsInitializer.committed_offsets(KafkaOffsetResetStrategy.EARLIEST),
    }[j.start_from]
    b = (
        KafkaSource.builder()
        .set_bootstrap_servers(k.bootstrap_servers)
        .set_topics(k.topics.features)
        .set_group_id(k.group_id)
        .set_starting_offsets(start)
        .set_value_only_deserializer(values or ByteArraySchema())
        .set_properties(source_properties(cfg))
    )
    if j.bounded:
        b = b.set_bounded(KafkaOffsetsInitializer.latest())
    return b.build()


def kafka_sink(cfg: Config, topic: str, name: str, key: SerializationSchema | None = None) -> KafkaSink:
    """A sink of strings to ``topic``. With a ``key`` serializer the producer places each record by
    its key's hash (a key's records share one partition, in order, whatever the parallelism);
    without, each sink subtask writes to one partition."""
    k, j = cfg.kafka, cfg.job
    serializer = (
        KafkaRecordSerializationSchema.builder().set_topic(topic).set_value_serialization_schema(SimpleStringSchema())
    )
    if key is not None:
        serializer = serializer.set_key_serialization_schema(key)
    else:
        # Unkeyed records would otherwise be spread over partitions by the producer (sticky batches),
        # breaking the order of what one subtask writes. PyFlink does not wrap setPartitioner.
        jvm = get_gateway().jvm
        serializer._j_builder.setPartitioner(
            jvm.org.apache.flink.streaming.connectors.kafka.partitioner.FlinkFixedPartitioner()
        )
    b = KafkaSink.builder().set_bootstrap_servers(k.bootstrap_servers).set_record_serializer(serializer.build())
    for prop, value in {**flink_properties(k), "compression.type": j.sink_compression}.items():
        b = b.set_property(prop, value)
    if j.delivery == "exactly_once":
        b = (
            b.set_delivery_guarantee(DeliveryGuarantee.EXACTLY_ONCE)
            .set_transactional_id_prefix(f"{k.group_id}-{name}")
            .set_property("transaction.timeout.ms", str(j.transaction_timeout_ms))
        )
    else:
        b = b.set_delivery_guarantee(DeliveryGuarantee.AT_LEAST_ONCE)
    return b.build()


def build(env: StreamExecutionEnvironment, cfg: Config) -> None:
    j = cfg.job
    model = str(cfg.resolve(j.model_path))
    watermarks = WatermarkStrategy.for_bounded_out_of_orderness(Duration.of_millis(j.watermark_ooo_ms)).with_idleness(
        Duration.of_millis(j.idle_timeout_ms)
    )
    # Source: (scoring shard key, raw record bytes), event time from the Kafka record timestamp (the
    # frame's time). The shard comes from the record header, computed and keyed in the JVM; its key
    # spreads the shards evenly over the subtasks.
    source = kafka_source(cfg, sharded_records(j.shards, key_groups(env, j.parallelism)))
    rows = env.from_source(source, watermarks, "frame-features").uid("kafka-frame-features")
    # Features: each shard's records are micro-batched in the JVM (full, after batch_max_delay_ms, or
    # when the watermark passes), so a batch crosses into Python as one element.
    batches = batch_by_shard(rows, j.shards, j.batch_size, j.batch_max_delay_ms, uid="batch-records")
    # Score -> detect: a batch is decoded and validated, windowed per camera, scored in one ONNX call
    # per model among its cameras (each camera's view, or the default) and run through each camera's
    # episode detector. A batch's events leave it as one string of
    # their JSON, newline-joined, on two paths (udfs/score_detect.py).
    scored = (
        batches.process(
            ScoreAndDetect(
                model,
                cfg.detect,
                j.idle_timeout_ms,
                j.state_ttl_s,
                j.emit_scores,
                j.beam_sampling_thread,
                cfg.cameras,
                registry=str(cfg.resolve(j.model_registry)) if j.model_registry is not None else None,
                refresh_s=j.model_refresh_s,
            ),
            EVENTS_BY_SHARD,
        )
        .name("score-detect")
        .uid("score-detect")
    )
    # Sinks: malformed records, per-frame scores (optional), and the events: the record, to Kafka
    # straight from score-detect, split into one message per event in the JVM, keyed by its camera.
    java_side_output(scored, DEAD_LETTER).sink_to(kafka_sink(cfg, cfg.kafka.topics.dead_letter, "dlq")).name(
        "dead-letter-sink"
    ).uid("dead-letter-sink")
    if j.emit_scores:
        split_lines(java_side_output(scored, SCORES)).name("split-scores").uid("split-scores").sink_to(
            kafka_sink(cfg, cfg.kafka.topics.scores, "scores")
        ).name("scores-sink").uid("scores-sink")
    split_events(java_side_output(scored, EVENTS)).name("split-events").uid("split-events").sink_to(
        kafka_sink(cfg, cfg.kafka.topics.events, "events", key=camera_key())
    ).name("events-sink").uid("events-sink")
    # Redis, a view of the events: a branch in a task of its own (not chained, so a slow or absent
    # Redis never holds score-detect's thread), keyed by the same shard without a shuffle, so each
    # camera's events reach it in order. It holds writes back while Redis is away and emits nothing
    # (udfs/redis_sink.py).
    (
        reinterpret_by_shard(scored, Types.STRING())
        .process(WriteEventsToRedis(cfg.redis, j.beam_sampling_thread))
        .name("redis-events")
        .uid("redis-events")
        .disable_chaining()
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--config", default=None, help="YAML config (environment VAD_* overrides apply)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_config(args.config)
        check_model(cfg)
    except ConfigError as e:
        print(e, file=sys.stderr)
        raise SystemExit(2) from None
    run(cfg)


def run(cfg: Config) -> None:
    """Builds and executes the job with a config whose model ``check_model`` has accepted."""
    local_run_options(cfg)
    env = StreamExecutionEnvironment.get_execution_environment(flink_configuration(cfg))
    build(env, cfg)
    env.execute("vad-anomaly-detection")


if __name__ == "__main__":
    main(sys.argv[1:])
