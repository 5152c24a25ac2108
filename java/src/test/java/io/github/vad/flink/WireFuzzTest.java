package io.github.vad.flink;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.List;
import java.util.zip.CRC32;
import net.jqwik.api.Arbitraries;
import net.jqwik.api.Arbitrary;
import net.jqwik.api.Combinators;
import net.jqwik.api.Example;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.Provide;
import net.jqwik.api.constraints.IntRange;
import net.jqwik.api.constraints.Size;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;

/**
 * Property-based fuzzing of the JVM's readers of external bytes (docs/reliability.md): the shard
 * deserializer of every Kafka record, the batch framing the Python worker reads, the line splitter.
 * None may throw on any input: an exception there fails the job, where Python dead-letters the record.
 *
 * <p>The shard is checked against a corpus written by Python (wire_corpus.tsv: records the Python
 * decoder accepts or rejects, with {@code zlib.crc32} shards), so both languages agree on it.
 * {@link #TRIES} is the number of inputs per property: the JVM side fuzzes {@link #PROPERTIES} *
 * TRIES inputs (7,500), plus the corpus.
 */
class WireFuzzTest {
    static final int TRIES = 1500;
    static final int PROPERTIES = 5;
    static final int[] CORPUS_SHARDS = {4, 7, 16};
    private static final HexFormat HEX = HexFormat.of();
    private static final String ID_CHARS =
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:-";

    /** The shard as documented: CRC-32 of at most 128 id bytes from offset 34, cut where the record ends. */
    private static int referenceShard(byte[] data, int shards) {
        CRC32 crc = new CRC32();
        if (data.length >= 8) {
            int declared = Short.toUnsignedInt(ByteBuffer.wrap(data, 6, 2).order(ByteOrder.LITTLE_ENDIAN).getShort());
            int end = Math.min(ShardedRecords.HEADER_SIZE + Math.min(declared, ShardedRecords.MAX_CAMERA_ID_BYTES),
                    data.length);
            for (int i = ShardedRecords.HEADER_SIZE; i < end; i++) {
                crc.update(data[i]);
            }
        }
        return (int) (crc.getValue() % shards);
    }

    private static void assertShardedLikeTheReference(byte[] data, int shards) {
        byte[] copy = data.clone();
        int shard = ShardedRecords.shardOf(data, shards);
        assertTrue(shard >= 0 && shard < shards, "shard " + shard + " of " + shards);
        assertEquals(referenceShard(data, shards), shard);
        ShardedRecords schema = new ShardedRecords(shards, 128);
        Row row = schema.deserialize(data);
        assertEquals(schema.keyOf(shard), row.getField(0));
        assertArrayEquals(copy, (byte[]) row.getField(1), "the bytes pass on unchanged");
    }

    @Property(tries = TRIES)
    void anyBytesGetAShardAndPassOnUnchanged(
            @ForAll @Size(max = 300) byte[] data, @ForAll @IntRange(min = 1, max = 64) int shards) {
        assertShardedLikeTheReference(data, shards);
    }

    /** A valid-looking record: the header of vad/schema.py, a legal camera id, some payload. */
    static byte[] record(String cameraId, byte[] payload) {
        byte[] id = cameraId.getBytes(StandardCharsets.UTF_8);
        ByteBuffer buf = ByteBuffer.allocate(ShardedRecords.HEADER_SIZE + id.length + payload.length)
                .order(ByteOrder.LITTLE_ENDIAN);
        buf.put("VADF".getBytes(StandardCharsets.US_ASCII)).put((byte) 3).put((byte) 0);
        buf.putShort((short) id.length).putLong(7).putLong(1_700_000_000_000L);
        buf.putShort((short) 640).putShort((short) 480).putShort((short) 2).putShort((short) 3).putShort((short) 12);
        buf.put(id).put(payload);
        return buf.array();
    }

    @Provide
    Arbitrary<String> cameraIds() {
        Arbitrary<String> segment = Arbitraries.strings().withChars(ID_CHARS).ofMinLength(1).ofMaxLength(12)
                .filter(s -> !s.equals(".") && !s.equals(".."));
        return segment.list().ofMinSize(1).ofMaxSize(4).map(parts -> "c" + String.join("/", parts));
    }

    @Property(tries = TRIES)
    void aValidRecordsShardIsCrc32OfItsCameraId(
            @ForAll("cameraIds") String cameraId,
            @ForAll @Size(max = 64) byte[] payload,
            @ForAll @IntRange(min = 1, max = 64) int shards) {
        CRC32 crc = new CRC32();
        crc.update(cameraId.getBytes(StandardCharsets.UTF_8));
        assertEquals((int) (crc.getValue() % shards), ShardedRecords.shardOf(record(cameraId, payload), shards));
    }

    /** One edit of a valid record: bit flip, truncation, extension, splice, or a new id length. */
    @Provide
    Arbitrary<byte[]> mutatedRecords() {
        Arbitrary<byte[]> valid = Combinators.combine(cameraIds(), Arbitraries.bytes().array(byte[].class).ofMaxSize(64))
                .as(WireFuzzTest::record);
        Arbitrary<Integer> at = Arbitraries.integers().between(0, 400);
        Arbitrary<Integer> kind = Arbitraries.integers().between(0, 4);
        Arbitrary<byte[]> other = Arbitraries.bytes().array(byte[].class).ofMaxSize(200);
        return Combinators.combine(valid, kind, at, other).as(WireFuzzTest::mutate);
    }

