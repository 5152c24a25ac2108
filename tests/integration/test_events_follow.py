"""`vad events --follow` on a real broker: events written to the events topic as the job writes them
(keyed by camera, in transactions), read by the CLI in a subprocess with filters; a second run with
the same consumer group resumes after what the first printed; SIGTERM ends it cleanly, committed."""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from kafka import KafkaProducer

from vad.config import load_config
from vad.detect import event_id
from vad.follow import table_header, table_row
from vad.kafka_clients import ensure_topics
from vad.records import Event

REPO = Path(__file__).resolve().parents[2]
CAM, OTHER = "follow-cam/x", "follow-cam-y"
GROUP = "follow-test"
NOW_MS = int(time.time() * 1000)


def _event(camera: str, start_ts: int, seq: int, phase: str, ts_ms: int) -> Event:
    return Event(
        event_id=event_id(camera, start_ts, 0),
        camera_id=camera,
        phase=phase,
        seq=seq,
        start_frame=0,
        end_frame=seq,
        start_ts_ms=start_ts,
        ts_ms=ts_ms,
        peak_score=2.0,
        peak_frame=0,
        threshold=1.0,
        heatmap=[],
        model_version="follow-test",
        close_reason="score" if phase == "close" else None,
    )


def _episode(camera: str, start_ts: int, phases: list[str]) -> list[Event]:
    return [_event(camera, start_ts, i + 1, ph, start_ts + 100 * i) for i, ph in enumerate(phases)]


@pytest.fixture(scope="module")
def follow_env(job_env):
    env = job_env("follow")
    ensure_topics(load_config(env=env).kafka)
    return env


@pytest.fixture(scope="module")
def producer(follow_env):
    cfg = load_config(env=follow_env)
    p = KafkaProducer(bootstrap_servers=cfg.kafka.bootstrap_servers, transactional_id="follow-test-writer")
    p.init_transactions()
    yield p, cfg.kafka.topics.events
    p.close(timeout=10)


def _write(producer, events: list[Event], abort: bool = False) -> None:
    """As the job writes them: keyed by camera id, in a transaction (committed unless ``abort``)."""
    p, topic = producer
    p.begin_transaction()
    for e in events:
        p.send(topic, key=e.camera_id.encode(), value=e.to_json().encode(), timestamp_ms=e.ts_ms)
    p.flush(timeout=30)
    (p.abort_transaction if abort else p.commit_transaction)()


def _cmd(*flags: str) -> list[str]:
    return [sys.executable, "-m", "vadctl.cli", "events", "--follow", "--group", GROUP, *flags]


def _follow(env: dict[str, str], *flags: str, timeout: float = 120) -> list[str]:
    done = subprocess.run(_cmd(*flags), env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.splitlines()


def test_follow_filters_resumes_and_stops_on_sigterm(follow_env, producer):
    old = _episode(CAM, NOW_MS - 7_200_000, ["open", "close"])  # two hours back: --since 1h skips it
    first = _episode(CAM, NOW_MS, ["open", "update", "update", "close"])
    _write(producer, old + _episode(OTHER, NOW_MS, ["open", "close"]) + first)
    _write(producer, _episode(CAM, NOW_MS + 50, ["open", "close"]), abort=True)  # read committed: never seen

    # 1. Exactly the camera's recent, committed events, in order; it ends once the topic is quiet.
    lines = _follow(follow_env, "--camera", CAM, "--since", "1h", "--idle-exit", "10")
    assert lines == [e.to_json() for e in first]

    # 2. Only what was written after run 1; --max-events stops it part-way through a batch.
    second = _episode(CAM, NOW_MS + 10_000, ["open", "update", "update", "close"])
    _write(producer, second)
    assert _follow(follow_env, "--camera", CAM, "--max-events", "2") == [e.to_json() for e in second[:2]]

    # 3. The rest, then SIGTERM: it stops at once with exit 0, having committed what it printed.
    proc = subprocess.Popen(
        _cmd("--camera", CAM, "--phase", "close"),
        env=follow_env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        got: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [got.put(line.rstrip("\n")) for line in proc.stdout], daemon=True).start()
        assert got.get(timeout=120) == second[3].to_json()  # the update at index 2 is filtered out
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, proc.stderr.read()[-3000:]
        assert got.empty()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)

    # 4. Nothing again of what runs 1 to 3 handled (any camera now); the table format.
    third = _episode(OTHER, NOW_MS + 20_000, ["open"])
    _write(producer, third)
    lines = _follow(follow_env, "--format", "table", "--idle-exit", "10")
    assert lines == [table_header(), table_row(third[0])]
