"""`vad events --follow`: anomaly events from the Kafka events topic as they arrive, filtered by
camera, kind, phase and time, printed as JSON lines or a table.

It reads as a consumer group of its own (read committed, so an exactly-once job's aborted writes are
never shown) and commits, after each printed batch is flushed, the offsets of the records it has
handled: a second run with the same group resumes after what the first printed. Delivery is
at-least-once: a run killed between printing and committing prints those events again next time."""

from __future__ import annotations

import argparse
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TextIO, get_args

from vad.config import Config
from vad.records import Event, Kind

DEFAULT_GROUP = "vad-events-follow"
KINDS = get_args(Kind)
PHASES = ("open", "update", "close")
_RELATIVE_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_FOLLOW_ONLY = ("camera", "kind", "phase", "since", "format", "group", "max_events", "idle_exit")


def kind_of(event: Event) -> str:
    """The event's kind: motion or loitering (an event written without a ``kind`` field reads as motion)."""
    return event.kind


def parse_since(text: str, now_ms: int) -> int:
    """``--since``: a relative age (``90s``, ``10m``, ``2h``, ``1d``, ``500ms``) before ``now_ms``, or an
    ISO 8601 time (UTC unless it names an offset), as milliseconds since the Unix epoch."""
    text = text.strip()
    rel = _RELATIVE_RE.fullmatch(text)
    if rel:
        return now_ms - int(float(rel.group(1)) * _UNIT_MS[rel.group(2)])
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"--since {text!r}: not an age (like 30s, 10m, 2h, 1d) "
            "nor an ISO 8601 time (YYYY-MM-DDTHH:MM:SS, UTC unless an offset follows)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


@dataclass(frozen=True)
class Filters:
    """Which events to print; an empty set lets everything through."""

    cameras: frozenset[str] = frozenset()
    kinds: frozenset[str] = frozenset()
    phases: frozenset[str] = frozenset()
    since_ms: int | None = None

    def accepts(self, event: Event) -> bool:
        return (
            (not self.cameras or event.camera_id in self.cameras)
            and (not self.kinds or kind_of(event) in self.kinds)
            and (not self.phases or event.phase in self.phases)
            and (self.since_ms is None or event.ts_ms >= self.since_ms)
        )

    @classmethod
    def build(
        cls,
        cameras: Iterable[str] | None = None,
        kinds: Iterable[str] | None = None,
        phases: Iterable[str] | None = None,
        since: str | None = None,
        now_ms: int | None = None,
    ) -> Filters:
        """Filters from the command line's values, checked: a bad value is a ValueError naming its flag."""
        from vad.schema import SchemaError, validate_camera_id

        for cam in cameras or ():
            try:
                validate_camera_id(cam)
            except SchemaError as e:
                raise ValueError(f"--camera {cam!r}: {e}") from None
        for kind in kinds or ():
            if kind not in KINDS:
                raise ValueError(f"--kind {kind!r}: one of {', '.join(KINDS)}")
        for phase in phases or ():
            if phase not in PHASES:
                raise ValueError(f"--phase {phase!r}: one of {', '.join(PHASES)}")
        now = int(time.time() * 1000) if now_ms is None else now_ms
        return cls(
            frozenset(cameras or ()),
            frozenset(kinds or ()),
            frozenset(phases or ()),
            None if since is None else parse_since(since, now),
        )


_COLUMNS = (("TIME (UTC)", 23), ("CAMERA", 20), ("KIND", 8), ("PHASE", 6), ("SEQ", 4), ("PEAK", 8))
_COLUMNS += (("THRESHOLD", 9), ("FRAMES", 13), ("REASON", 6), ("EVENT", 32))


def _cells(values: Iterable[str]) -> str:
    return "  ".join(v.ljust(w) for v, (_, w) in zip(values, _COLUMNS, strict=True)).rstrip()


def table_header() -> str:
    return _cells(name for name, _ in _COLUMNS)


