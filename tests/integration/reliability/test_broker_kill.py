"""Scenario: the Kafka broker killed with SIGKILL mid-run and started again (same data dir, same
ports, by the stack's own code), in both delivery modes, for a short outage (the clients ride it
out) and one past the Java producer's delivery timeout (exactly-once: the job fails and restarts by
itself from its last checkpoint). The job finishes; its events in Kafka (read committed) and Redis
are compared with an uninterrupted reference run over the same topic, by id and content. Last, the
edge (`vad produce --realtime`) under the same two outages: its counters and the holes it leaves.

At-least-once may legitimately leave exact redeliveries in Kafka (same id, seq and content) after the
restart: its contract allows them and consumers dedup on (event_id, seq). So for that mode the
*distinct* Kafka events are compared with the reference (a redelivery that differs in content is a
different key: it counts as unexpected), and the redeliveries are reported apart
(``kafka_redelivered``). Redis dedups on (event_id, seq), so it must hold every event once in both
modes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from faults import compare_sinks, event_key
from test_exactly_once import CALM_TAIL, CLIPS, _latest_checkpoint, _until_all_scored, last_timestamps
from test_redis_outage import _failures

from vad.config import load_config
from vad.consumer import read_kafka_scores, read_redis_events
from vad.detect import starts_afresh
from vad.kafka_clients import ensure_topics, make_consumer, make_producer
from vad.schema import N_CHANNELS, FrameFeatures, decode
from vadctl import stack

REPO = Path(__file__).resolve().parents[3]
# How long the broker stays down before it is started again: shorter than the Kafka clients'
# timeouts (the job rides it out), and longer than the Java producer's delivery.timeout.ms (120 s
# by default: the job's Kafka sinks fail their records, so the job fails and restarts by itself).
OUTAGES_S = {"short": 8, "long": 130}
EDGE_BEFORE_KILL_S = 8  # 80 frames, paced, delivered before the broker is killed


def _env(job_env, delivery: str, run: str, tmp: Path, **extra: str) -> dict:
    name = f"bk-{delivery}-{run}"
    return job_env(
        name,
        features="bk.features",
        VAD_JOB__DELIVERY=delivery,
        VAD_JOB__EMIT_SCORES="true",
        VAD_JOB__CHECKPOINT_INTERVAL_MS="500",
        VAD_JOB__CHECKPOINT_DIR=str(tmp / f"ckpt-{name}"),
        # Episodes close on their score, not on wall time around the outage (see test_exactly_once).
        VAD_JOB__IDLE_TIMEOUT_MS="600000",
        # As deployed: restart for as long as the outage lasts (the test's own waits bound it).
        VAD_JOB__RESTART_ATTEMPTS="0",
        VAD_JOB__RESTART_INITIAL_BACKOFF_MS="200",
        VAD_JOB__RESTART_MAX_BACKOFF_MS="2000",
        **extra,
    )


@pytest.fixture(scope="module")
def broker_produced(job_env, ped2, produce, tmp_path_factory):
    """The clips, streamed side by side into one topic both runs of both modes read; the calm tails
    are written by the test, around the broker's outage."""
    tmp = tmp_path_factory.mktemp("bk")
    for delivery in ("at_least_once", "exactly_once"):
        for run in (f"{o}-{r}" for o in OUTAGES_S for r in ("ref", "rst")):
            ensure_topics(load_config(env=_env(job_env, delivery, run, tmp)).kafka)
    env = _env(job_env, "exactly_once", "short-ref", tmp)
    counts = produce(env, {f"bk-{cam}": ped2 / "test" / f"{clip}.mp4" for cam, clip in CLIPS.items()})
    return tmp, counts, last_timestamps(load_config(env=env)), {"tail_rounds": 0}


