"""The JVM micro-batcher (io.github.vad.flink.BatchRecords) on Flink's real local runtime: a shard's
records leave in batches of batch_size, in arrival order and unchanged, and the final watermark of a
bounded run flushes the partial batch; shards are batched apart."""

from __future__ import annotations

import sys
import tempfile

import pytest
from pyflink.common import Configuration, Row, Types
from pyflink.datastream import KeyedProcessFunction, StreamExecutionEnvironment

from jobs.jvm_operators import batch_by_shard
from jobs.runtime import connector_jars
from udfs.batches import unpack_batch


@pytest.fixture(autouse=True)
def _own_tempdir(tmp_path, monkeypatch):
    # PyFlink's from_collection writes its elements into a tempfile.mkdtemp() folder it never
    # removes: one empty folder in /tmp per call, unless the temporary folder is the test's own.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


def _local_env() -> StreamExecutionEnvironment:
    c = Configuration()
    c.set_string("pipeline.jars", ";".join(p.as_uri() for p in connector_jars()))
    c.set_string("parallelism.default", "1")
    c.set_string("python.executable", sys.executable)
    return StreamExecutionEnvironment.get_execution_environment(c)


class _Sizes(KeyedProcessFunction):
    def process_element(self, value, ctx):
        items = unpack_batch(value)
        yield f"{ctx.get_current_key()}:" + ",".join(b.decode() for b in items)


def test_batches_by_count_per_shard_and_the_last_partial_batch_at_end_of_input():
    env = _local_env()
    rows = [Row(shard, f"{shard}-{i}".encode()) for i in range(7) for shard in (0, 1)] + [Row(1, b"1-7")]
    src = env.from_collection(rows, Types.ROW([Types.INT(), Types.PRIMITIVE_ARRAY(Types.BYTE())]))
    # A huge delay: only the count and the end of input may flush.
    out = batch_by_shard(src, 2, 3, 3_600_000, uid="batch-test").process(_Sizes(), Types.STRING())
    with out.execute_and_collect() as results:
        got = sorted(results)
    assert got == sorted(["0:0-0,0-1,0-2", "0:0-3,0-4,0-5", "0:0-6", "1:1-0,1-1,1-2", "1:1-3,1-4,1-5", "1:1-6,1-7"])


def test_a_batch_is_also_flushed_at_its_byte_bound():
    from pyflink.java_gateway import get_gateway

    env = _local_env()
    bound = get_gateway().jvm.io.github.vad.flink.BatchRecords.MAX_BATCH_BYTES
    big = bound // 3 + 1  # three of these pass the bound
    rows = [Row(0, bytes([65 + i]) * big) for i in range(4)]
    src = env.from_collection(rows, Types.ROW([Types.INT(), Types.PRIMITIVE_ARRAY(Types.BYTE())]))
    out = batch_by_shard(src, 1, 100, 3_600_000, uid="batch-test").process(_Counts(), Types.STRING())
    with out.execute_and_collect() as results:
        got = list(results)
    assert got == ["ABC", "D"]


class _Counts(KeyedProcessFunction):
    def process_element(self, value, ctx):
        yield "".join(chr(b[0]) for b in unpack_batch(value))
