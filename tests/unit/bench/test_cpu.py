"""The bench's CPU readers: the machine's busy seconds and the sampler's cores over a window."""

from __future__ import annotations

import os
import time

import pytest

from bench import common as c


def test_machine_cpu_counts_this_process_burning_cpu():
    before = c.machine_cpu_s()
    t0 = time.process_time()
    while time.process_time() - t0 < 0.3:  # bounded: 0.3 s of this process's CPU
        pass
    # Every busy second of this process is a busy second of the machine (others only add to it).
    assert c.machine_cpu_s() - before >= 0.25


def test_machine_cpu_counts_busy_states_not_idle_or_iowait(tmp_path):
    # user nice system idle iowait irq softirq steal guest guest_nice (guest is inside user already)
    stat = tmp_path / "stat"
    stat.write_text("cpu  100 20 30 1000 50 5 6 7 40 0\ncpu0 1 2 3 4 5 6 7 8 9 0\n")
    tick = os.sysconf("SC_CLK_TCK")
    assert c.machine_cpu_s(str(stat)) == pytest.approx((100 + 20 + 30 + 5 + 6 + 7) / tick)


def test_sampler_reads_cores_between_two_times_from_its_reader():
    clock = {"cpu": 0.0}

    def read() -> float:
        clock["cpu"] += 0.1  # 0.1 CPU s per 0.2 s sample: half a core
        return clock["cpu"]

    s = c.CpuSampler(read)
    deadline = time.monotonic() + 5
    while len(s.samples) < 6 and time.monotonic() < deadline:
        time.sleep(0.05)
    s.stop()
    assert len(s.samples) >= 6
    t0, t1 = s.samples[1][0], s.samples[-1][0]
    expected = (s.samples[-1][1] - s.samples[1][1]) / ((t1 - t0) / 1000)
    assert s.cores_between(t0, t1) == pytest.approx(expected)
    assert s.cores_between(t1, t0) is None
