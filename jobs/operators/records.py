"""Raw frame-feature records in the job: which scoring shard a record goes to, and the dead-letter
message of a malformed one.

The job computes the shard in the JVM (``io.github.vad.flink.ShardedRecords``, the Kafka value
deserializer) and keys the stream there, so records reach Python once, in the scoring operator;
``shard_of`` is the same function in Python (a test checks both agree)."""

from __future__ import annotations

import base64
import json
import time
import zlib

from pyflink.common import Types
from pyflink.common.serialization import DeserializationSchema
from pyflink.datastream.data_stream import DataStream, KeyedStream
from pyflink.java_gateway import get_gateway

from vad.schema import SchemaError, peek_camera_id

_SAMPLE_BYTES = 256  # enough of a bad payload to debug it, small enough for any topic


def shard_of(camera_id: str, shards: int) -> int:
    # crc32, not hash(): Python's str hash differs between worker processes.
    return zlib.crc32(camera_id.encode()) % shards


def sharded_records(shards: int) -> DeserializationSchema:
    """Kafka value deserializer: record bytes -> Row(shard INT, bytes), computed in the JVM."""
    return DeserializationSchema(get_gateway().jvm.io.github.vad.flink.ShardedRecords(shards))


def key_by_shard(rows: DataStream) -> KeyedStream:
    """Keys Row(shard, bytes) by the shard in the JVM; the keyed operator gets the bytes.

    This is what ``DataStream.key_by`` builds after its Python key-selector step (a Row of key and
    value, keyed on field 0 by PyFlink's own KeyByKeySelector), minus that step."""
    jvm = get_gateway().jvm
    j_keyed = rows._j_data_stream.keyBy(jvm.KeyByKeySelector(), Types.ROW([Types.INT()]).get_java_type_info())
    return KeyedStream(j_keyed, Types.PRIMITIVE_ARRAY(Types.BYTE()), rows)


def dead_letter(raw: bytes, err: SchemaError) -> str:
    return json.dumps(
        {
            "reason": err.reason,
            "detail": err.detail,
            "camera_id": peek_camera_id(raw) if isinstance(raw, (bytes, bytearray)) else None,
            "size": len(raw) if raw is not None else 0,
            "payload_b64": base64.b64encode(bytes(raw[:_SAMPLE_BYTES])).decode() if raw else "",
            "seen_ms": int(time.time() * 1000),
        }
    )
