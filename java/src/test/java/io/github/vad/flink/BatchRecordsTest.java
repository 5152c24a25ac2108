package io.github.vad.flink;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.java.functions.KeySelector;
import org.apache.flink.runtime.checkpoint.OperatorSubtaskState;
import org.apache.flink.runtime.execution.SuppressRestartsException;
import org.apache.flink.streaming.api.operators.KeyedProcessOperator;
import org.apache.flink.streaming.api.watermark.Watermark;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.streaming.util.KeyedOneInputStreamOperatorTestHarness;
import org.apache.flink.streaming.util.ProcessFunctionTestHarnesses;
import org.apache.flink.types.Row;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/**
 * BatchRecords in Flink's keyed operator harness: each way a batch leaves (full by count, full by
 * bytes, the processing-time delay bound, the watermark) and its state across a checkpoint. The
 * harness clock only moves when the test sets it, so the delay tests are exact and never sleep.
 */
class BatchRecordsTest {
    /** The job's key: Row(field 0), what PyFlink's KeyByKeySelector builds (jobs/jvm_operators.py). */
    private static final KeySelector<Row, Row> SHARD = row -> Row.of(row.getField(0));
    private static final TypeInformation<Row> SHARD_TYPE = Types.ROW(Types.INT);
    private static final int SHARDS = 4;

    private final List<KeyedOneInputStreamOperatorTestHarness<Row, Row, Row>> open = new ArrayList<>();

    @AfterEach
    void closeHarnesses() throws Exception {
        for (var h : open) {
            h.close();
        }
    }

    private KeyedOneInputStreamOperatorTestHarness<Row, Row, Row> harness(int batchSize, long maxDelayMs)
            throws Exception {
        var h = ProcessFunctionTestHarnesses.forKeyedProcessFunction(
                new BatchRecords(batchSize, maxDelayMs, SHARDS), SHARD, SHARD_TYPE);
        open.add(h);
        return h;
    }

    private static Row rec(int shard, String payload) {
        return Row.of(shard, payload.getBytes(StandardCharsets.UTF_8));
    }

