package io.github.vad.flink;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.state.ListState;
import org.apache.flink.api.common.state.ListStateDescriptor;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.PrimitiveArrayTypeInfo;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.runtime.execution.SuppressRestartsException;
import org.apache.flink.runtime.state.FunctionInitializationContext;
import org.apache.flink.runtime.state.FunctionSnapshotContext;
import org.apache.flink.streaming.api.checkpoint.CheckpointedFunction;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;

/**
 * Micro-batches the raw records of a scoring shard in the JVM: Row(shard, record bytes), keyed by
 * shard -> Row(shard, batch bytes), one element per batch.
 *
 * <p>Why in Java: PyFlink's cost is per element that crosses into the Python worker (on this
 * project's machines one element per record cost ~0.3 ms of CPU more per record than batches of
 * 64-256, the same job otherwise), so the scoring operator gets one element per batch. The batch waits in
 * checkpointed ListState (a failure loses nothing) until it holds {@code batchSize} records (or
 * {@link #MAX_BATCH_BYTES}, so oversize grids cannot build an element past what one array holds), a
 * processing-time timer {@code maxDelayMs} after its first record fires (the latency bound of a
 * partial batch), or the watermark passes its first record (which also flushes everything at the
 * end of a bounded run). Records are passed on unchanged and in arrival order; validation stays in
 * Python.
 *
 * <p>It also keeps the job's shard count in its snapshots (union operator state) and refuses a
 * restore from a snapshot taken with another count, at once and without restarts: a camera's
 * scoring state is keyed by its shard (crc32 of the camera id modulo the count), so under another
 * count most cameras would silently start afresh, their open episodes never closed.
 *
 * <p>Batch layout (little-endian): uint32 record count, then per record uint32 length and the
 * bytes. The one reader is {@code unpack_batch} in udfs/batches.py; {@link #pack} is the
 * one writer (public for the test that checks both sides agree).
 */
public final class BatchRecords extends KeyedProcessFunction<Row, Row, Row> implements CheckpointedFunction {
    private static final long serialVersionUID = 1L;
    /** A batch is flushed once it holds this many bytes, whatever its record count. */
    public static final long MAX_BATCH_BYTES = 64L << 20;

    private final int batchSize;
    private final long maxDelayMs;
    private final int shards;
    private transient ListState<Integer> shardCount;
    private transient ListState<byte[]> pending;
    private transient ValueState<Integer> count;
    private transient ValueState<Long> bytes;

    public BatchRecords(int batchSize, long maxDelayMs, int shards) {
        if (batchSize < 1 || maxDelayMs < 1 || shards < 1) {
            throw new IllegalArgumentException("batchSize, maxDelayMs and shards must be >= 1, got "
                    + batchSize + ", " + maxDelayMs + ", " + shards);
        }
        this.batchSize = batchSize;
        this.maxDelayMs = maxDelayMs;
        this.shards = shards;
    }

    @Override
    public void initializeState(FunctionInitializationContext context) throws Exception {
        shardCount = context.getOperatorStateStore()
                .getUnionListState(new ListStateDescriptor<>("score_shards", Types.INT));
        if (!context.isRestored()) {
            return;
        }
        // Empty in a snapshot of a version that did not record it: nothing to compare.
        for (Integer before : shardCount.get()) {
            if (before != null && before != shards) {
                throw new SuppressRestartsException(new IllegalStateException(refusal(before, shards)));
            }
        }
    }

    /** Why a restore is refused, naming the setting that fixes it. */
    public static String refusal(int before, int now) {
        return "job.score_shards: the state restored was written with " + before + " scoring shards and this job"
                + " has " + now + " (job.score_shards, or the parallelism when it is null); a camera's state is"
                + " keyed by its shard and would be lost. Restore with job.score_shards: " + before;
    }

    @Override
    public void snapshotState(FunctionSnapshotContext context) throws Exception {
        shardCount.update(List.of(shards));
    }

    @Override
    public void open(OpenContext openContext) {
        pending = getRuntimeContext().getListState(
                new ListStateDescriptor<>("pending", PrimitiveArrayTypeInfo.BYTE_PRIMITIVE_ARRAY_TYPE_INFO));
        count = getRuntimeContext().getState(new ValueStateDescriptor<>("pending_count", Types.INT));
        bytes = getRuntimeContext().getState(new ValueStateDescriptor<>("pending_bytes", Types.LONG));
    }

    @Override
    public void processElement(Row row, Context ctx, Collector<Row> out) throws Exception {
        byte[] record = (byte[]) row.getField(1);
        pending.add(record);
        Integer before = count.value();
        Long held = bytes.value();
        int n = (before == null ? 0 : before) + 1;
        long size = (held == null ? 0L : held) + 4 + record.length;
        if (n >= batchSize || size >= MAX_BATCH_BYTES) {
            flush(ctx.getCurrentKey(), out);
            return;
        }
        count.update(n);
        bytes.update(size);
        if (n == 1) {
            // Stale timers of a batch flushed when full find the buffer empty, or flush the next
            // batch a little early: never later than its bound.
            ctx.timerService().registerProcessingTimeTimer(
                    ctx.timerService().currentProcessingTime() + maxDelayMs);
            // A record without a timestamp still leaves with the next watermark (at the latest the
            // final one of a bounded run).
            Long ts = ctx.timestamp();
            ctx.timerService().registerEventTimeTimer(ts == null ? Long.MIN_VALUE : ts);
        }
    }

    @Override
    public void onTimer(long timestamp, OnTimerContext ctx, Collector<Row> out) throws Exception {
        Integer n = count.value();
        if (n != null && n > 0) {
            flush(ctx.getCurrentKey(), out);
        }
    }

    private void flush(Row key, Collector<Row> out) throws Exception {
        List<byte[]> items = new ArrayList<>();
        for (byte[] b : pending.get()) {
            items.add(b);
        }
        pending.clear();
        count.clear();
        bytes.clear();
        if (!items.isEmpty()) {
            out.collect(Row.of(key.getField(0), pack(items)));
        }
    }

    /** The batch layout: uint32 count, then (uint32 length, bytes) per record, little-endian. */
    public static byte[] pack(List<byte[]> items) {
        int size = 4;
        for (byte[] b : items) {
            size += 4 + b.length;
        }
        ByteBuffer buf = ByteBuffer.allocate(size).order(ByteOrder.LITTLE_ENDIAN);
        buf.putInt(items.size());
        for (byte[] b : items) {
            buf.putInt(b.length);
            buf.put(b);
        }
        return buf.array();
    }

    /** Row(shard INT, batch bytes): the same shape as the records, so the stream keys the same way. */
    public static TypeInformation<Row> producedType() {
        return Types.ROW(Types.INT, Types.PRIMITIVE_ARRAY(Types.BYTE));
    }
}