def table_row(event: Event) -> str:
    when = datetime.fromtimestamp(event.ts_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    return _cells(
        [
            when,
            event.camera_id,
            kind_of(event),
            event.phase,
            str(event.seq),
            f"{event.peak_score:.5f}",
            f"{event.threshold:.5f}",
            f"{event.start_frame}-{event.end_frame}",
            event.close_reason or "",
            event.event_id,
        ]
    )


class Printer:
    """Writes events to ``out`` in ``fmt`` (json: one event's JSON per line; table: aligned columns
    under a header written before the first row)."""

    def __init__(self, out: TextIO, fmt: str = "json"):
        if fmt not in ("json", "table"):
            raise ValueError(f"--format {fmt!r}: json or table")
        self.out, self.fmt, self.rows = out, fmt, 0

    def write(self, event: Event) -> None:
        if self.fmt == "json":
            self.out.write(event.to_json() + "\n")
        else:
            if self.rows == 0:
                self.out.write(table_header() + "\n")
            self.out.write(table_row(event) + "\n")
        self.rows += 1


def follow(
    cfg: Config,
    filters: Filters,
    printer: Printer,
    group: str = DEFAULT_GROUP,
    max_events: int | None = None,
    idle_exit_s: float | None = None,
    stop: threading.Event | None = None,
    warn: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr),
) -> int:
    """Prints the events that pass ``filters`` until ``stop`` is set, ``max_events`` are printed, or
    no record has arrived for ``idle_exit_s``; returns how many it printed. A partition's records are
    handled in order and its offset committed up to the last one handled (printed, filtered out or
    unreadable) once the output is flushed. Records that are not events are reported and skipped."""
    from kafka.structs import OffsetAndMetadata

    from vad.kafka_clients import make_consumer

    stop = stop or threading.Event()
    consumer = make_consumer(cfg.kafka, cfg.kafka.topics.events, group_id=group)
    printed = 0
    last_record = time.monotonic()
    try:
        while not stop.is_set():
            batch = consumer.poll(timeout_ms=500, max_records=500)
            now = time.monotonic()
            if batch:
                last_record = now
            elif idle_exit_s is not None and now - last_record >= idle_exit_s:
                break
            handled: dict = {}
            try:
                for tp, records in batch.items():
                    for r in records:
                        if max_events is not None and printed >= max_events:
                            break
                        try:
                            event = Event.parse(r.value)
                        except (ValueError, TypeError) as e:  # TypeError: a record without a value
                            warn(f"vad events: skipping record {tp.partition}/{r.offset}: not an event ({e})")
                            event = None
                        if event is not None and filters.accepts(event):
                            printer.write(event)
                            printed += 1
                        handled[tp] = r.offset + 1
                printer.out.flush()
            except BrokenPipeError:
                # The reader went away: what it may not have read is not committed.
                return printed
            if handled:
                consumer.commit({tp: OffsetAndMetadata(off, "", -1) for tp, off in handled.items()})
            if max_events is not None and printed >= max_events:
                break
    finally:
        consumer.close(autocommit=False)
    return printed


def stop_on_signals() -> threading.Event:
    """An event set by SIGINT or SIGTERM, so a follow loop ends after its current poll and commits."""
    stop = threading.Event()

    def handler(_signum, _frame) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


def add_arguments(p: argparse.ArgumentParser) -> None:
    """``vad events``' follow flags."""
    p.add_argument(
        "--follow",
        action="store_true",
        help="print events from the Kafka events topic as they arrive, until SIGINT/SIGTERM; resumes after "
        "what the last run with the same --group printed (offsets committed after printing: at-least-once, "
        "a run killed mid-batch prints those events again)",
    )
    p.add_argument("--camera", action="append", metavar="ID", help="with --follow: only this camera (repeatable)")
    p.add_argument("--kind", action="append", choices=KINDS, help="with --follow: only this kind (repeatable)")
    p.add_argument("--phase", action="append", choices=PHASES, help="with --follow: only this phase (repeatable)")
    p.add_argument(
        "--since", metavar="WHEN", help="with --follow: skip events older than an age (10m, 2h) or ISO time (UTC)"
    )
    p.add_argument("--format", choices=("json", "table"), help="with --follow: output (default json lines)")
    p.add_argument("--group", help=f"with --follow: consumer group (default {DEFAULT_GROUP})")
    p.add_argument("--max-events", type=int, metavar="N", help="with --follow: stop after printing N events")
    p.add_argument("--idle-exit", type=float, metavar="S", help="with --follow: stop after S seconds with no record")


def run(cfg: Config, args: argparse.Namespace, out: TextIO | None = None) -> int:
    """``vad events`` with follow flags: checks them (ValueError naming the flag) and follows."""
    if not args.follow:
        used = next(f for f in _FOLLOW_ONLY if getattr(args, f) is not None)
        raise ValueError(f"--{used.replace('_', '-')} needs --follow")
    if args.max_events is not None and args.max_events < 1:
        raise ValueError("--max-events must be at least 1")
    if args.idle_exit is not None and args.idle_exit <= 0:
        raise ValueError("--idle-exit must be positive")
    if args.group is not None and not args.group.strip():
        raise ValueError("--group must not be empty")
    filters = Filters.build(args.camera, args.kind, args.phase, args.since)
    printer = Printer(out or sys.stdout, args.format or "json")
    group = args.group or DEFAULT_GROUP
    follow(cfg, filters, printer, group, args.max_events, args.idle_exit, stop_on_signals())
    return 0


def wanted(args: argparse.Namespace) -> bool:
    """Whether ``vad events`` was given --follow or one of its flags."""
    return bool(args.follow) or any(getattr(args, f) is not None for f in _FOLLOW_ONLY)
