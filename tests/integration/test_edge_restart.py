"""An edge restarted while the job runs: the new `vad produce` process counts frames from 0 again, and
its episodes must still be detected, with event ids of their own, in Kafka and in Redis.

Two cameras, each streamed by two producer processes one after the other, the same anomalous clip
(Ped2 Test004: a bicycle from frame 31) both times, so both streams have an episode from the same
frame: a camera paced at its frame rate (``--realtime``, as a live camera: the new stream is later
in event time), and a backfilled file restarted while its event time is still ahead of the wall clock
(the new stream goes back in event time)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from vad.config import load_config
from vad.consumer import read_kafka_events, read_redis_events
from vad.kafka_clients import ensure_topics, make_consumer
from vad.schema import decode

REPO = Path(__file__).resolve().parents[2]
PACED, BACKFILLED = "restart-live", "restart-file"


def _produce(env, camera: str, clip: Path, *extra: str) -> None:
    p = subprocess.run(
        [sys.executable, "-m", "vadctl.cli", "produce", "--camera", camera, "--source", str(clip), *extra],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr[-3000:]


def _streams(cfg) -> dict[str, list[dict[tuple[int, int], bool]]]:
    """Per camera, per producer stream in order: {(ts_ms, frame_index): gap} of its records, read back
    from the features topic (a stream starts at frame 0)."""
    consumer = make_consumer(cfg.kafka, cfg.kafka.topics.features, consumer_timeout_ms=1000)
    out: dict[str, list[dict[tuple[int, int], bool]]] = {}
    try:
        deadline, quiet = time.monotonic() + 60, 0
        while time.monotonic() < deadline and quiet < 3:
            batch = consumer.poll(timeout_ms=1000, max_records=2000)
            quiet = 0 if batch else quiet + 1
            # A camera's records are in one partition, in the order sent: one producer after the
            # other, a stream's records follow its frame 0.
            for r in (decode(r.value) for rs in batch.values() for r in rs):
                streams = out.setdefault(r.camera_id, [])
                if r.frame_index == 0:
                    streams.append({})
                streams[-1][(r.ts_ms, r.frame_index)] = r.gap
    finally:
        consumer.close()
    return out


def test_an_edge_restart_is_scored_and_its_episodes_get_new_ids(job_env, ped2, jobs):
    env = job_env("restart", VAD_JOB__IDLE_TIMEOUT_MS="3000")
    cfg = load_config(env=env)
    ensure_topics(cfg.kafka)
    clip = ped2 / "test" / "Test004.mp4"
    job = jobs.start(env)
    try:
        # Back to back: the second backfill starts well within the first's 18 s of event time.
        _produce(env, BACKFILLED, clip)
        _produce(env, BACKFILLED, clip)
        _produce(env, PACED, clip, "--realtime", "--limit", "70")
        _produce(env, PACED, clip)
        streams = _streams(cfg)
        for cam in (PACED, BACKFILLED):
            assert len(streams.get(cam, [])) == 2, (cam, [len(s) for s in streams.get(cam, [])])
            for stream in streams[cam]:  # each stream's first record carries GAP, the next not
                assert [stream[k] for k in sorted(stream, key=lambda k: k[1])][:2] == [True, False], cam
        (late, _), (early, _) = max(streams[BACKFILLED][0]), min(streams[BACKFILLED][1])
        assert early < late, "precondition: the second backfill should start before the first's event time ended"
        assert min(streams[PACED][1])[0] > max(streams[PACED][0])[0]

        def opens_of(events, cam, k):
            """The open events of the camera's k-th stream (the record its episode starts at)."""
            ours = streams[cam][k]
            return [
                e for e in events if e.camera_id == cam and e.phase == "open" and (e.start_ts_ms, e.start_frame) in ours
            ]

        deadline, events = time.monotonic() + 300, []
        while time.monotonic() < deadline:
            assert job.poll() is None, f"the job died\n{jobs.logs(job)}"
            events = read_kafka_events(cfg, timeout_s=3)
            if all(opens_of(events, cam, 1) for cam in (PACED, BACKFILLED)):
                break
            time.sleep(2)
        redis = read_redis_events(cfg)
    finally:
        jobs.kill(job)
    for cam in (PACED, BACKFILLED):
        before, after = opens_of(events, cam, 0), opens_of(events, cam, 1)
        summary = [(e.phase, e.start_frame, e.start_ts_ms, e.event_id[:8]) for e in events if e.camera_id == cam]
        assert before and after, (cam, "no episode of each stream", summary)
        # The same clip: the second stream's episode starts at the first one's frame, yet it is
        # another episode, with another id, and Redis stored it (its dedup key is the id).
        assert after[0].start_frame == before[0].start_frame, (cam, summary)
        assert not {e.event_id for e in after} & {e.event_id for e in before}, (cam, summary)
        stored = {(e.event_id, e.seq) for e in redis if e.camera_id == cam}
        assert {(e.event_id, e.seq) for e in before + after} <= stored, (cam, summary)
