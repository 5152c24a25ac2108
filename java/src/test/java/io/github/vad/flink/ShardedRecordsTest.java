package io.github.vad.flink;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.HashSet;
import java.util.Set;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.runtime.state.KeyGroupRangeAssignment;
import org.apache.flink.types.Row;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * ShardedRecords: the shard of a record is Python's {@code shard_of} (zlib.crc32 of the camera id,
 * modulo the shard count) and each shard's key lands on its own subtask.
 */
class ShardedRecordsTest {

    /** A wire record as vad/schema.py lays it out: 34-byte header (uint16 id length at 6), id, payload. */
    private static byte[] record(byte[] cameraId, int declaredLength, byte[] payload) {
        ByteBuffer buf = ByteBuffer.allocate(ShardedRecords.HEADER_SIZE + cameraId.length + payload.length)
                .order(ByteOrder.LITTLE_ENDIAN);
        buf.put("VADF".getBytes(StandardCharsets.US_ASCII)).put((byte) 1).put((byte) 0);
        buf.putShort((short) declaredLength);
        buf.position(ShardedRecords.HEADER_SIZE);
        buf.put(cameraId).put(payload);
        return buf.array();
    }

    private static byte[] record(String cameraId) {
        byte[] id = cameraId.getBytes(StandardCharsets.UTF_8);
        return record(id, id.length, new byte[] {1, 2, 3, 4, 5, 6, 7, 8});
    }

    /**
     * Expected shards computed with the reference implementation, jobs/jvm_operators.py shard_of:
     * {@code zlib.crc32(camera_id.encode()) % shards} (crc32 in the comment, for shards 4, 7, 16).
     */
    @ParameterizedTest
    @CsvSource({
        "cam-0,          2, 4, 6", // 0xddd658d6
        "cam-1,          0, 4, 0", // 0xaad16840
        "gate-3,         1, 2, 5", // 0x35dac545
        "ped2/test:001,  3, 4, 7", // 0x9127d507
        "lobby.east_2,   0, 1, 12", // 0x3d562ffc
    })
    void shardIsCrc32OfTheCameraIdLikePythonShardOf(String cameraId, int of4, int of7, int of16) {
        byte[] rec = record(cameraId);
        assertEquals(of4, ShardedRecords.shardOf(rec, 4));
        assertEquals(of7, ShardedRecords.shardOf(rec, 7));
        assertEquals(of16, ShardedRecords.shardOf(rec, 16));
        assertEquals(0, ShardedRecords.shardOf(rec, 1));
    }

    @Test
    void theShardDependsOnTheIdOnlyNotThePayload() {
        byte[] id = "cam-0".getBytes(StandardCharsets.UTF_8);
        assertEquals(6, ShardedRecords.shardOf(record(id, id.length, new byte[0]), 16));
        assertEquals(6, ShardedRecords.shardOf(record(id, id.length, new byte[4096]), 16));
    }

    @Test
    void anIdLongerThanTheSchemaAllowsIsCutAtMaxCameraIdBytes() {
        // shard_of("x" * 128) for 4, 7, 16 (the full 136-byte id would give 0, 0, 8).
        byte[] id = ("x".repeat(128) + "overflow").getBytes(StandardCharsets.UTF_8);
        byte[] rec = record(id, id.length, new byte[0]);
        assertEquals(3, ShardedRecords.shardOf(rec, 4));
        assertEquals(2, ShardedRecords.shardOf(rec, 7));
        assertEquals(7, ShardedRecords.shardOf(rec, 16));
    }

    @Test
    void aRecordCutInsideItsIdGoesToTheShardOfWhatIsThere() {
        // Header says 5 bytes ("cam-0", shard 6 of 16) but only "cam" arrived: shard_of("cam", 16) = 8.
        byte[] rec = record("cam".getBytes(StandardCharsets.UTF_8), 5, new byte[0]);
        assertEquals(8, ShardedRecords.shardOf(rec, 16));
    }

    @Test
    void recordsTooShortForAnIdGoToTheShardOfTheEmptyId() {
        // crc32(b"") == 0, so shard 0 for any shard count.
        assertEquals(0, ShardedRecords.shardOf(null, 7));
        assertEquals(0, ShardedRecords.shardOf(new byte[0], 7));
        assertEquals(0, ShardedRecords.shardOf("VADF\u0001".getBytes(StandardCharsets.US_ASCII), 7));
        // Length field present (5) but the record ends before the id starts.
        assertEquals(0, ShardedRecords.shardOf(new byte[] {'V', 'A', 'D', 'F', 1, 0, 5, 0, 9, 9}, 7));
        // A full header declaring an empty id.
        assertEquals(0, ShardedRecords.shardOf(record(new byte[0], 0, new byte[] {42}), 7));
    }

