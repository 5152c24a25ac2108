package io.github.vad.flink;

import org.apache.flink.streaming.api.operators.AbstractStreamOperator;
import org.apache.flink.streaming.api.operators.OneInputStreamOperator;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;

/**
 * The scoring operator's events (one newline-joined string of event JSON per batch) -> one element
 * per event, timestamped with the event's own {@code ts_ms} (the time of the frame it was emitted
 * at), which the Kafka sink writes as the record's timestamp.
 *
 * <p>Why not the incoming element's timestamp, as {@link SplitLines} keeps it: events emitted from
 * a timer carry the timer's time, and the flush at the end of a bounded input fires at
 * {@code Long.MAX_VALUE}, a timestamp the broker refuses (its {@code message.timestamp.after.max.ms}),
 * which failed the job. An event line without a readable {@code ts_ms} goes out without a
 * timestamp (the Kafka client then stamps it with its own clock).
 */
public final class SplitEvents extends AbstractStreamOperator<String> implements OneInputStreamOperator<String, String> {
    private static final long serialVersionUID = 1L;
    private static final String FIELD = "\"ts_ms\":";

    @Override
    public void processElement(StreamRecord<String> element) {
        SplitLines.forEachLine(element.getValue(), line -> {
            long ts = timestampOf(line);
            output.collect(ts < 0 ? new StreamRecord<>(line) : new StreamRecord<>(line, ts));
        });
    }

    /** The event's {@code ts_ms}, or -1 when the line has none that reads as a non-negative long. */
    static long timestampOf(String line) {
        int at = line.indexOf(FIELD);
        if (at < 0) {
            return -1;
        }
        int i = at + FIELD.length();
        while (i < line.length() && line.charAt(i) == ' ') {
            i++;
        }
        long ts = 0;
        int digits = 0;
        for (; i < line.length() && Character.isDigit(line.charAt(i)) && line.charAt(i) < 128; i++, digits++) {
            if (digits == 18) {
                return -1; // beyond any millisecond timestamp a long holds without overflow
            }
            ts = ts * 10 + (line.charAt(i) - '0');
        }
        return digits == 0 ? -1 : ts;
    }
}
