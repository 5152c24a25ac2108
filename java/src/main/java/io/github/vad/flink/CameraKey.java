package io.github.vad.flink;

import java.nio.charset.StandardCharsets;
import org.apache.flink.api.common.serialization.SerializationSchema;

/**
 * The Kafka record key of an event: its {@code camera_id}, as UTF-8 bytes, read from the event's
 * JSON line. Keyed records let the producer's partitioner put all of a camera's events in one
 * partition (so they stay in order whatever the job's parallelism), and let consumers join and
 * compact by camera.
 *
 * <p>It reads only the top-level {@code "camera_id"} member of the job's own event lines, without a
 * JSON parser: camera ids are checked at the job's input (plain ASCII segments), and an event line
 * is one flat object whose strings carry no unescaped quote. A line without a readable camera id
 * gets no key (null), which the producer then places as it places unkeyed records.
 */
public final class CameraKey implements SerializationSchema<String> {
    private static final long serialVersionUID = 1L;
    private static final String FIELD = "\"camera_id\"";

    @Override
    public byte[] serialize(String line) {
        String camera = cameraOf(line);
        return camera == null ? null : camera.getBytes(StandardCharsets.UTF_8);
    }

    /** The line's {@code camera_id} string value, unescaped; null if it has none or it is empty. */
    static String cameraOf(String line) {
        for (int at = line.indexOf(FIELD); at >= 0; at = line.indexOf(FIELD, at + 1)) {
            int i = skipSpaces(line, at + FIELD.length());
            // A "camera_id" string that is not followed by ':' is some other member's value.
            if (i < line.length() && line.charAt(i) == ':') {
                i = skipSpaces(line, i + 1);
                return i < line.length() && line.charAt(i) == '"' ? stringAt(line, i + 1) : null;
            }
        }
        return null;
    }

    private static int skipSpaces(String s, int i) {
        while (i < s.length() && (s.charAt(i) == ' ' || s.charAt(i) == '\t')) {
            i++;
        }
        return i;
    }

    /** The JSON string whose content starts at {@code i}, unescaped; null if malformed or empty. */
    private static String stringAt(String s, int i) {
        StringBuilder out = new StringBuilder();
        while (i < s.length()) {
            char c = s.charAt(i++);
            if (c == '"') {
                return out.length() == 0 ? null : out.toString();
            }
            if (c < 0x20) {
                return null;
            }
            if (c != '\\') {
                out.append(c);
                continue;
            }
            if (i >= s.length()) {
                return null;
            }
            char e = s.charAt(i++);
            switch (e) {
                case '"', '\\', '/' -> out.append(e);
                case 'b' -> out.append('\b');
                case 'f' -> out.append('\f');
                case 'n' -> out.append('\n');
                case 'r' -> out.append('\r');
                case 't' -> out.append('\t');
                case 'u' -> {
                    int code = 0;
                    for (int end = i + 4; i < end; i++) {
                        int digit = i < s.length() ? Character.digit(s.charAt(i), 16) : -1;
                        if (digit < 0 || s.charAt(i) >= 128) {
                            return null;
                        }
                        code = code * 16 + digit;
                    }
                    out.append((char) code);
                }
                default -> {
                    return null;
                }
            }
        }
        return null;
    }
}
