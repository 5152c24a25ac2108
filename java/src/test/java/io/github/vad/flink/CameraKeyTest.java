package io.github.vad.flink;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;

import java.nio.charset.StandardCharsets;
import org.junit.jupiter.api.Test;

/** CameraKey: an event line's Kafka key is its camera_id's UTF-8 bytes. */
class CameraKeyTest {

    @Test
    void theKeyIsTheCameraIdOfAnEventLine() {
        String line = "{\"schema\":\"vad.event/v1\",\"event_id\":\"0123456789abcdef0123456789abcdef\","
                + "\"camera_id\":\"site-1/gate:2\",\"phase\":\"open\",\"seq\":1,\"ts_ms\":1700000000123}";
        assertArrayEquals("site-1/gate:2".getBytes(StandardCharsets.UTF_8), new CameraKey().serialize(line));
    }

    @Test
    void escapesAndSpacesAreRead() {
        assertEquals("a/b", CameraKey.cameraOf("{\"camera_id\" : \"a\\/b\"}"));
        assertEquals("cam-A", CameraKey.cameraOf("{\"camera_id\":\"cam\\u002dA\"}"));
    }

    @Test
    void aCameraIdStringThatIsAnotherMembersValueIsNotTheKey() {
        assertEquals("real", CameraKey.cameraOf("{\"model_version\":\"camera_id\",\"camera_id\":\"real\"}"));
    }

    @Test
    void aLineWithoutAReadableCameraIdHasNoKey() {
        CameraKey key = new CameraKey();
        assertNull(key.serialize("{\"event_id\":\"x\"}"));
        assertNull(key.serialize("{\"camera_id\":\"\"}"));
        assertNull(key.serialize("{\"camera_id\":7}"));
        assertNull(key.serialize("{\"camera_id\":\"unterminated"));
        assertNull(key.serialize("{\"camera_id\":\"bad\\u00g1\"}"));
        assertNull(key.serialize("{\"camera_id\":\"bad\\q\"}"));
        assertNull(key.serialize("{\"camera_id\":\"cut\\u00"));
        assertNull(key.serialize("{\"camera_id\""));
    }
}