class GatedTails(threading.Thread):
    """The calm tails (as test_exactly_once.CalmTails), in two halves: after the first it closes its
    producer, sets ``paused`` and waits for ``resume`` (the broker back) before writing the second
    with a new producer. Only one tail is ever written, so both runs of a mode read the same input."""

    def __init__(self, cfg, counts: dict[str, int], last_ts: dict[str, int], start_at: int, stop_at: int):
        super().__init__(daemon=True)
        self.cfg, self.counts, self.last_ts = cfg, counts, last_ts
        self.rounds = range(start_at, stop_at)
        self.paused, self.resume = threading.Event(), threading.Event()
        self.error: BaseException | None = None

    def _write(self, rounds) -> None:
        prod = make_producer(self.cfg.kafka)
        calm = np.zeros((12, 18, N_CHANNELS), np.float32)
        for i in rounds:
            for cam, n in self.counts.items():
                ts = self.last_ts[cam] + 100 * (i + 1)
                rec = FrameFeatures(cam, n + i, ts, 360, 240, calm).encode()
                prod.send(self.cfg.kafka.topics.features, key=cam.encode(), value=rec, timestamp_ms=ts)
            prod.flush(timeout=30)
            time.sleep(0.02)
        prod.close(timeout=30)

    def run(self) -> None:
        half = (self.rounds.start + self.rounds.stop) // 2
        try:
            self._write(range(self.rounds.start, half))
            self.paused.set()
            if not self.resume.wait(timeout=300):
                raise TimeoutError("never resumed")
            self._write(range(half, self.rounds.stop))
        except BaseException as e:  # reported by the test, not lost in the thread
            self.error = e
            self.paused.set()


