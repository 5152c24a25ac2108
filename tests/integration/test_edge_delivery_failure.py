"""A real broker refuses some of the edge's records: the next record it takes carries the GAP flag (so
the job does not score a window across the hole), and the producer's counters account for every
sampled frame. The features topic only takes record batches up to a size (``max.message.bytes``)
that the clip's records cross up and down, and the edge sends uncompressed, one record a batch (a
paced camera), so the records with more motion than that are refused by the broker (RecordTooLarge)
and the ones after them taken."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from itertools import pairwise
from pathlib import Path

from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic

from vad.config import load_config
from vad.edge.clips import clip_features
from vad.edge.producer import run_cameras
from vad.kafka_clients import make_consumer
from vad.schema import FrameFeatures, decode

REPO = Path(__file__).resolve().parents[2]
CAMERA, FRAMES = "refused-cam", 60
# A one-record batch's bytes beyond the value: the batch header (61) and the record's own fields
# around its key and value (varints, attributes, no headers), about 9.
BATCH_OVERHEAD = 61 + 9 + len(CAMERA)


def _record_sizes(cfg, clip: Path) -> list[int]:
    grids = clip_features(clip, cfg.edge)[:FRAMES]
    return [
        len(FrameFeatures(CAMERA, i, 1_800_000_000_000, 360, 240, g).encode(cfg.edge.wire_precision))
        for i, g in enumerate(grids)
    ]


def _limit(sizes: list[int]) -> int:
    """A batch size limit that as many records as possible cross downwards (refused, then taken),
    whatever the overhead's exact bytes (within 15)."""

    def crossings(t: int) -> int:
        return sum(a > t >= b for a, b in pairwise(sizes))

    best = max(range(min(sizes), max(sizes)), key=lambda t: min(crossings(t + d) for d in range(-15, 16)))
    return best + BATCH_OVERHEAD


def _refusing_topic(cfg, name: str, clip: Path) -> str:
    admin = KafkaAdminClient(bootstrap_servers=cfg.kafka.bootstrap_servers)
    try:
        limit = _limit(_record_sizes(cfg, clip))
        admin.create_topics([NewTopic(name, 1, 1, topic_configs={"max.message.bytes": str(limit)})])
    finally:
        admin.close()
    return name


def _read(cfg, topic: str, expect: int) -> list:
    consumer = make_consumer(cfg.kafka, topic, consumer_timeout_ms=1000)
    recs = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(recs) < expect:
            recs += [decode(r.value) for rs in consumer.poll(timeout_ms=1000).values() for r in rs]
    finally:
        consumer.close()
    return recs


def test_the_record_after_one_the_broker_refused_carries_gap(stack_env, ped2):
    """The edge's workers on a real video and a real broker, through a kafka-python producer without
    idempotence: the edge's own producer (idempotent, kafka-python's default) takes the first refusal
    as fatal and fails every record after it (the next test), so no record would follow a hole."""
    env = {**os.environ, **stack_env, "VAD_EDGE__COMPRESSION": "none"}
    cfg = load_config(env={**env, "VAD_KAFKA__TOPICS__FEATURES": "refused-a.features"})
    clip = ped2 / "test" / "Test004.mp4"
    topic = _refusing_topic(cfg, cfg.kafka.topics.features, clip)
    producer = KafkaProducer(
        bootstrap_servers=cfg.kafka.bootstrap_servers, acks="all", linger_ms=20, enable_idempotence=False
    )
    try:
        settings = cfg.edge.settings_for(None).model_copy(update={"realtime": True})
        (w,) = run_cameras(cfg, [(CAMERA, str(clip), settings)], limit=FRAMES, producer=producer)
    finally:
        producer.close(timeout=10)
    st = w.stats
    assert w.error is None, w.error
    # In the order sent (a split batch retried without idempotence may land after later records).
    recs = sorted(_read(cfg, topic, st.sent), key=lambda r: r.frame_index)
    idx = [r.frame_index for r in recs]
    refused = sorted(set(range(FRAMES)) - set(idx))
    assert len(set(idx)) == len(idx) and 3 <= len(refused) <= FRAMES - 3, refused
    assert (st.sent, st.failed, st.dropped, st.sampled) == (len(recs), len(refused), 0, FRAMES)
    after_hole = [i for i in idx if i - 1 in refused]
    assert after_hole, ("no record was taken after a refused one", refused)
    # Flagged: the stream's first record and each one taken after a refused one, no other.
    assert [r.frame_index for r in recs if r.gap] == sorted(({0} & set(idx)) | set(after_hole)), refused


def test_refused_records_are_counted_and_the_process_says_so(stack_env, ped2):
    """`vad produce` with its own producer: the counters add up to the frames sampled and the exit
    status is 1."""
    env = {**os.environ, **stack_env, "VAD_EDGE__COMPRESSION": "none", "VAD_KAFKA__TOPICS__FEATURES": "refused-b.f"}
    cfg = load_config(env=env)
    clip = ped2 / "test" / "Test004.mp4"
    topic = _refusing_topic(cfg, cfg.kafka.topics.features, clip)
    produce = [sys.executable, "-m", "vadctl.cli", "produce", "--camera", CAMERA, "--source", str(clip)]
    p = subprocess.run(
        [*produce, "--realtime", "--limit", str(FRAMES)], env=env, cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert p.returncode == 1, p.stderr[-3000:]
    stats = json.loads(p.stdout.strip().splitlines()[-1])
    recs = _read(cfg, topic, stats["sent"])
    assert recs and recs[0].frame_index == 0 and recs[0].gap
    assert stats["failed"] > 0 and (stats["sent"], stats["dropped"]) == (len(recs), 0), stats
    assert stats["sent"] + stats["failed"] + stats["dropped"] == stats["sampled"] == FRAMES
