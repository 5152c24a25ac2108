package io.github.vad.flink;

import java.util.BitSet;
import java.util.zip.CRC32;
import org.apache.flink.api.common.serialization.DeserializationSchema;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.runtime.state.KeyGroupRangeAssignment;
import org.apache.flink.types.Row;

/**
 * Kafka value deserializer of the job's source: raw frame-feature record bytes -> Row(shard, bytes).
 *
 * <p>The scoring shard is computed here, in the JVM, so the job keys its stream in Java: a Python
 * key selector would move every record (~2 KB on Ped2, up to ~10 KB dense) to the Python worker and back once more before the
 * scoring operator sees it (measured: ~1.4x the job's throughput without that round trip). The shard
 * is CRC-32 of the camera id bytes modulo the shard count, the same as {@code shard_of} in
 * jobs/jvm_operators.py; a record too short to carry an id goes to the shard of the empty id.
 * The bytes are passed on unchanged: validation stays in Python, which dead-letters bad records.
 * Header layout: vad/schema.py (camera id length: little-endian uint16 at offset 6; id at 34).
 *
 * <p>The key a shard is given is not its index but {@link #balancedKeys}: Flink sends a key to the
 * subtask owning its key group (a hash), so with shard indexes as keys 4 shards over 4 subtasks
 * would leave some subtasks two shards and others none. With one shard per subtask a subtask's
 * records make one stream of batches, which fills its batches fastest (live latency: docs/benchmarks.md).
 */
public final class ShardedRecords implements DeserializationSchema<Row> {
    private static final long serialVersionUID = 1L;
    static final int HEADER_SIZE = 34;
    static final int MAX_CAMERA_ID_BYTES = 128;

    private final int shards;
    private final int[] keys;

    /** Shards of a job with Flink's default number of key groups at parallelism 1 (128). */
    public ShardedRecords(int shards) {
        this(shards, KeyGroupRangeAssignment.computeDefaultMaxParallelism(1));
    }

    /** @param maxParallelism the job's number of key groups (its max parallelism) */
    public ShardedRecords(int shards, int maxParallelism) {
        if (shards < 1 || maxParallelism < 1) {
            throw new IllegalArgumentException(
                    "shards and maxParallelism must be >= 1, got " + shards + ", " + maxParallelism);
        }
        this.shards = shards;
        this.keys = balancedKeys(shards, maxParallelism);
    }

    /**
     * The key of each shard: shard i gets the smallest unused non-negative int whose key group lies
     * in the i-th of {@code shards} equal runs of key groups (the subtask i at parallelism
     * {@code shards}). A subtask owns a run of key groups at any parallelism, so at parallelism p
     * each subtask gets shards/p shards when p divides the shard count and the key groups divide
     * by it (what k8s/tools/check_rendered.py asks of the autoscaler's bounds), and one more or
     * less otherwise. With more shards than key groups they wrap round.
     */
    public static int[] balancedKeys(int shards, int maxParallelism) {
        int slots = Math.min(shards, maxParallelism);
        int[] out = new int[shards];
        BitSet used = new BitSet();
        for (int i = 0; i < shards; i++) {
            int target = i % slots;
            int k = 0;
            // A candidate lands in the target run with probability ~1/slots: a bounded search.
            for (int tries = 0; ; k++, tries++) {
                if (tries > 10_000_000) {
                    throw new IllegalStateException("no key found for shard " + i);
                }
                if (!used.get(k)
                        && KeyGroupRangeAssignment.assignKeyToParallelOperator(Row.of(k), maxParallelism, slots)
                                == target) {
                    break;
                }
            }
            used.set(k);
            out[i] = k;
        }
        return out;
    }

    /** The key a shard's records are given (public for the test of the balance). */
    public int keyOf(int shard) {
        return keys[shard];
    }

    /** The scoring shard (index) of a raw record (public for the Python test that checks both sides agree). */
    public static int shardOf(byte[] data, int shards) {
        CRC32 crc = new CRC32();
        if (data != null && data.length >= 8) {
            int camLen = (data[6] & 0xff) | ((data[7] & 0xff) << 8);
            int end = Math.min(HEADER_SIZE + Math.min(camLen, MAX_CAMERA_ID_BYTES), data.length);
            if (end > HEADER_SIZE) {
                crc.update(data, HEADER_SIZE, end - HEADER_SIZE);
            }
        }
        return (int) (crc.getValue() % shards);
    }

    @Override
    public Row deserialize(byte[] message) {
        byte[] bytes = message == null ? new byte[0] : message;
        return Row.of(keys[shardOf(bytes, shards)], bytes);
    }

    @Override
    public boolean isEndOfStream(Row nextElement) {
        return false;
    }

    @Override
    public TypeInformation<Row> getProducedType() {
        return Types.ROW(Types.INT, Types.PRIMITIVE_ARRAY(Types.BYTE));
    }
}
