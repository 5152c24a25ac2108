"""A real KRaft broker and Redis server for the integration tests, on ports of their own, started
once per session by the project's own stack code and always stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from vad import stack
from vad.config import load_config

REPO = Path(__file__).resolve().parents[2]
PORTS = {"VAD_STACK__KAFKA_PORT": "29092", "VAD_STACK__CONTROLLER_PORT": "29093", "VAD_STACK__REDIS_PORT": "26379"}


def pytest_collection_modifyitems(items):
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


def produce_clips(env: dict[str, str], sources: dict[str, Path], timeout: float = 300) -> dict[str, int]:
    """Stream clips as cameras at the same time (as live cameras do); returns frames sent per camera."""
    procs = {
        cam: subprocess.Popen(
            [sys.executable, "-m", "vad.cli", "produce", "--camera", cam, "--source", str(src)],
            env={**os.environ, **env},
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for cam, src in sources.items()
    }
    sent = {}
    for cam, p in procs.items():
        out, err = p.communicate(timeout=timeout)
        assert p.returncode == 0, err[-3000:]
        sent[cam] = int(json.loads(out.strip().splitlines()[-1])["sent"])
    return sent


def start_job(env: dict[str, str]) -> subprocess.Popen:
    """`vad run` in its own process group: its JVM and Python workers share it, so one kill stops all."""
    return subprocess.Popen(
        [sys.executable, "-m", "vad.cli", "run"],
        env={**os.environ, **env},
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def kill_job(job: subprocess.Popen) -> None:
    """SIGKILL, no clean shutdown: what a crashed machine does."""
    if job.poll() is None:
        os.killpg(job.pid, signal.SIGKILL)
    job.wait(timeout=60)


class Jobs:
    start = staticmethod(start_job)
    kill = staticmethod(kill_job)


@pytest.fixture(scope="session")
def jobs() -> Jobs:
    return Jobs()


@pytest.fixture(scope="session")
def produce():
    return produce_clips


@pytest.fixture(scope="session")
def stack_env(tmp_path_factory) -> dict[str, str]:
    state = tmp_path_factory.mktemp("stack")
    env = {
        **PORTS,
        "VAD_STACK__STATE_DIR": str(state),
        "VAD_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{PORTS['VAD_STACK__KAFKA_PORT']}",
        "VAD_REDIS__PORT": PORTS["VAD_STACK__REDIS_PORT"],
        "VAD_KAFKA__TOPICS__PARTITIONS": "2",
    }
    cfg = load_config(env=env)
    try:
        stack.up(cfg)
        yield env
    finally:
        stack.down(cfg)


@pytest.fixture(scope="session")
def run_vad(stack_env):
    """Run the `vad` CLI in a subprocess against the test stack, bounded in time."""

    def run(*args: str, extra_env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
        env = {**os.environ, **stack_env, **(extra_env or {})}
        return subprocess.run(
            [sys.executable, "-m", "vad.cli", *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout
        )

    return run
