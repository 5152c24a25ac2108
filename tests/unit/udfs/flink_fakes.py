"""In-memory stand-ins for what PyFlink hands a Python operator (keyed state, the timer service), for
the unit tests of the operators in udfs/; the real runtime runs them in the integration tests."""

from __future__ import annotations


class ValueState:
    def __init__(self):
        self.v = None

    def value(self):
        return self.v

    def update(self, v):
        self.v = v

    def clear(self):
        self.v = None


class ListState:
    def __init__(self):
        self.items = []

    def get(self):
        return list(self.items)

    def add(self, v):
        self.items.append(v)

    def update(self, vs):
        self.items = list(vs)

    def clear(self):
        self.items = []


class MapState(dict):
    def put(self, k, v):
        self[k] = v


class Timers:
    """Records the timers registered; processing time reads ``clock[0]`` (a list the test moves)."""

    def __init__(self, clock: list[int] | None = None):
        self.clock = clock if clock is not None else [0]
        self.event, self.processing = [], []

    def current_processing_time(self):
        return self.clock[0]

    def register_event_time_timer(self, t):
        self.event.append(t)

    def register_processing_time_timer(self, t):
        self.processing.append(t)
