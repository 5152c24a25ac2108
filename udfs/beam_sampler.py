"""Runs the Python worker's bundles without Beam's state-sampling thread.

For every bundle, Beam's SDK harness (which PyFlink's Python worker is) starts a thread that
samples which step is running, for Beam's per-step timings, and joins it when the bundle ends.
That thread sleeps in steps growing from 2 to 200 ms, so the join waits for its next wake-up:
measured in this job's worker at 9,000 records/s, 5.2 ms per bundle on average (p90 12.5 ms, p99
21.6 ms) on bundles of ~43 ms, a tenth of the worker's time asleep in it (docs/decisions/). The
JVM's task thread waits for the bundle's end, and the records behind it wait with it. PyFlink's
JVM reads only user metrics (``beam:metric:user``) from a bundle's monitoring data, so the timings
the thread makes are dropped unread.

The sampler object stays: the bundle's own thread still marks which step runs through it, which
is how a user metric (a PyFlink counter or distribution) finds its operator. Only its thread is
not started. The change is to the sampler's class, for the worker's whole process, so it also
covers the BundleProcessor whose construction opens the operator that applies it.
"""

from __future__ import annotations

import logging
import threading

from apache_beam.runners.worker import statesampler

log = logging.getLogger(__name__)

_original: tuple | None = None


def _start(self) -> None:
    # Beam's StateSampler.start without starting its thread: the tracker of the bundle's thread is
    # what routes metrics and logs to the running step.
    self.tracked_thread = threading.current_thread()
    statesampler.set_current_tracker(self)
    self.started = True


def _stop(self) -> None:
    statesampler.set_current_tracker(None)
    self.finished = True


def disable_sampling_thread() -> bool:
    """Starts and joins no sampler thread per bundle from now on, in this process. True when in
    place; False, and a warning, for a Beam whose sampler does not look like the one this was
    written for (apache-beam 2.61.0, pinned in requirements.txt): it is then left as it is."""
    global _original
    cls = statesampler.StateSampler
    if cls.__dict__.get("start") is _start:
        return True
    if not ({"start", "stop"} <= cls.__dict__.keys() and hasattr(statesampler, "set_current_tracker")):
        log.warning("Beam's StateSampler has no start/stop of its own here: its sampling thread is left on")
        return False
    _original = (cls.__dict__["start"], cls.__dict__["stop"])
    cls.start, cls.stop = _start, _stop
    log.info("Beam's per-bundle state-sampling thread is off in this worker (job.beam_sampling_thread)")
    return True


def restore_sampling_thread() -> None:
    """Undoes ``disable_sampling_thread`` (for tests)."""
    global _original
    if _original is not None:
        statesampler.StateSampler.start, statesampler.StateSampler.stop = _original
        _original = None
