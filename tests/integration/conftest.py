"""A real KRaft broker and Redis server for the integration tests, on ports of their own, started
once per session by the project's own stack code and always stopped. Every record a test reads back
from the job is checked against its published JSON Schema (``published_schemas_checked``)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from published_schemas import check

from vad import consumer
from vad.config import load_config
from vadctl import stack

REPO = Path(__file__).resolve().parents[2]
# VAD_TEST_PORT_OFFSET moves them, so two suites can run side by side on one machine.
_OFFSET = int(os.environ.get("VAD_TEST_PORT_OFFSET", "0"))
PORTS = {
    "VAD_STACK__KAFKA_PORT": str(29092 + _OFFSET),
    "VAD_STACK__CONTROLLER_PORT": str(29093 + _OFFSET),
    "VAD_STACK__REDIS_PORT": str(26379 + _OFFSET),
}


@pytest.fixture(scope="module", autouse=True)
def published_schemas_checked():
    """Every event, score line and dead letter read through vad.consumer (all the tests' reads of the
    job's output go there: read_kafka_events, read_redis_events, read_kafka_scores, ...) is validated
    with jsonschema against docs/schemas before it is parsed, in every integration module: no test can
    forget it, and the published contract is checked against what the job really writes. Module
    scope, not session: the patch must end with the integration tests, or unit tests run after them
    would meet it."""
    parse = consumer.parse

    def checked(kind, text):
        check(kind, text)
        return parse(kind, text)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(consumer, "parse", checked)
        yield


def pytest_collection_modifyitems(items):
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


def produce_clips(env: dict[str, str], sources: dict[str, Path], timeout: float = 300) -> dict[str, int]:
    """Stream clips as cameras at the same time (as live cameras do); returns frames sent per camera."""
    procs = {
        cam: subprocess.Popen(
            [sys.executable, "-m", "vadctl.cli", "produce", "--camera", cam, "--source", str(src)],
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


def start_job(env: dict[str, str], logs: Path) -> subprocess.Popen:
    """`vad run` in its own process group: its JVM and Python workers share it, so one kill stops all.
    Its output and its JVM's log go to `logs` (by default every local job writes one log file that
    the next job overwrites, so a failed test's job log would be gone), its temporary files to
    `logs/tmp`: a killed JVM leaves them behind (about 20 MB a run)."""
    (logs / "tmp").mkdir(parents=True)
    with open(logs / "stdout", "wb") as out, open(logs / "stderr", "wb") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "vadctl.cli", "run"],
            env={**os.environ, **env, "FLINK_LOG_DIR": str(logs), "TMPDIR": str(logs / "tmp")},
            cwd=REPO,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )


def kill_job(job: subprocess.Popen) -> None:
    """SIGKILL, no clean shutdown: what a crashed machine does."""
    if job.poll() is None:
        os.killpg(job.pid, signal.SIGKILL)
    job.wait(timeout=60)


def tail(path: Path, n: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except FileNotFoundError:
        return ""


class Jobs:
    """Starts `vad run` jobs, each with a log folder of its own under `root` (kept by pytest)."""

    def __init__(self, root: Path):
        self.root, self.folders = root, {}

    def start(self, env: dict[str, str]) -> subprocess.Popen:
        folder = self.root / f"job-{len(self.folders) + 1}"
        job = start_job(env, folder)
        self.folders[job] = folder
        return job

    def kill(self, job: subprocess.Popen) -> None:
        """kill_job, then the temporary files it left; the logs stay."""
        kill_job(job)
        shutil.rmtree(self.folders[job] / "tmp", ignore_errors=True)

    def logs(self, job: subprocess.Popen) -> str:
        """For an assertion's message: where the job's logs are and how its stderr and JVM log end."""
        folder = self.folders[job]
        parts = [f"job logs in {folder}", "--- stderr", tail(folder / "stderr")]
        for f in sorted(folder.glob("flink-*.log")):
            parts += [f"--- {f.name}", tail(f)]
        return "\n".join(parts)


@pytest.fixture(scope="session")
def jobs(tmp_path_factory) -> Jobs:
    return Jobs(tmp_path_factory.mktemp("jobs"))


class LocalRest:
    """A local job's Flink REST API on a free loopback port (`job.local_rest_port`), read directly,
    not through a proxy taken from the environment."""

    _http = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def __init__(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.base = f"http://127.0.0.1:{self.port}"

    def get(self, path: str):
        with self._http.open(self.base + path, timeout=5) as r:
            return json.loads(r.read())

    def job_id(self) -> str | None:
        """The job's id once the mini-cluster answers (it runs one job), else None."""
        try:
            return next((j["id"] for j in self.get("/jobs")["jobs"]), None)
        except OSError:  # not up yet
            return None

    def job_metric(self, name: str) -> str | None:
        """A job-level metric (numRestarts, ...) of the job, None until it is there."""
        job_id = self.job_id()
        if job_id is None:
            return None
        try:
            values = self.get(f"/jobs/{job_id}/metrics?get={name}")
        except OSError:
            return None
        return values[0]["value"] if values else None


@pytest.fixture
def local_rest() -> LocalRest:
    return LocalRest()


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
        # A job that keeps failing ends after 5 restarts, so its test fails then, not at its deadline
        # (a deployment restarts for as long as an outage lasts; the Redis-outage test does too).
        "VAD_JOB__RESTART_ATTEMPTS": "5",
    }
    cfg = load_config(env=env)
    try:
        stack.up(cfg)
        yield env
    finally:
        stack.down(cfg)


@pytest.fixture(scope="session")
def job_env(stack_env):
    """The environment of a test's job: topics, a consumer group and a Redis key prefix named after
    `name` (the tests share one broker and one Redis), reading `features` if given, over `base`
    (default: this process's environment and the test stack's)."""

    def make(name: str, features: str | None = None, base: dict | None = None, **extra: str) -> dict[str, str]:
        return {
            **({**os.environ, **stack_env} if base is None else base),
            "VAD_KAFKA__TOPICS__FEATURES": features or f"{name}.features",
            "VAD_KAFKA__TOPICS__EVENTS": f"{name}.events",
            "VAD_KAFKA__TOPICS__DEAD_LETTER": f"{name}.dlq",
            "VAD_KAFKA__TOPICS__SCORES": f"{name}.scores",
            "VAD_KAFKA__GROUP_ID": f"{name}-job",
            "VAD_REDIS__KEY_PREFIX": name,
            **extra,
        }

    return make


@pytest.fixture(scope="session")
def run_vad(stack_env):
    """Run the `vad` CLI in a subprocess against the test stack, bounded in time."""

    def run(*args: str, extra_env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
        env = {**os.environ, **stack_env, **(extra_env or {})}
        return subprocess.run(
            [sys.executable, "-m", "vadctl.cli", *args],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run
