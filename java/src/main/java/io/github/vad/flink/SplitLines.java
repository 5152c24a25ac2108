package io.github.vad.flink;

import java.util.function.Consumer;
import org.apache.flink.api.common.functions.FlatMapFunction;
import org.apache.flink.util.Collector;

/**
 * One string per line: the scoring operator emits the per-frame scores of a whole batch as one
 * newline-separated string (one element across the Python boundary instead of one per frame), and
 * this splits them back into one Kafka record per frame before the scores sink.
 */
public final class SplitLines implements FlatMapFunction<String, String> {
    private static final long serialVersionUID = 1L;

    @Override
    public void flatMap(String value, Collector<String> out) {
        forEachLine(value, out::collect);
    }

    /** Calls {@code each} with every non-empty line of {@code value}, in order. */
    static void forEachLine(String value, Consumer<String> each) {
        int start = 0;
        int n = value.length();
        while (start < n) {
            int end = value.indexOf('\n', start);
            if (end < 0) {
                end = n;
            }
            if (end > start) {
                each.accept(value.substring(start, end));
            }
            start = end + 1;
        }
    }
}
