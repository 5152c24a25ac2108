"""Which pid in a Flink daemon's pid file is ours (vadctl/cluster.py Daemon.pid), on real processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vadctl import cluster
from vadctl.cluster import Daemon


@pytest.fixture
def base(tmp_path):
    (tmp_path / "pid").mkdir()
    (tmp_path / "conf").mkdir()
    return tmp_path


def _daemon(base, *pids: int) -> Daemon:
    d = Daemon("taskmanager", "taskexecutor", base)
    d.pid_file.write_text("".join(f"{p}\n" for p in pids))
    return d


def _sleeper(cwd, *args: str) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", *args], cwd=cwd)
    # Popen returns once the child's exec has closed its close-on-exec pipe, which the kernel does
    # before it writes the new command line: /proc/<pid>/cmdline can still read empty (CI saw it).
    # The case that test is about is below, on purpose; here wait (bounded) for the arguments.
    deadline = time.monotonic() + 10
    while not Path(f"/proc/{p.pid}/cmdline").read_bytes() and time.monotonic() < deadline:
        time.sleep(0.001)
    return p


def _stop(p: subprocess.Popen) -> None:
    p.kill()
    p.wait(timeout=10)


def test_a_process_naming_our_conf_folder_is_ours(base, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    ours, other = _sleeper(elsewhere, "--configDir", str(base / "conf")), _sleeper(elsewhere, "--configDir", "/x")
    try:
        assert _daemon(base, ours.pid).pid() == ours.pid
        # A pid recycled by something else is not ours, and the last line (the latest start) wins.
        assert _daemon(base, other.pid).pid() is None
        assert _daemon(base, other.pid, ours.pid).pid() == ours.pid
    finally:
        _stop(ours)
        _stop(other)
    assert _daemon(base, ours.pid).pid() is None


def test_an_empty_command_line_inside_execve_is_ours_by_its_working_directory(base, tmp_path_factory, monkeypatch):
    # What /proc/<pid>/cmdline reads for a process between the kernel's swap of its memory map and
    # its writing the new arguments; the cwd of the start script's fork is still there.
    inside, outside = _sleeper(base), _sleeper(tmp_path_factory.mktemp("elsewhere"))
    monkeypatch.setattr(cluster, "_read_proc", lambda pid, name: b"")
    try:
        assert _daemon(base, inside.pid).pid() == inside.pid
        assert _daemon(base, outside.pid).pid() is None
    finally:
        _stop(inside)
        _stop(outside)


def test_a_zombie_is_not_running(base):
    # Exited but not yet reaped: an empty command line and no working directory.
    child = os.fork()
    if child == 0:
        os.chdir(base)
        os._exit(0)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with open(f"/proc/{child}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break
            time.sleep(0.01)
        else:
            pytest.fail("child did not exit")
        assert cluster._read_proc(child, "cmdline") == b""
        assert _daemon(base, child).pid() is None
    finally:
        os.waitpid(child, 0)


def test_no_pid_file_and_garbage_lines(base):
    d = Daemon("jobmanager", "standalonesession", base)
    assert d.pid() is None
    d.pid_file.write_text("not-a-pid\n\n")
    assert d.pid() is None


def test_the_local_cluster_keeps_snapshots_in_the_local_folders_unless_told_otherwise(tmp_path):
    """Jobs leave snapshot directories to the cluster (jobs/runtime.py), so the local cluster's own
    configuration names them."""
    import yaml

    from vad.config import REPO_ROOT, load_config

    env = {"VAD_STACK__STATE_DIR": str(tmp_path / "st")}
    conf = yaml.safe_load((cluster.write_conf(load_config(env=env)) / "config.yaml").read_text())
    assert conf["execution.checkpointing.dir"] == (REPO_ROOT / ".cache" / "checkpoints").as_uri()
    assert conf["execution.checkpointing.savepoint-dir"] == (REPO_ROOT / ".cache" / "savepoints").as_uri()
    env["VAD_JOB__SAVEPOINT_DIR"] = str(tmp_path / "sp")
    conf = yaml.safe_load((cluster.write_conf(load_config(env=env)) / "config.yaml").read_text())
    assert conf["execution.checkpointing.savepoint-dir"] == (tmp_path / "sp").as_uri()


def test_a_savepoint_without_a_directory_goes_to_the_clusters(monkeypatch):
    from vad.config import load_config

    calls = []

    def rest(cfg, method, path, body=None, timeout=10.0):
        calls.append((path, body))
        return {"request-id": "r1"}

    monkeypatch.setattr(cluster, "rest", rest)
    monkeypatch.setattr(cluster, "_await_savepoint", lambda *a: "file:/sp/savepoint-1")
    cluster.savepoint(load_config(env={}), "j1")
    cluster.savepoint(load_config(env={"VAD_JOB__SAVEPOINT_DIR": "s3://b/sp"}), "j1")
    cluster.savepoint(load_config(env={}), "j1", "s3://b/other")
    assert [b for _, b in calls] == [
        {"cancel-job": False},
        {"cancel-job": False, "target-directory": "s3://b/sp"},
        {"cancel-job": False, "target-directory": "s3://b/other"},
    ]
