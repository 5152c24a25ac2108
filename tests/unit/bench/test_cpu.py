"""The bench's CPU readers: the machine's busy seconds and the sampler's cores over a window."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from bench import common as c

# A child that burns 0.3 s of CPU, then sleeps (killed by its test).
BURN = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3:\n    pass\ntime.sleep(30)"


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


def test_steal_is_the_eighth_state_of_the_cpu_line(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text("cpu  100 20 30 1000 50 5 6 7 40 0\n")
    assert c.machine_steal_s(str(stat)) == pytest.approx(7 / os.sysconf("SC_CLK_TCK"))


def test_process_cpu_counts_this_process_and_not_a_gone_one():
    before = c.process_cpu_s(os.getpid())
    t0 = time.process_time()
    while time.process_time() - t0 < 0.3:  # bounded: 0.3 s of this process's CPU
        pass
    assert c.process_cpu_s(os.getpid()) - before >= 0.25
    gone = subprocess.Popen(["true"])
    gone.wait(timeout=10)  # reaped: its /proc entry is gone
    assert c.process_cpu_s(gone.pid) == 0.0


def test_sharing_readers_name_the_running_services_and_leave_out_the_others(tmp_path):
    from bench.job import _sharing_readers

    cfg = c.config({**c.STACK_ENV, "VAD_STACK__STATE_DIR": str(tmp_path)})
    assert set(_sharing_readers(cfg)) == {"load_generator_and_reader", "steal"}
    # A "broker" of this stack: a real process running in its state folder, with its pid file,
    # that burns 0.3 s of CPU and then sleeps: its reader must read that process, not this one.
    broker = subprocess.Popen([sys.executable, "-c", BURN], cwd=tmp_path)
    try:
        (tmp_path / "kafka.pid").write_text(str(broker.pid))
        readers = _sharing_readers(cfg)
        assert set(readers) == {"load_generator_and_reader", "steal", "kafka"}
        deadline = time.monotonic() + 20  # bounded
        while readers["kafka"]() < 0.25 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert readers["kafka"]() == pytest.approx(c.process_cpu_s(broker.pid), abs=0.05)
        assert readers["kafka"]() >= 0.25
    finally:
        broker.kill()
        broker.wait(timeout=10)


def test_tree_cpu_counts_a_live_child_that_process_cpu_leaves_out():
    child = subprocess.Popen([sys.executable, "-c", BURN])
    try:
        deadline = time.monotonic() + 20  # bounded: the child burns 0.3 s of CPU, then sleeps
        while c.process_cpu_s(child.pid) < 0.25 and time.monotonic() < deadline:
            time.sleep(0.05)
        own = c.process_cpu_s(os.getpid())
        assert c.tree_cpu_s(os.getpid()) - own >= 0.25
    finally:
        child.kill()
        child.wait(timeout=10)
