"""The job's operators that run in the JVM, wired from Python: which scoring shard a raw
frame-feature record goes to, the micro-batches that carry a shard's records into the Python worker,
side outputs taken as JVM streams, the scoring operator's output keyed again by its shard (for the
Redis writer), and the line splitters before the scores and events sinks.

Everything before the scoring operator runs in the JVM (``java/src``): the Kafka value deserializer
computes the shard (``io.github.vad.flink.ShardedRecords``; ``shard_of`` is the same function here,
a test checks both agree), the stream is keyed by it, and ``io.github.vad.flink.BatchRecords``
packs each shard's records into batches, so the Python worker gets one element per batch instead of
one per record (PyFlink's cost is per element that crosses into Python). What the Python worker does
with a batch is in ``udfs/batches.py``."""

from __future__ import annotations

import zlib

from pyflink.common import Types
from pyflink.common.serialization import DeserializationSchema, SerializationSchema
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.datastream.data_stream import DataStream, KeyedStream
from pyflink.java_gateway import get_gateway


def shard_of(camera_id: str, shards: int) -> int:
    # crc32, not hash(): Python's str hash differs between worker processes.
    return zlib.crc32(camera_id.encode()) % shards


def sharded_records(shards: int, key_groups: int) -> DeserializationSchema:
    """Kafka value deserializer: record bytes -> Row(shard key INT, bytes), computed in the JVM; the
    shards' keys spread them evenly over the subtasks (``ShardedRecords.balancedKeys``)."""
    return DeserializationSchema(get_gateway().jvm.io.github.vad.flink.ShardedRecords(shards, key_groups))


def key_groups(env: StreamExecutionEnvironment, parallelism: int) -> int:
    """The job's number of key groups: its max parallelism if set (``pipeline.max-parallelism``, as
    the k8s deployment does), else the default Flink derives from the parallelism."""
    set_max = env.get_max_parallelism()
    if set_max > 0:
        return set_max
    return get_gateway().jvm.org.apache.flink.runtime.state.KeyGroupRangeAssignment.computeDefaultMaxParallelism(
        parallelism
    )


def _shard_key():
    # PyFlink's own KeyByKeySelector: key = Row(field 0), what ``DataStream.key_by`` builds after its
    # Python key-selector step (a Row of key and value), minus that step.
    return get_gateway().jvm.KeyByKeySelector(), Types.ROW([Types.INT()]).get_java_type_info()


def key_by_shard(rows: DataStream) -> KeyedStream:
    """Keys Row(shard, bytes) by the shard in the JVM; a keyed Python operator gets the bytes."""
    j_keyed = rows._j_data_stream.keyBy(*_shard_key())
    return KeyedStream(j_keyed, Types.PRIMITIVE_ARRAY(Types.BYTE()), rows)


def batch_by_shard(rows: DataStream, shards: int, batch_size: int, max_delay_ms: int, uid: str) -> KeyedStream:
    """Row(shard, record bytes) -> batches of a shard's records, keyed by shard; a keyed Python
    operator gets the batch bytes (``udfs.batches.unpack_batch``). The batcher keeps each shard's partition, so
    its output is keyed as it is, without another shuffle. It refuses a restore from a snapshot taken
    with another shard count, which would lose the cameras' scoring state."""
    jvm = get_gateway().jvm
    fn = jvm.io.github.vad.flink.BatchRecords(batch_size, max_delay_ms, shards)
    out_type = jvm.io.github.vad.flink.BatchRecords.producedType()
    j_batches = key_by_shard(rows)._j_data_stream.process(fn, out_type).name(uid).uid(uid)
    j_keyed = jvm.org.apache.flink.streaming.api.datastream.DataStreamUtils.reinterpretAsKeyedStream(
        j_batches, *_shard_key()
    )
    return KeyedStream(j_keyed, Types.PRIMITIVE_ARRAY(Types.BYTE()), DataStream(j_batches))


def reinterpret_by_shard(rows: DataStream, value_type) -> KeyedStream:
    """Row(shard, value) from an operator keyed by shard (which emits under its current key) ->
    keyed by that shard again without a shuffle: the same key sits in the same subtask, so the edge
    stays a forward one. A keyed Python operator gets the value."""
    jvm = get_gateway().jvm
    j_keyed = jvm.org.apache.flink.streaming.api.datastream.DataStreamUtils.reinterpretAsKeyedStream(
        rows._j_data_stream, *_shard_key()
    )
    return KeyedStream(j_keyed, value_type, rows)


def split_lines(lines: DataStream) -> DataStream:
    """A stream of newline-joined strings -> one string per line, in the JVM (SplitLines)."""
    jvm = get_gateway().jvm
    return DataStream(
        lines._j_data_stream.flatMap(jvm.io.github.vad.flink.SplitLines(), Types.STRING().get_java_type_info())
    )


def split_events(events: DataStream) -> DataStream:
    """A stream of newline-joined event JSON -> one string per event, each timestamped with its own
    ``ts_ms`` for the Kafka sink, in the JVM (SplitEvents): a timer's events would otherwise carry
    the timer's time, which at the end of a bounded input is one the broker refuses."""
    jvm = get_gateway().jvm
    return DataStream(
        events._j_data_stream.transform(
            "split-events", Types.STRING().get_java_type_info(), jvm.io.github.vad.flink.SplitEvents()
        )
    )


def camera_key() -> SerializationSchema:
    """Kafka key serializer for event lines: the event's camera_id as UTF-8 bytes, read in the JVM
    (CameraKey), so the events topic is keyed, partitioned and compactable by camera."""
    return SerializationSchema(get_gateway().jvm.io.github.vad.flink.CameraKey())


def java_side_output(stream: DataStream, tag) -> DataStream:
    """A side output of a Python operator as the JVM stream it is: PyFlink's ``get_side_output``
    adds a Python identity map, one more crossing per element, which a STRING side output bound
    for a Java sink does not need."""
    return DataStream(stream._j_data_stream.getSideOutput(tag.get_java_output_tag()))
