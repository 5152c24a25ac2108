"""`vad dead-letters`: what the job could not score lately, per camera and reason, read from the
dead-letter topic: how many, when first and last, and the newest detail (for a mis-set edge it
names the settings the camera's model was trained with).

It reads each partition from its first record whose Kafka timestamp is at or after ``--since`` (a
dead letter carries the event time of the batch it was rejected in, or else the time it was written:
for a live camera about when) to the end the partition had when it started, and counts those the job
rejected at or after ``--since`` by its own clock (``seen_ms``, what the summary shows); ``--since
all`` reads the whole topic. The dead letters of a backfill, whose event times are older than their
rejection, need a ``--since`` before their event times. It reads committed records as no consumer
group, so it commits nothing and any number of operators can run it. It keeps counts, not records,
and reads for at most ``--timeout`` and ``--max-records`` (the Kafka client's metadata and offset
lookups before that have its own request timeout); a summary that stopped early says so."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TextIO

from pydantic import ValidationError

from vad.config import Config
from vad.dead_letter_reasons import DEAD_LETTER_REASONS
from vad.follow import parse_since
from vad.records import DeadLetter

UNREADABLE = "unreadable"  # the reason shown for a message on the topic that is no dead letter
DETAIL_WIDTH = 110


@dataclass
class Group:
    """The dead letters of one camera and reason."""

    camera_id: str | None
    reason: str
    count: int
    first_seen_ms: int
    last_seen_ms: int
    detail: str  # the newest one's


@dataclass
class Summary:
    since_ms: int
    records: int  # dead letters counted
    complete: bool  # False: stopped by the record or time bound before the end
    groups: list[Group]


class Tally:
    """Dead letters counted per (camera, reason), optionally only some cameras or reasons, those the
    job rejected at or after ``since_ms`` (their ``seen_ms``; a message that is no dead letter: its
    Kafka timestamp)."""

    def __init__(self, since_ms: int, cameras: Iterable[str] = (), reasons: Iterable[str] = ()):
        self.since_ms = since_ms
        self.cameras, self.reasons = frozenset(cameras), frozenset(reasons)
        self.records = 0
        self._groups: dict[tuple[str | None, str], Group] = {}

    def add(self, value: bytes, timestamp_ms: int) -> None:
        try:
            d = DeadLetter.parse(value)
            camera, reason, seen, detail = d.camera_id, d.reason, d.seen_ms, d.detail
        except ValidationError as e:
            camera, reason, seen = None, UNREADABLE, timestamp_ms
            detail = f"not a {DeadLetter.SCHEMA} record: {e.errors()[0]['msg']}"
        if seen < self.since_ms:
            return
        if (self.cameras and camera not in self.cameras) or (self.reasons and reason not in self.reasons):
            return
        self.records += 1
        g = self._groups.get((camera, reason))
        if g is None:
            self._groups[(camera, reason)] = Group(camera, reason, 1, seen, seen, detail)
            return
        g.count += 1
        g.first_seen_ms = min(g.first_seen_ms, seen)
        if seen >= g.last_seen_ms:
            g.last_seen_ms, g.detail = seen, detail

    def summary(self, complete: bool) -> Summary:
        groups = sorted(self._groups.values(), key=lambda g: (-g.count, g.camera_id or "", g.reason))
        return Summary(self.since_ms, self.records, complete, groups)


def read(cfg: Config, tally: Tally, timeout_s: float, max_records: int, consumer=None) -> Summary:
    """Reads the dead-letter topic into ``tally`` from its ``since_ms`` to the partitions' ends at
    the start. ``consumer``: a KafkaConsumer to read with (default: one of ``cfg.kafka``, read
    committed, no group), closed here."""
    from kafka.errors import KafkaError

    from vad.kafka_clients import make_consumer

    where = cfg.kafka.bootstrap_servers
    try:
        consumer = consumer if consumer is not None else make_consumer(cfg.kafka)
    except KafkaError as e:
        raise RuntimeError(f"Kafka at {where}: {e}") from e
    try:
        return _read(consumer, cfg.kafka.topics.dead_letter, where, tally, timeout_s, max_records)
    except KafkaError as e:
        raise RuntimeError(f"Kafka at {where}: {e}") from e
    finally:
        consumer.close()


def _read(consumer, topic: str, where: str, tally: Tally, timeout_s: float, max_records: int) -> Summary:
    from kafka import TopicPartition

    parts = consumer.partitions_for_topic(topic)
    if not parts:
        raise ValueError(f"no topic {topic} (kafka.topics.dead_letter) on {where}")
    tps = [TopicPartition(topic, p) for p in sorted(parts)]
    consumer.assign(tps)
    ends = consumer.end_offsets(tps)
    starts = consumer.offsets_for_times({tp: tally.since_ms for tp in tps})
    for tp in tps:
        start = starts.get(tp)
        consumer.seek(tp, start.offset if start is not None else ends[tp])
    # A partition is read to its end at the start, not on into what arrives meanwhile (a flood
    # would keep it going): it is paused there, and later records are not counted.
    reading = set(tps)
    deadline, n = time.monotonic() + timeout_s, 0
    while True:
        for tp in [tp for tp in reading if consumer.position(tp) >= ends[tp]]:
            reading.discard(tp)
            consumer.pause(tp)
        if not reading or n >= max_records or time.monotonic() >= deadline:
            return tally.summary(complete=not reading)
        for tp, records in consumer.poll(timeout_ms=500, max_records=min(10_000, max_records - n)).items():
            for r in records:
                if r.offset < ends[tp]:
                    tally.add(r.value, r.timestamp)
            n += len(records)


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def print_table(s: Summary, out: TextIO) -> None:
    since = f"since {_when(s.since_ms)}" if s.since_ms > 0 else "in the whole topic"
    if not s.groups:
        print(f"no dead letters {since}", file=out)
    else:
        cam_w = max(6, *(len(g.camera_id or "-") for g in s.groups))
        reason_w = max(6, *(len(g.reason) for g in s.groups))

        def row(camera: str, reason: str, count: object, first: str, last: str, detail: str) -> str:
            return f"{camera:<{cam_w}}  {reason:<{reason_w}}  {count:>8}  {first:<20}  {last:<20}  {detail}"

        print(row("camera", "reason", "count", "first seen", "last seen", "detail"), file=out)
        for g in s.groups:
            detail = g.detail if len(g.detail) <= DETAIL_WIDTH else g.detail[: DETAIL_WIDTH - 3] + "..."
            first, last = _when(g.first_seen_ms), _when(g.last_seen_ms)
            print(row(g.camera_id or "-", g.reason, g.count, first, last, detail), file=out)
        print(f"{s.records} dead letters {since}", file=out)
    if not s.complete:
        print("stopped before the end of the topic (--timeout or --max-records): counts are partial", file=out)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--since", default="1h", help="from an age (30m, 2h, 1d), an ISO time (UTC) or all; default 1h")
    p.add_argument("--camera", action="append", default=None, metavar="ID", help="only this camera (repeatable)")
    p.add_argument("--reason", action="append", default=None, help="only this reason (repeatable)")
    p.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to read for at most (default 60)")
    p.add_argument("--max-records", type=int, default=2_000_000, help="records to read at most (default 2,000,000)")


def run(cfg: Config, args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    try:
        since_ms = 0 if args.since == "all" else parse_since(args.since, int(time.time() * 1000))
    except ValueError as e:
        print(f"vad dead-letters: error: {e}", file=sys.stderr)
        return 2
    if args.timeout <= 0 or args.max_records < 1:
        print("vad dead-letters: error: --timeout and --max-records must be positive", file=sys.stderr)
        return 2
    known = [*DEAD_LETTER_REASONS, UNREADABLE]
    if unknown := sorted(set(args.reason or ()) - set(known)):
        # A misspelt reason would otherwise read as "no dead letters": a false all-clear.
        print(
            f"vad dead-letters: error: unknown --reason {', '.join(unknown)}; one of {', '.join(known)}",
            file=sys.stderr,
        )
        return 2
    summary = read(cfg, Tally(since_ms, args.camera or (), args.reason or ()), args.timeout, args.max_records)
    if args.json:
        print(json.dumps(asdict(summary)), file=out)
    else:
        print_table(summary, out)
    return 0
