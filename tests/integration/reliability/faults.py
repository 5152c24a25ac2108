"""What every fault scenario of `make reliability` shares: comparing the events of a run that met a
fault with those of an uninterrupted reference run of the same input, by id and content."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from vad.records import Event


def event_key(e: Event) -> tuple:
    """An event's identity and content: a replay must give the same tuple, a changed value is a
    different event."""
    return (
        e.event_id,
        e.seq,
        e.phase,
        e.start_frame,
        e.end_frame,
        e.start_ts_ms,
        e.ts_ms,
        e.peak_score,
        e.close_reason,
    )


@dataclass
class Comparison:
    """``lost``: reference events missing (or changed); ``duplicated``: extra copies of an event;
    ``unexpected``: events the reference does not have (a changed event counts here too)."""

    lost: int
    duplicated: int
    unexpected: int
    examples: list[str] = field(default_factory=list)

    @property
    def exact(self) -> bool:
        return self.lost == self.duplicated == self.unexpected == 0


def compare(want: list[Event], got: list[Event]) -> Comparison:
    w, g = Counter(map(event_key, want)), Counter(map(event_key, got))
    lost = sum((w - g).values())
    duplicated = sum(n - w[k] for k, n in g.items() if k in w and n > w[k])
    unexpected = sum(n for k, n in g.items() if k not in w)
    examples = [f"lost {k}" for k in list(w - g)[:3]] + [f"unexpected {k}" for k in [k for k in g if k not in w][:3]]
    return Comparison(lost, duplicated, unexpected, examples)


def compare_sinks(
    fault_report,
    want: list[Event],
    kafka: list[Event],
    redis: list[Event],
    *,
    want_redis: list[Event] | None = None,
    distinct_kafka: bool = True,
) -> dict[str, Comparison]:
    """Both sinks against the reference (Redis against ``want_redis`` if given), reported through
    ``fault_report``. With ``distinct_kafka``, Kafka by its distinct events: at-least-once allows
    exact redeliveries (same id, seq and content; consumers dedup on them), noted apart as
    ``kafka_redelivered``; one that differs in content is another key, so it counts as unexpected.
    Redis dedups: every event once."""
    distinct = list({event_key(e): e for e in kafka}.values())
    out = {
        "kafka": compare(want, distinct if distinct_kafka else kafka),
        "redis": compare(want if want_redis is None else want_redis, redis),
    }
    for sink, comparison in out.items():
        fault_report.compared(sink, comparison)
    fault_report.note(reference_events=len(want), kafka_redelivered=len(kafka) - len(distinct))
    return out
