package io.github.vad.flink;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.ArrayList;
import java.util.List;
import org.apache.flink.api.common.functions.util.ListCollector;
import org.junit.jupiter.api.Test;

/** SplitLines: one output per non-empty line of a newline-joined string, in order. */
class SplitLinesTest {

    private static List<String> split(String value) {
        List<String> out = new ArrayList<>();
        new SplitLines().flatMap(value, new ListCollector<>(out));
        return out;
    }

    @Test
    void oneRecordPerLineInOrder() {
        assertEquals(List.of("{\"f\":1}", "{\"f\":2}", "{\"f\":3}"), split("{\"f\":1}\n{\"f\":2}\n{\"f\":3}"));
    }

    @Test
    void aSingleLineWithoutNewlineIsOneRecord() {
        assertEquals(List.of("only"), split("only"));
    }

    @Test
    void emptyInputGivesNoRecord() {
        assertEquals(List.of(), split(""));
        assertEquals(List.of(), split("\n"));
        assertEquals(List.of(), split("\n\n\n"));
    }

    @Test
    void aTrailingNewlineAddsNoEmptyRecord() {
        assertEquals(List.of("a", "b"), split("a\nb\n"));
    }

    @Test
    void emptyLinesAnywhereAreDropped() {
        assertEquals(List.of("a", "b"), split("\na\n\n\nb"));
    }

    @Test
    void onlyTheNewlineSplitsTheRestOfALineIsKept() {
        assertEquals(List.of(" a ", "b\r", "\tc"), split(" a \nb\r\n\tc"));
    }
}
