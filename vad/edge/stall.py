"""A Kafka client that has stopped reporting deliveries: ended, not waited for.

kafka-python 3.0.12's idempotent producer, when a record it had already sent expires while the broker
is away longer than its delivery timeout, resets its producer id and then never sends again, nor
fails or expires anything, after the broker is back (seen on a broker killed with SIGKILL:
tests/integration/reliability/test_broker_kill.py). A healthy client acknowledges or fails every
record within its delivery timeout, so a client that reports nothing for longer than that (plus a
margin) while records are outstanding is stuck: the edge says so and ends with exit status 1, and a
supervisor's restart begins a new stream, its first record flagged GAP.
"""

from __future__ import annotations

import time

MARGIN_S = 30.0


class StallWatch:
    """Fed the edge's totals, says how many records are outstanding once no delivery (acknowledged or
    failed) has been reported for ``limit_s`` while some were; 0 otherwise."""

    def __init__(self, limit_s: float, now: float | None = None):
        self.limit_s = limit_s
        self._done, self._since = -1, time.monotonic() if now is None else now

    def stuck(self, handed: int, done: int, now: float | None = None) -> int:
        now = time.monotonic() if now is None else now
        outstanding = handed - done
        if done != self._done or outstanding <= 0:
            self._done, self._since = done, now
            return 0
        return outstanding if now - self._since > self.limit_s else 0
