package io.github.vad.flink;

import java.util.zip.CRC32;
import org.apache.flink.api.common.serialization.DeserializationSchema;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.types.Row;

/**
 * Kafka value deserializer of the job's source: raw frame-feature record bytes -> Row(shard, bytes).
 *
 * <p>The scoring shard is computed here, in the JVM, so the job keys its stream in Java: a Python
 * key selector would move every record (~2 KB on Ped2, up to ~10 KB dense) to the Python worker and back once more before the
 * scoring operator sees it (measured: ~1.4x the job's throughput without that round trip). The shard
 * is CRC-32 of the camera id bytes modulo the shard count, the same as {@code shard_of} in
 * jobs/operators/records.py; a record too short to carry an id goes to the shard of the empty id.
 * The bytes are passed on unchanged: validation stays in Python, which dead-letters bad records.
 * Header layout: vad/schema.py (camera id length: little-endian uint16 at offset 6; id at 34).
 */
public final class ShardedRecords implements DeserializationSchema<Row> {
    private static final long serialVersionUID = 1L;
    static final int HEADER_SIZE = 34;
    static final int MAX_CAMERA_ID_BYTES = 128;

    private final int shards;

    public ShardedRecords(int shards) {
        if (shards < 1) {
            throw new IllegalArgumentException("shards must be >= 1, got " + shards);
        }
        this.shards = shards;
    }

    /** The scoring shard of a raw record (public for the Python test that checks both sides agree). */
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
        return Row.of(shardOf(bytes, shards), bytes);
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
