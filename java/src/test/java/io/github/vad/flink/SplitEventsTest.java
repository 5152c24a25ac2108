package io.github.vad.flink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;

import java.util.ArrayList;
import java.util.List;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.streaming.util.OneInputStreamOperatorTestHarness;
import org.junit.jupiter.api.Test;

/** SplitEvents: one element per event line, stamped with the event's ts_ms, not the batch's time. */
class SplitEventsTest {

    private static List<StreamRecord<String>> run(String value, long elementTs) throws Exception {
        try (OneInputStreamOperatorTestHarness<String, String> h = new OneInputStreamOperatorTestHarness<>(new SplitEvents())) {
            h.open();
            h.processElement(new StreamRecord<>(value, elementTs));
            List<StreamRecord<String>> out = new ArrayList<>();
            for (Object o : h.getOutput()) {
                @SuppressWarnings("unchecked")
                StreamRecord<String> r = (StreamRecord<String>) o;
                out.add(r);
            }
            return out;
        }
    }

    @Test
    void eachEventCarriesItsOwnTimeEvenFromTheEndOfInputFlush() throws Exception {
        String a = "{\"event_id\":\"a\",\"start_ts_ms\":5,\"ts_ms\":1700000000123,\"phase\":\"open\"}";
        String b = "{\"event_id\":\"b\",\"start_ts_ms\":7,\"ts_ms\":1700000000456,\"phase\":\"close\"}";
        List<StreamRecord<String>> out = run(a + "\n" + b + "\n", Long.MAX_VALUE);
        assertEquals(2, out.size());
        assertEquals(a, out.get(0).getValue());
        assertEquals(1700000000123L, out.get(0).getTimestamp());
        assertEquals(b, out.get(1).getValue());
        assertEquals(1700000000456L, out.get(1).getTimestamp());
    }

    @Test
    void aLineWithoutATimeGoesOutWithoutATimestamp() throws Exception {
        List<StreamRecord<String>> out = run("{\"start_ts_ms\":5}\n{\"ts_ms\":\"x\"}\n{\"ts_ms\":-3}", Long.MAX_VALUE);
        assertEquals(3, out.size());
        for (StreamRecord<String> r : out) {
            assertFalse(r.hasTimestamp(), r.getValue());
        }
    }

    @Test
    void timestampReading() {
        assertEquals(42, SplitEvents.timestampOf("{\"ts_ms\": 42}"));
        assertEquals(-1, SplitEvents.timestampOf("{\"start_ts_ms\":42}"));
        assertEquals(-1, SplitEvents.timestampOf("{\"ts_ms\":99999999999999999999}"));
        assertEquals(-1, SplitEvents.timestampOf("{\"ts_ms\":\u0663}")); // a non-ASCII digit
    }
}