    @Test
    void deserializeGivesTheShardKeyAndTheBytesUnchanged() {
        ShardedRecords schema = new ShardedRecords(16, 128);
        byte[] raw = record("gate-3");
        Row row = schema.deserialize(raw);
        assertEquals(2, row.getArity());
        assertEquals(schema.keyOf(5), row.getField(0));
        assertArrayEquals(record("gate-3"), (byte[]) row.getField(1));
    }

    @Test
    void deserializeOfNullOrGarbageGivesShardZerosKey() {
        ShardedRecords schema = new ShardedRecords(4, 128);
        Row empty = schema.deserialize(null);
        assertEquals(schema.keyOf(0), empty.getField(0));
        assertArrayEquals(new byte[0], (byte[]) empty.getField(1));
        Row garbage = schema.deserialize(new byte[] {1, 2, 3});
        assertEquals(schema.keyOf(0), garbage.getField(0));
        assertArrayEquals(new byte[] {1, 2, 3}, (byte[]) garbage.getField(1));
    }

    @Test
    void producedTypeIsRowOfIntAndBytesAndTheStreamNeverEnds() {
        ShardedRecords schema = new ShardedRecords(4);
        assertEquals(Types.ROW(Types.INT, Types.PRIMITIVE_ARRAY(Types.BYTE)), schema.getProducedType());
        assertFalse(schema.isEndOfStream(Row.of(0, new byte[0])));
    }

    private static int subtaskOf(int key, int maxParallelism, int parallelism) {
        // The job keys by Row(key) (PyFlink's KeyByKeySelector): Flink routes on that Row's hash.
        return KeyGroupRangeAssignment.assignKeyToParallelOperator(Row.of(key), maxParallelism, parallelism);
    }

    @ParameterizedTest
    @CsvSource({"4, 128", "8, 128", "3, 128", "16, 256", "5, 10"})
    void eachShardsKeyLandsOnItsOwnSubtask(int shards, int maxParallelism) {
        int[] keys = ShardedRecords.balancedKeys(shards, maxParallelism);
        Set<Integer> distinct = new HashSet<>();
        for (int i = 0; i < shards; i++) {
            assertEquals(i, subtaskOf(keys[i], maxParallelism, shards), "shard " + i);
            distinct.add(keys[i]);
        }
        assertEquals(shards, distinct.size(), "keys are not distinct");
    }

    @Test
    void atAParallelismDividingTheShardsEachSubtaskGetsTheSameNumberOfShards() {
        int shards = 8;
        int maxParallelism = 128;
        int[] keys = ShardedRecords.balancedKeys(shards, maxParallelism);
        for (int parallelism : new int[] {1, 2, 4, 8}) {
            int[] perSubtask = new int[parallelism];
            for (int key : keys) {
                perSubtask[subtaskOf(key, maxParallelism, parallelism)]++;
            }
            for (int n : perSubtask) {
                assertEquals(shards / parallelism, n, "parallelism " + parallelism);
            }
        }
    }

    @Test
    void withMoreShardsThanKeyGroupsTheShardsWrapRound() {
        int[] keys = ShardedRecords.balancedKeys(6, 4);
        Set<Integer> distinct = new HashSet<>();
        for (int i = 0; i < keys.length; i++) {
            assertEquals(i % 4, subtaskOf(keys[i], 4, 4), "shard " + i);
            distinct.add(keys[i]);
        }
        assertEquals(6, distinct.size());
    }

    @Test
    void keyOfIsTheBalancedKeyOfTheShard() {
        ShardedRecords schema = new ShardedRecords(4, 128);
        int[] keys = ShardedRecords.balancedKeys(4, 128);
        for (int i = 0; i < 4; i++) {
            assertEquals(keys[i], schema.keyOf(i));
        }
        // The one-argument constructor uses Flink's default key groups at parallelism 1 (128).
        ShardedRecords byDefault = new ShardedRecords(4);
        for (int i = 0; i < 4; i++) {
            assertEquals(keys[i], byDefault.keyOf(i));
        }
    }

    @Test
    void rejectsShardCountsOrKeyGroupsBelowOne() {
        assertThrows(IllegalArgumentException.class, () -> new ShardedRecords(0));
        assertThrows(IllegalArgumentException.class, () -> new ShardedRecords(4, 0));
    }
}