    static byte[] mutate(byte[] rec, int kind, int at, byte[] other) {
        byte[] out;
        switch (kind) {
            case 0 -> {
                out = rec.clone();
                out[at % out.length] ^= (byte) (1 << (at % 8));
            }
            case 1 -> out = Arrays.copyOf(rec, at % (rec.length + 1));
            case 2 -> {
                out = Arrays.copyOf(rec, rec.length + other.length);
                System.arraycopy(other, 0, out, rec.length, other.length);
            }
            case 3 -> {
                int cut = at % (rec.length + 1);
                out = Arrays.copyOf(rec, cut + other.length);
                System.arraycopy(other, 0, out, cut, other.length);
            }
            default -> {
                out = rec.clone();
                // The id length field (uint16 at 6): past the record's end, past 128, or zero.
                int declared = (at * 167) & 0xffff;
                out[6] = (byte) declared;
                out[7] = (byte) (declared >>> 8);
            }
        }
        return out;
    }

    @Property(tries = TRIES)
    void aMutatedRecordGetsAShardAndPassesOnUnchanged(
            @ForAll("mutatedRecords") byte[] data, @ForAll @IntRange(min = 1, max = 64) int shards) {
        assertShardedLikeTheReference(data, shards);
    }

    /** Lines of the corpus file: hex record, Python's verdict, then the shard for each of CORPUS_SHARDS. */
    static List<String[]> corpus() throws IOException {
        List<String[]> out = new ArrayList<>();
        try (InputStream in = WireFuzzTest.class.getResourceAsStream("wire_corpus.tsv")) {
            assertNotNull(in, "wire_corpus.tsv is missing from the test resources");
            BufferedReader reader = new BufferedReader(new InputStreamReader(in, StandardCharsets.UTF_8));
            for (String line = reader.readLine(); line != null; line = reader.readLine()) {
                if (!line.isEmpty() && !line.startsWith("#")) {
                    out.add(line.split("\t", -1));
                }
            }
        }
        return out;
    }

    @Example
    void everyCorpusRecordGetsTheShardPythonComputed() throws IOException {
        List<String[]> lines = corpus();
        long accepted = lines.stream().filter(l -> l[1].equals("ok")).count();
        // Both kinds are there: records the Python decoder accepts and ones it dead-letters.
        assertTrue(accepted >= 50 && lines.size() - accepted >= 50, accepted + " of " + lines.size());
        for (String[] line : lines) {
            byte[] data = HEX.parseHex(line[0]);
            for (int i = 0; i < CORPUS_SHARDS.length; i++) {
                assertEquals(Integer.parseInt(line[2 + i]), ShardedRecords.shardOf(data, CORPUS_SHARDS[i]),
                        line[1] + " record " + line[0].substring(0, Math.min(120, line[0].length())));
            }
        }
    }

    @Example
    void everyPropertyRunsTriesInputsAndIsCounted() {
        int properties = 0;
        for (java.lang.reflect.Method m : WireFuzzTest.class.getDeclaredMethods()) {
            Property p = m.getAnnotation(Property.class);
            if (p != null) {
                assertEquals(TRIES, p.tries(), m.getName());
                properties++;
            }
        }
        assertEquals(PROPERTIES, properties);
    }

    /** unpack_batch of udfs/batches.py, reimplemented: the reader of BatchRecords.pack. */
    static List<byte[]> unpack(byte[] blob) {
        ByteBuffer buf = ByteBuffer.wrap(blob).order(ByteOrder.LITTLE_ENDIAN);
        int n = buf.getInt();
        List<byte[]> out = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            byte[] item = new byte[buf.getInt()];
            buf.get(item);
            out.add(item);
        }
        assertFalse(buf.hasRemaining(), "bytes left over");
        return out;
    }

    @Property(tries = TRIES)
    void aPackedBatchUnpacksToItsRecords(@ForAll @Size(max = 20) List<@Size(max = 100) byte[]> items) {
        byte[] blob = BatchRecords.pack(items);
        List<byte[]> back = unpack(blob);
        assertEquals(items.size(), back.size());
        for (int i = 0; i < items.size(); i++) {
            assertArrayEquals(items.get(i), back.get(i));
        }
    }

    private static List<String> split(String value) {
        List<String> out = new ArrayList<>();
        new SplitLines().flatMap(value, new Collector<>() {
            @Override
            public void collect(String record) {
                out.add(record);
            }

            @Override
            public void close() {}
        });
        return out;
    }

    @Property(tries = TRIES)
    void splitLinesGivesEveryNonEmptyLine(@ForAll("lines") String value) {
        List<String> want = new ArrayList<>();
        for (String line : value.split("\n", -1)) {
            if (!line.isEmpty()) {
                want.add(line);
            }
        }
        assertEquals(want, split(value));
    }

    @Provide
    Arbitrary<String> lines() {
        // Newlines often, and any other character (\r, NUL, surrogates) sometimes: a line is cut at \n only.
        return Arbitraries.oneOf(
                        Arbitraries.strings().withChars("ab\n\r{}\"").ofMaxLength(40),
                        Arbitraries.strings().all().ofMaxLength(40))
                .list().ofMaxSize(4).map(parts -> String.join("\n", parts));
    }
}