def _kill_broker(cfg) -> None:
    """SIGKILL, as a crashed machine: no controlled shutdown, no flushed log segments."""
    kafka, _redis = stack.services(cfg)
    pid = kafka.pid()
    assert pid is not None, "the test stack's broker is not running"
    os.kill(pid, signal.SIGKILL)
    # Its leader thread can be gone (no pid() any more) while the others still hold its sockets.
    deadline = time.monotonic() + 30
    while (kafka.pid() is not None or kafka.answers()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert kafka.pid() is None and not kafka.answers(), "the broker outlived SIGKILL"


def _distinct_frames(cfg) -> int:
    return len({(s.camera_id, s.frame_index) for s in read_kafka_scores(cfg, timeout_s=3)})


@pytest.mark.parametrize("outage", list(OUTAGES_S))
@pytest.mark.parametrize("delivery", ["at_least_once", "exactly_once"])
def test_broker_sigkill_mid_run(delivery, outage, job_env, stack_env, broker_produced, jobs, local_rest, fault_report):
    tmp, counts, last_ts, written = broker_produced
    # Each test writes a tail of its own, going on from the rounds written before it, so the topic
    # stays one unbroken stream per camera, which both runs of the test read whole.
    first = written["tail_rounds"]
    frames = sum(counts.values()) + (first + CALM_TAIL) * len(counts)
    env = _env(job_env, delivery, f"{outage}-rst", tmp, VAD_JOB__LOCAL_REST_PORT=str(local_rest.port))
    cfg = load_config(env=env)
    tails = GatedTails(cfg, counts, last_ts, first, first + CALM_TAIL)
    job = jobs.start(env)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and job.poll() is None:
            if read_redis_events(cfg) and _latest_checkpoint(tmp / f"ckpt-bk-{delivery}-{outage}-rst"):
                break
            time.sleep(0.5)
        assert job.poll() is None, f"the job died before the broker was killed\n{jobs.logs(job)}"
        tails.start()
        assert tails.paused.wait(timeout=180) and tails.error is None, tails.error
        scored_before_kill = _distinct_frames(cfg)
        killed_at = time.monotonic()
        _kill_broker(cfg)
        time.sleep(OUTAGES_S[outage])
        assert stack.up(load_config(env=stack_env))["kafka"] == "started"
        broker_back_s = time.monotonic() - killed_at
        tails.resume.set()
        tails.join(timeout=180)
        assert not tails.is_alive() and tails.error is None, tails.error
        written["tail_rounds"] += CALM_TAIL
        got_kafka = _until_all_scored(jobs, job, cfg, frames, timeout_s=300)
        finished_s = time.monotonic() - killed_at
        failures = _failures(local_rest)
    finally:
        jobs.kill(job)
    assert 0 < scored_before_kill < frames, "the kill should land mid-stream"
    got_redis = read_redis_events(cfg)

    ref_cfg = load_config(env=_env(job_env, delivery, f"{outage}-ref", tmp))
    ref = jobs.start(_env(job_env, delivery, f"{outage}-ref", tmp))
    try:
        want_kafka = _until_all_scored(jobs, ref, ref_cfg, frames, timeout_s=300)
    finally:
        jobs.kill(ref)
    want_redis = read_redis_events(ref_cfg)
    assert want_kafka and any(e.phase == "close" for e in want_kafka), "the reference run has no closed episode"
    assert len(set(map(event_key, want_kafka))) == len(want_kafka), "the uninterrupted run redelivered"

    redelivered = len(got_kafka) - len(set(map(event_key, got_kafka)))
    result = compare_sinks(
        fault_report,
        want_kafka,
        got_kafka,
        got_redis,
        want_redis=want_redis,
        distinct_kafka=delivery == "at_least_once",
    )
    kafka, redis = result["kafka"], result["redis"]
    fault_report.note(
        job_failures=len(failures),
        failure_kinds=sorted(set(failures)),
        scored_before_kill=scored_before_kill,
        frames=frames,
        broker_back_after_s=round(broker_back_s, 1),
        all_scored_after_kill_s=round(finished_s, 1),
        events=len(want_kafka),
    )
    assert kafka.exact, kafka
    assert redis.exact, redis
    # Exactly-once's open transaction cannot commit past the Java producer's delivery.timeout.ms, so
    # the job fails and restarts by itself; an at-least-once job with nothing pending rides it out.
    if outage == "long" and delivery == "exactly_once":
        assert failures, "the job should have failed on the outage and restarted by itself"
    if delivery == "exactly_once":
        assert redelivered == 0
    assert sorted(map(event_key, want_redis)) == sorted(map(event_key, want_kafka))


def _long_clip(ped2: Path, out: Path, seconds: float) -> tuple[Path, int]:
    """Ped2 clips end to end, at least ``seconds`` long at 10 fps (paced): the outage and the
    broker's start fit well inside it, so records are sent before, during and after."""
    writer, frames = None, 0
    clips = [f"Test00{i}" for i in range(1, 7)] * 9
    for clip in clips[: 1 + int(seconds * 10) // 150]:
        cap = cv2.VideoCapture(str(ped2 / "test" / f"{clip}.mp4"))
        ok, frame = cap.read()
        while ok:
            if writer is None:
                size = (frame.shape[1], frame.shape[0])
                writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, size)
            writer.write(frame)
            frames += 1
            ok, frame = cap.read()
        cap.release()
    writer.release()
    return out, frames


def _camera_records(cfg, camera: str, expect: int) -> list:
    """The camera's records in the features topic: at least ``expect`` of them, or all there are
    within a minute."""
    consumer = make_consumer(cfg.kafka, cfg.kafka.topics.features)
    recs, deadline = [], time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=1000)
            recs += [r for rs in batch.values() for r in map(decode, (m.value for m in rs)) if r.camera_id == camera]
            if not batch and len(recs) >= expect:
                break
    finally:
        consumer.close()
    return recs


