"""Kill the job mid-stream (SIGKILL, no clean shutdown), resume it from its last checkpoint: the events
in Kafka (read committed) and in Redis are exactly those of an uninterrupted run — same ids, none
missing, none twice. Both runs are unbounded, as in production; each clip is followed by calm frames
so every episode closes on its score."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from vad.config import load_config
from vad.consumer import read_kafka_events, read_kafka_scores, read_redis_events
from vad.kafka_clients import ensure_topics, make_consumer, make_producer
from vad.records import Event
from vad.schema import N_CHANNELS, FrameFeatures, decode

REPO = Path(__file__).resolve().parents[2]
CLIPS = {"eo-cam-a": "Test004", "eo-cam-b": "Test002", "eo-cam-c": "Test006", "eo-cam-d": "Test001"}
# Calm frames after each clip, written live while the interrupted run works (see CalmTails).
CALM_TAIL = 300
TAIL_FPS = 50


def _key(e: Event) -> tuple:
    return (e.event_id, e.seq, e.phase, e.start_frame, e.end_frame, e.peak_score)


def _env(job_env, name: str, tmp: Path, **extra: str) -> dict:
    return job_env(
        f"eo.{name}",
        features="eo.features",
        VAD_JOB__DELIVERY="exactly_once",
        VAD_JOB__EMIT_SCORES="true",
        VAD_JOB__CHECKPOINT_INTERVAL_MS="500",
        VAD_JOB__CHECKPOINT_DIR=str(tmp / f"ckpt-{name}"),
        # An idle close can come from wall time (no record of a camera reaching the job for the idle
        # timeout, as around the kills here), which differs between any two runs. Here every episode
        # closes on its score instead.
        VAD_JOB__IDLE_TIMEOUT_MS="600000",
        **extra,
    )


def _latest_checkpoint(root: Path) -> Path | None:
    done = [p.parent for p in root.glob("*/chk-*/_metadata")]
    return max(done, key=lambda p: int(p.name.split("-")[1])) if done else None


def _until_all_scored(jobs, job: subprocess.Popen, cfg, frames: int, timeout_s: float = 600) -> list[Event]:
    """Wait until every frame's score is committed, then until the events stop changing."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert job.poll() is None, f"the job died\n{jobs.logs(job)}"
        # Distinct frames: an at-least-once run may hold a frame's score twice after a restart.
        if len({(s.camera_id, s.frame_index) for s in read_kafka_scores(cfg, timeout_s=3)}) >= frames:
            break
        time.sleep(1)
    else:
        pytest.fail("not every frame was scored in time")
    events, stable_since = [], time.monotonic()
    while time.monotonic() - stable_since < 3 and time.monotonic() < deadline:
        now = read_kafka_events(cfg, timeout_s=3)
        if len(now) != len(events):
            events, stable_since = now, time.monotonic()
        time.sleep(0.5)
    return events


@pytest.fixture(scope="module")
def produced(job_env, ped2, produce, tmp_path_factory):
    """The clips, streamed side by side; the calm tails are written by the test, while a job runs."""
    tmp = tmp_path_factory.mktemp("eo")
    for name in ("ref", "rst"):
        ensure_topics(load_config(env=_env(job_env, name, tmp)).kafka)
    env = _env(job_env, "ref", tmp)
    # The cameras stream at the same time, so their event times overlap as live cameras' do.
    counts = produce(env, {cam: ped2 / "test" / f"{clip}.mp4" for cam, clip in CLIPS.items()})
    return tmp, counts, last_timestamps(load_config(env=env))


def last_timestamps(cfg) -> dict[str, int]:
    """Each camera's latest event time in the features topic, where its calm tail continues."""
    last_ts = {}
    consumer = make_consumer(cfg.kafka, cfg.kafka.topics.features, consumer_timeout_ms=3000)
    for msg in consumer:
        r = decode(msg.value)
        last_ts[r.camera_id] = max(last_ts.get(r.camera_id, 0), r.ts_ms)
    consumer.close()
    return last_ts


class CalmTails(threading.Thread):
    """A calm tail per camera (no motion), continuing its frame indices and event time, so open
    episodes close on their score as in a live stream. Written live, the cameras side by side, at
    about TAIL_FPS frames/s each: the job is killed while it is still arriving, so the kill lands
    mid-stream however fast the job works through what is already in the topic."""

    def __init__(self, cfg, counts: dict[str, int], last_ts: dict[str, int], length=CALM_TAIL, fps=TAIL_FPS):
        super().__init__(daemon=True)
        self.cfg, self.counts, self.last_ts, self.length, self.fps = cfg, counts, last_ts, length, fps
        self.written = 0  # tail frames per camera sent so far
        self.halfway = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            prod = make_producer(self.cfg.kafka)
            calm = np.zeros((12, 18, N_CHANNELS), np.float32)
            for i in range(self.length):
                for cam, n in self.counts.items():
                    ts = self.last_ts[cam] + 100 * (i + 1)
                    rec = FrameFeatures(cam, n + i, ts, 360, 240, calm)
                    prod.send(self.cfg.kafka.topics.features, key=cam.encode(), value=rec.encode(), timestamp_ms=ts)
                prod.flush(timeout=30)
                self.written = i + 1
                if i == self.length // 2:
                    self.halfway.set()
                time.sleep(1 / self.fps)
            prod.close()
        except BaseException as e:  # reported by the test, not lost in the thread
            self.error = e
            self.halfway.set()


def test_restore_from_checkpoint_gives_exactly_the_uninterrupted_events(job_env, produced, jobs):
    tmp, counts, last_ts = produced
    frames = sum(counts.values()) + CALM_TAIL * len(counts)
    env = _env(job_env, "rst", tmp)
    cfg = load_config(env=env)
    tails = CalmTails(cfg, counts, last_ts)
    job = jobs.start(env)
    try:
        # Interrupted run: once it has written events and completed a checkpoint, the tails start;
        # it is killed halfway through them, with checkpoints and transactions under way.
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and job.poll() is None:
            if read_redis_events(cfg) and _latest_checkpoint(tmp / "ckpt-rst"):
                break
            time.sleep(0.2)
        assert job.poll() is None, f"the job died before it could be interrupted\n{jobs.logs(job)}"
        tails.start()
        assert tails.halfway.wait(timeout=120), "the calm tails were not written in time"
        assert tails.error is None, tails.error
        assert job.poll() is None, f"the job died before it could be interrupted\n{jobs.logs(job)}"
    finally:
        jobs.kill(job)
    scored_before_kill = len(read_kafka_scores(cfg, timeout_s=3))
    tails.join(timeout=120)
    assert not tails.is_alive() and tails.error is None, tails.error
    assert 0 < scored_before_kill < frames, "the kill should land mid-stream"
    chk = _latest_checkpoint(tmp / "ckpt-rst")
    resumed = jobs.start({**env, "VAD_JOB__RESTORE_FROM": str(chk)})
    try:
        got = sorted(map(_key, _until_all_scored(jobs, resumed, cfg, frames)))
    finally:
        jobs.kill(resumed)

    # Reference: an uninterrupted run over the same topic, every record already there.
    ref_cfg = load_config(env=_env(job_env, "ref", tmp))
    ref = jobs.start(_env(job_env, "ref", tmp))
    try:
        want = sorted(map(_key, _until_all_scored(jobs, ref, ref_cfg, frames)))
    finally:
        jobs.kill(ref)
    assert want, "the reference run produced no events"
    assert any(k[2] == "close" for k in want)
    assert got == want
    assert sorted(map(_key, read_redis_events(cfg))) == sorted(map(_key, read_redis_events(ref_cfg))) == want
