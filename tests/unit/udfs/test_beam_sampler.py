"""Beam's state sampler without its per-bundle thread: no thread started or joined, the bundle's
tracker and step scopes kept, so user metrics still reach their operator's container."""

from __future__ import annotations

import threading
import time

import pytest
from apache_beam.metrics.execution import MetricsContainer, MetricsEnvironment
from apache_beam.metrics.metricbase import MetricName
from apache_beam.runners.worker import statesampler
from apache_beam.utils.counters import CounterFactory

from udfs.beam_sampler import disable_sampling_thread, restore_sampling_thread


@pytest.fixture
def sampler():
    yield statesampler.StateSampler("bundle", CounterFactory())
    restore_sampling_thread()


def _threads_of(s) -> list[threading.Thread]:
    """Live threads running this sampler (other tests' threads may come and go meanwhile)."""
    return [t for t in threading.enumerate() if getattr(getattr(t, "_target", None), "__self__", None) is s]


def _bundle(s, work_s: float = 0.02) -> tuple[int, MetricsContainer]:
    """One bundle as Beam's BundleProcessor runs it: reset, start, a step that counts into its
    metrics container, stop. Returns the sampler's threads alive during it and the container."""
    container = MetricsContainer("score-detect")
    s.reset()
    s.start()
    threads = len(_threads_of(s))
    with s.scoped_state("score-detect", "process", metrics_container=container):
        assert statesampler.get_current_tracker() is s
        MetricsEnvironment.current_container().get_counter(MetricName("vad", "records_in")).inc(3)
        time.sleep(work_s)
    s.stop_if_still_running()
    return threads, container


def test_beam_starts_a_sampler_thread_per_bundle_and_waits_for_it(sampler):
    threads, _ = _bundle(sampler)
    assert threads == 1  # what the change removes
    assert _threads_of(sampler) == []  # joined at the bundle's end


def test_without_the_thread_nothing_is_started_or_joined(sampler):
    assert disable_sampling_thread()
    for _ in range(3):  # the BundleProcessor reuses one sampler for every bundle
        threads, _ = _bundle(sampler)
        assert threads == 0
        assert sampler.finished and statesampler.get_current_tracker() is None


def test_user_metrics_still_reach_the_steps_container(sampler):
    disable_sampling_thread()
    _, container = _bundle(sampler, work_s=0)
    assert container.get_counter(MetricName("vad", "records_in")).get_cumulative() == 3


def test_idempotent_and_undone(sampler):
    assert disable_sampling_thread() and disable_sampling_thread()
    restore_sampling_thread()
    threads, _ = _bundle(sampler, work_s=0.01)
    assert threads == 1