    /** The batch layout read independently of BatchRecords.pack: uint32 count, (uint32 length, bytes)*. */
    private static List<String> unpack(byte[] batch) {
        ByteBuffer buf = ByteBuffer.wrap(batch).order(ByteOrder.LITTLE_ENDIAN);
        int n = buf.getInt();
        List<String> out = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            byte[] b = new byte[buf.getInt()];
            buf.get(b);
            out.add(new String(b, StandardCharsets.UTF_8));
        }
        assertEquals(0, buf.remaining(), "bytes left after the last record");
        return out;
    }

    /** Each emitted batch as "shard:[records]", in emission order. */
    private static List<String> batches(KeyedOneInputStreamOperatorTestHarness<Row, Row, Row> h) {
        List<String> out = new ArrayList<>();
        for (Row r : h.extractOutputValues()) {
            out.add(r.getField(0) + ":" + unpack((byte[]) r.getField(1)));
        }
        return out;
    }

    @Test
    void rejectsBoundsBelowOne() {
        assertThrows(IllegalArgumentException.class, () -> new BatchRecords(0, 100, 1));
        assertThrows(IllegalArgumentException.class, () -> new BatchRecords(10, 0, 1));
        assertThrows(IllegalArgumentException.class, () -> new BatchRecords(10, 100, 0));
    }

    @Test
    void packWritesTheLittleEndianLayout() {
        byte[] packed = BatchRecords.pack(Arrays.asList(new byte[] {'a', 'b'}, new byte[0], new byte[] {7}));
        byte[] expected = {3, 0, 0, 0, 2, 0, 0, 0, 'a', 'b', 0, 0, 0, 0, 1, 0, 0, 0, 7};
        assertArrayEquals(expected, packed);
        assertArrayEquals(new byte[] {0, 0, 0, 0}, BatchRecords.pack(List.of()));
    }

    @Test
    void flushesWhenTheBatchHoldsBatchSizeRecords() throws Exception {
        var h = harness(3, 3_600_000);
        h.processElement(rec(1, "a"), 10);
        h.processElement(rec(1, "b"), 11);
        assertEquals(List.of(), batches(h));
        h.processElement(rec(1, "c"), 12);
        assertEquals(List.of("1:[a, b, c]"), batches(h));
        h.processElement(rec(1, "d"), 13);
        h.processElement(rec(1, "e"), 14);
        h.processElement(rec(1, "f"), 15);
        h.processElement(rec(1, "g"), 16);
        assertEquals(List.of("1:[a, b, c]", "1:[d, e, f]"), batches(h));
    }

    @Test
    void batchesEachShardSeparatelyAndKeepsArrivalOrder() throws Exception {
        var h = harness(2, 3_600_000);
        h.processElement(rec(4, "x1"), 1);
        h.processElement(rec(9, "y1"), 2);
        h.processElement(rec(4, "x2"), 3);
        h.processElement(rec(9, "y2"), 4);
        assertEquals(List.of("4:[x1, x2]", "9:[y1, y2]"), batches(h));
    }

    @Test
    void passesRecordBytesOnUnchanged() throws Exception {
        var h = harness(2, 3_600_000);
        byte[] odd = {0, -1, 10, 13, -128, 127};
        h.processElement(Row.of(1, odd), 1);
        h.processElement(Row.of(1, new byte[0]), 2);
        byte[] batch = (byte[]) h.extractOutputValues().get(0).getField(1);
        assertArrayEquals(BatchRecords.pack(List.of(odd, new byte[0])), batch);
    }

    @Test
    void flushesWhenTheBatchReachesMaxBatchBytes() throws Exception {
        var h = harness(1_000, 3_600_000);
        // Each record counts its bytes plus its 4-byte length: these two are 4 bytes short of the bound,
        // and an empty record then brings the batch exactly to it.
        int half = (int) (BatchRecords.MAX_BATCH_BYTES / 2);
        h.processElement(Row.of(2, new byte[half - 4]), 1);
        h.processElement(Row.of(2, new byte[half - 8]), 2);
        assertEquals(0, h.extractOutputValues().size(), "flushed below the byte bound");
        h.processElement(Row.of(2, new byte[0]), 3);
        List<Row> out = h.extractOutputValues();
        assertEquals(1, out.size(), "not flushed at the byte bound");
        ByteBuffer buf = ByteBuffer.wrap((byte[]) out.get(0).getField(1)).order(ByteOrder.LITTLE_ENDIAN);
        assertEquals(3, buf.getInt());
        assertEquals(half - 4, buf.getInt());
        buf.position(buf.position() + half - 4);
        assertEquals(half - 8, buf.getInt());
        buf.position(buf.position() + half - 8);
        assertEquals(0, buf.getInt());
        assertEquals(0, buf.remaining());
        // The next record starts a new batch.
        h.processElement(rec(2, "next"), 4);
        assertEquals(1, h.extractOutputValues().size());
    }

    @Test
    void flushesAPartialBatchMaxDelayAfterItsFirstRecord() throws Exception {
        var h = harness(100, 50);
        h.setProcessingTime(1_000);
        h.processElement(rec(3, "a"), 1);
        h.setProcessingTime(1_030);
        h.processElement(rec(3, "b"), 2);
        h.setProcessingTime(1_049);
        assertEquals(List.of(), batches(h));
        // The bound runs from the first record, not the last.
        h.setProcessingTime(1_050);
        assertEquals(List.of("3:[a, b]"), batches(h));

        // The next batch gets its own bound.
        h.setProcessingTime(1_200);
        h.processElement(rec(3, "c"), 3);
        h.setProcessingTime(1_249);
        assertEquals(List.of("3:[a, b]"), batches(h));
        h.setProcessingTime(1_250);
        assertEquals(List.of("3:[a, b]", "3:[c]"), batches(h));
        // Nothing pending: a later timer emits no empty batch.
        h.setProcessingTime(10_000);
        assertEquals(2, h.extractOutputValues().size());
    }

    @Test
    void aBatchAfterACountFlushStillLeavesWithinItsDelayBound() throws Exception {
        var h = harness(2, 100);
        h.setProcessingTime(0);
        h.processElement(rec(5, "a"), 1);
        h.processElement(rec(5, "b"), 2); // full: its timer at 100 stays registered
        h.setProcessingTime(60);
        h.processElement(rec(5, "c"), 3); // bound: 160
        h.setProcessingTime(160);
        assertEquals(List.of("5:[a, b]", "5:[c]"), batches(h));
    }

    @Test
    void flushesWhenTheWatermarkPassesTheFirstRecord() throws Exception {
        var h = harness(100, 3_600_000);
        h.processElement(rec(6, "a"), 1_000);
        h.processElement(rec(6, "b"), 900); // late, but the batch's timer is its first record's
        h.processElement(rec(6, "c"), 1_500);
        h.processWatermark(999);
        assertEquals(List.of(), batches(h));
        h.processWatermark(1_000);
        assertEquals(List.of("6:[a, b, c]"), batches(h));
    }

    @Test
    void recordsWithoutTimestampLeaveWithTheNextWatermark() throws Exception {
        var h = harness(100, 3_600_000);
        h.processElement(new StreamRecord<>(rec(7, "a")));
        h.processElement(new StreamRecord<>(rec(7, "b")));
        assertEquals(List.of(), batches(h));
        h.processWatermark(Long.MIN_VALUE + 1);
        assertEquals(List.of("7:[a, b]"), batches(h));
    }

    @Test
    void theFinalWatermarkOfABoundedRunFlushesEveryShard() throws Exception {
        var h = harness(100, 3_600_000);
        h.processElement(rec(1, "a"), 5);
        h.processElement(rec(2, "b"), 6);
        h.processElement(rec(1, "c"), 7);
        h.processWatermark(Watermark.MAX_WATERMARK);
        List<String> got = batches(h);
        assertEquals(2, got.size(), got.toString());
        assertTrue(got.containsAll(List.of("1:[a, c]", "2:[b]")), got.toString());
    }

    @Test
    void aPendingBatchSurvivesACheckpointAndRestore() throws Exception {
        var before = harness(4, 500);
        before.setProcessingTime(0);
        before.processElement(rec(8, "a"), 1);
        before.processElement(rec(8, "b"), 2);
        before.processElement(rec(9, "z"), 3);
        OperatorSubtaskState snapshot = before.snapshot(1L, 10L);
        assertEquals(List.of(), batches(before));

        // The count goes on from the restored batch: two more records fill it.
        var after = restored(snapshot, 4, 500);
        after.processElement(rec(8, "c"), 4);
        assertEquals(List.of(), batches(after));
        after.processElement(rec(8, "d"), 5);
        assertEquals(List.of("8:[a, b, c, d]"), batches(after));

        // The restored processing-time timer still bounds the other shard's batch.
        after.setProcessingTime(499);
        assertEquals(1, after.extractOutputValues().size());
        after.setProcessingTime(500);
        assertEquals(List.of("8:[a, b, c, d]", "9:[z]"), batches(after));
    }

    @Test
    void aRestoredBatchLeavesWithTheWatermark() throws Exception {
        var before = harness(100, 3_600_000);
        before.processElement(rec(1, "a"), 100);
        before.processElement(rec(1, "b"), 200);
        OperatorSubtaskState snapshot = before.snapshot(1L, 10L);

        var after = restored(snapshot, 100, 3_600_000);
        after.processWatermark(99);
        assertEquals(List.of(), batches(after));
        after.processWatermark(100);
        assertEquals(List.of("1:[a, b]"), batches(after));
    }

    @Test
    void aRestoreWithAnotherShardCountIsRefusedWithoutRestarts() throws Exception {
        var before = harness(100, 3_600_000);
        before.processElement(rec(1, "a"), 100);
        OperatorSubtaskState snapshot = before.snapshot(1L, 10L);

        var e = assertThrows(SuppressRestartsException.class, () -> restored(snapshot, 100, 3_600_000, SHARDS + 1));
        assertEquals(BatchRecords.refusal(SHARDS, SHARDS + 1), e.getCause().getMessage());
        assertTrue(e.getCause().getMessage().startsWith("job.score_shards: "), e.getCause().getMessage());
        // The same count restores, whatever else changed.
        var after = restored(snapshot, 7, 50, SHARDS);
        after.processWatermark(100);
        assertEquals(List.of("1:[a]"), batches(after));
    }

    private KeyedOneInputStreamOperatorTestHarness<Row, Row, Row> restored(
            OperatorSubtaskState snapshot, int batchSize, long maxDelayMs) throws Exception {
        return restored(snapshot, batchSize, maxDelayMs, SHARDS);
    }

    private KeyedOneInputStreamOperatorTestHarness<Row, Row, Row> restored(
            OperatorSubtaskState snapshot, int batchSize, long maxDelayMs, int shards) throws Exception {
        var h = new KeyedOneInputStreamOperatorTestHarness<>(
                new KeyedProcessOperator<>(new BatchRecords(batchSize, maxDelayMs, shards)), SHARD, SHARD_TYPE);
        open.add(h);
        h.initializeState(snapshot);
        h.open();
        return h;
    }
}
