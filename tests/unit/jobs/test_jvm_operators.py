"""The scoring shard computed in the JVM (io.github.vad.flink.ShardedRecords, the job's Kafka value
deserializer) is the Python `shard_of` of the record's camera id, malformed records included; the
shards' keys spread them evenly over the subtasks."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from pyflink.java_gateway import get_gateway
from pyflink.util.java_utils import add_jars_to_context_class_loader

from jobs.jvm_operators import shard_of
from jobs.runtime import connector_jars
from udfs.batches import pack_batch, unpack_batch
from vad.schema import HEADER_SIZE, N_CHANNELS, FrameFeatures


@pytest.fixture(scope="module")
def jvm():
    add_jars_to_context_class_loader([p.as_uri() for p in connector_jars()])
    return get_gateway().jvm


def _rec(cam: str) -> bytes:
    return FrameFeatures(cam, 7, 1_800_000_000_000, 360, 240, np.zeros((2, 3, N_CHANNELS), np.float32)).encode()


@pytest.mark.parametrize("shards", [1, 2, 4, 7, 64])
def test_java_shard_equals_python_shard_of_the_camera_id(jvm, shards):
    ids = ["cam-0000", "gate-3", "walkway-1", "x" * 128] + [f"cam-{i:04d}" for i in range(50)]
    java = jvm.io.github.vad.flink.ShardedRecords
    assert [java.shardOf(_rec(c), shards) for c in ids] == [shard_of(c, shards) for c in ids]


def test_malformed_records_go_to_the_shard_of_the_empty_id_or_of_what_is_there(jvm):
    java = jvm.io.github.vad.flink.ShardedRecords
    assert java.shardOf(b"", 5) == shard_of("", 5)
    assert java.shardOf(b"VADF\x01", 5) == shard_of("", 5)
    cut = _rec("camera-7")[: HEADER_SIZE + 3]  # truncated inside the id: its first bytes count
    assert java.shardOf(cut, 5) == shard_of("cam", 5)


def test_rows_carry_the_shard_key_and_the_unchanged_bytes(jvm):
    schema = jvm.io.github.vad.flink.ShardedRecords(4, 120)
    raw = _rec("gate-3")
    row = schema.deserialize(raw)
    assert row.getField(0) == schema.keyOf(shard_of("gate-3", 4)) and bytes(row.getField(1)) == raw
    assert str(schema.getProducedType()) == "Row(f0: Integer, f1: byte[])"
    with pytest.raises(Exception, match="shards and maxParallelism must be >= 1"):
        jvm.io.github.vad.flink.ShardedRecords(0)


def _subtask(jvm, key: int, parallelism: int, key_groups: int) -> int:
    """The subtask Flink sends a shard key to: the key as the job's keyed stream builds it (PyFlink's
    KeyByKeySelector on Row(key, bytes)) and Flink's key-group assignment."""
    row = jvm.io.github.vad.flink.ShardedRecords(1).deserialize(_rec("c"))
    row.setField(0, key)
    k = jvm.KeyByKeySelector().getKey(row)
    return jvm.org.apache.flink.runtime.state.KeyGroupRangeAssignment.assignKeyToParallelOperator(
        k, key_groups, parallelism
    )


@pytest.mark.parametrize(
    ("shards", "key_groups", "parallelisms"),
    [
        (1, 128, [1]),
        (4, 128, [1, 2, 4]),
        (12, 120, [1, 2, 3, 4, 6, 12]),  # the prod overlay: 12 shards, 120 key groups, autoscaled 2-12
        (2, 120, [1, 2]),
    ],
)
def test_shards_spread_evenly_over_the_subtasks_at_every_parallelism_dividing_them(
    jvm, shards, key_groups, parallelisms
):
    schema = jvm.io.github.vad.flink.ShardedRecords(shards, key_groups)
    keys = [schema.keyOf(i) for i in range(shards)]
    assert len(set(keys)) == shards
    for p in parallelisms:
        per_subtask = Counter(_subtask(jvm, k, p, key_groups) for k in keys)
        assert sorted(per_subtask) == list(range(p)) and set(per_subtask.values()) == {shards // p}, p


def test_shards_spread_within_one_of_even_at_other_parallelisms(jvm):
    schema = jvm.io.github.vad.flink.ShardedRecords(12, 120)
    per_subtask = Counter(_subtask(jvm, schema.keyOf(i), 5, 120) for i in range(12))
    assert len(per_subtask) == 5 and max(per_subtask.values()) - min(per_subtask.values()) <= 1


def test_shard_indexes_as_keys_would_leave_subtasks_idle(jvm):
    # Why the keys are chosen: the indexes 0..3 as keys put 4 shards on fewer than 4 subtasks.
    assert len({_subtask(jvm, k, 4, 128) for k in range(4)}) < 4


def test_java_batches_read_back_in_python(jvm):
    items = [_rec("gate-3"), b"", b"garbage", _rec("x" * 128)]
    java_items = jvm.java.util.ArrayList()
    for b in items:
        java_items.add(b)
    blob = bytes(jvm.io.github.vad.flink.BatchRecords.pack(java_items))
    assert blob == pack_batch(items)
    assert unpack_batch(blob) == items
    with pytest.raises(ValueError, match="left over"):
        unpack_batch(blob + b"\x00")
    with pytest.raises(Exception, match="must be >= 1"):
        jvm.io.github.vad.flink.BatchRecords(0, 50, 1)