@pytest.mark.parametrize("outage", list(OUTAGES_S))
def test_edge_counts_every_frame_across_a_broker_kill(outage, stack_env, ped2, tmp_path, fault_report):
    """`vad produce --realtime` while the broker is SIGKILLed and started again: its counters add
    up to the frames sampled, and each frame it did not deliver leaves a hole the job takes as a gap."""
    camera = "bk-edge-cam"
    env = {**os.environ, **stack_env, "VAD_KAFKA__TOPICS__FEATURES": f"bk-edge-{outage}.features"}
    # Its records expire (fail) 40 s after they were sent, so the long outage outlasts that.
    env |= {"VAD_EDGE__PROGRESS": "false", "VAD_EDGE__DELIVERY_TIMEOUT_S": "40"}
    cfg = load_config(env=env)
    ensure_topics(cfg.kafka)
    # Long enough for the edge to find its client stuck (40 + 30 s after the kill) and end on it.
    clip, clip_frames = _long_clip(ped2, tmp_path / "long.mp4", EDGE_BEFORE_KILL_S + OUTAGES_S[outage] + 130)
    argv = [sys.executable, "-m", "vadctl.cli", "produce", "--camera", camera, "--source", str(clip), "--realtime"]
    with open(tmp_path / "produce.err", "w") as err:
        edge = subprocess.Popen(argv, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        time.sleep(EDGE_BEFORE_KILL_S)
        assert edge.poll() is None, "the edge ended before the broker was killed"
        killed_at = time.monotonic()
        _kill_broker(cfg)
        time.sleep(OUTAGES_S[outage])
        assert stack.up(load_config(env=stack_env))["kafka"] == "started"
        broker_back_s = time.monotonic() - killed_at
        out, _ = edge.communicate(timeout=300)
    finally:
        if edge.poll() is None:
            edge.kill()
            edge.wait(timeout=30)
    log = (tmp_path / "produce.err").read_text(errors="replace")
    log_tail = log[-3000:]
    stats = json.loads(out.strip().splitlines()[-1])
    recs = _camera_records(cfg, camera, stats["sent"])
    idx = [r.frame_index for r in recs]
    present = set(idx)
    # Every encoded frame took an index, dropped ones too; a corrupt frame took none.
    holes = sorted(set(range(stats["sampled"] - stats["corrupt"])) - present)
    after_hole = sorted({i for i in present if i - 1 in holes})
    unflagged = [r.frame_index for r in recs if r.frame_index in after_hole and not r.gap]
    # The edge cannot flag every such record (a failure reported after the records behind it were
    # handed over); the job takes each as a gap by its skipped index.
    prev = {i: max((j for j in present if j < i), default=None) for i in after_hole}
    not_afresh = [
        r.frame_index
        for r in recs
        if r.frame_index in after_hole and not starts_afresh(r.gap, r.frame_index, prev[r.frame_index])
    ]
    fault_report.note(
        edge_exit=edge.returncode,
        edge_counters={k: stats[k] for k in ("sampled", "sent", "failed", "dropped", "corrupt", "gaps")},
        records_in_topic=len(recs),
        duplicate_records=len(idx) - len(present),
        frames_not_delivered=len(holes),
        holes_followed_by_unflagged_record=len(unflagged),
        frames_not_delivered_at_the_end=len([i for i in holes if i > max(present, default=-1)]),
        stall_reported="reported no delivery for" in log,
        broker_back_after_s=round(broker_back_s, 1),
    )
    assert stats["sent"] + stats["failed"] + stats["dropped"] + stats["corrupt"] == stats["sampled"], stats
    assert len(present) == stats["sent"], (len(present), stats, log_tail)
    assert not not_afresh, (not_afresh, holes, log_tail)
    assert len(holes) <= stats["failed"] + stats["dropped"] + stats["corrupt"], (holes, stats)
    assert edge.returncode == (0 if stats["failed"] == 0 else 1), log_tail
    # Frames not delivered with nothing after them: counted as failed, and the process said so
    # (exit 1). Many of them: its Kafka client stopped delivering, and the edge must have ended on
    # that, not gone on sampling into a client that sends nothing (vad/edge/stall.py).
    trailing = [i for i in holes if i > max(present, default=-1)]
    if len(trailing) > 10:
        assert "reported no delivery for" in log and stats["read"] < clip_frames, (len(trailing), stats, log_tail)
