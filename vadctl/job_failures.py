"""What a failed local job's error says: its last failure's cause, and the one that started its
restarts, which Flink's final exception no longer carries (it is the last failure only)."""

from __future__ import annotations

import re
from pathlib import Path

# How Flink's Task logs a failure, the trace following on the next lines.
_TASK_FAILED = re.compile(r" switched from \w+ to FAILED with failure cause:\s*$")
_LOG_LINE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")
_PYTHON_TRACE = "Traceback (most recent call last):"


def root_cause(trace: str) -> str:
    """The innermost cause of a Java stack trace, as one line (the trace's first line if it has
    none). Only the trace's own causes count: a suppressed exception's are indented. A Python
    worker's traceback in the message is replaced by its last line, the Python exception."""
    lines = [line for line in trace.splitlines() if line.strip()]
    if not lines:
        return "unknown"
    causes = [i for i, line in enumerate(lines) if line.startswith("Caused by: ")]
    at = causes[-1] if causes else 0
    cause = lines[at].removeprefix("Caused by: ").strip()
    if cause.endswith(_PYTHON_TRACE):
        # The traceback's frames are indented; the exception is its first line that is not.
        raised = next((line for line in lines[at + 1 :] if not line[0].isspace()), None)
        if raised is not None and not raised.startswith("Caused by: "):
            cause = cause.removesuffix(_PYTHON_TRACE) + raised.strip()
    return cause


def first_failure(log_dir: Path) -> str | None:
    """The root cause of the first task failure in a local job's log: the newest ``flink-*.log`` of
    its folder (each run rewrites its own; another host's or an older name's may sit beside it).
    None when it holds none."""
    logs = sorted(log_dir.glob("flink-*.log"), key=lambda p: p.stat().st_mtime)
    if not logs:
        return None
    lines = iter(logs[-1].read_text(errors="replace").splitlines())
    for line in lines:
        if _TASK_FAILED.search(line):
            trace = []
            for nxt in lines:
                if _LOG_LINE.match(nxt):
                    break
                trace.append(nxt)
            return root_cause("\n".join(trace))
    return None
