"""Flags of the JVMs the project starts or has started (a local Flink run, the local cluster's
daemons, `flink run`)."""

from __future__ import annotations

from pathlib import Path


def with_tmpdir(options: str, tmp: str | Path) -> str:
    """``options`` with the JVM's temporary files (java.io.tmpdir) in ``tmp``: Java ignores TMPDIR,
    and a JVM that is killed leaves them behind. Unchanged when the options name a tmpdir already
    (the user's wins), or when ``tmp`` holds whitespace (JVM_ARGS and Flink's java opts are split
    at it)."""
    if "-Djava.io.tmpdir=" in options or any(c.isspace() for c in str(tmp)):
        return options
    return " ".join(filter(None, [options, f"-Djava.io.tmpdir={tmp}"]))
