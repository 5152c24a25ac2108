"""The edge producer against the real KRaft broker: records round-trip through Kafka, keyed by camera,
decodable, in order; `produce --all` runs every configured camera. Uses a topic of its own so the
pipeline test (which reads the whole features topic) is not disturbed."""

from __future__ import annotations

import json
import uuid

import pytest
from kafka import KafkaAdminClient, KafkaConsumer
from kafka.admin import NewTopic

from vad.config import load_config
from vad.schema import N_CHANNELS, decode


@pytest.fixture(scope="module")
def topic(stack_env):
    name = f"vad.test-producer-{uuid.uuid4().hex[:8]}"
    cfg = load_config(env=stack_env)
    admin = KafkaAdminClient(bootstrap_servers=cfg.kafka.bootstrap_servers, request_timeout_ms=20000)
    try:
        admin.create_topics([NewTopic(name, num_partitions=2, replication_factor=1)])
        yield name
        admin.delete_topics([name])
    finally:
        admin.close()


def read_all(bootstrap: str, topic: str, expect: int, timeout_s: float = 30) -> list:
    c = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=3000,
    )
    out = []
    try:
        import time

        deadline = time.monotonic() + timeout_s
        while len(out) < expect and time.monotonic() < deadline:
            for batch in c.poll(timeout_ms=1000).values():
                out.extend(batch)
    finally:
        c.close()
    return out


def test_records_round_trip_through_the_broker(stack_env, run_vad, ped2, topic):
    env = {"VAD_KAFKA__TOPICS__FEATURES": topic, "VAD_EDGE__PROGRESS": "false"}
    r = run_vad(
        "produce",
        "--camera",
        "edge-it-1",
        "--source",
        str(ped2 / "test" / "Test001.mp4"),
        "--limit",
        "40",
        extra_env=env,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    stats = json.loads(r.stdout.strip().splitlines()[-1])
    assert stats["sent"] == 40 and stats["failed"] == 0 and stats["dropped"] == 0
    msgs = [m for m in read_all(stack_env["VAD_KAFKA__BOOTSTRAP_SERVERS"], topic, 40) if m.key == b"edge-it-1"]
    recs = [decode(m.value) for m in msgs]
    assert [r.frame_index for r in recs] == list(range(40))  # one key -> one partition -> in order
    assert all(r.camera_id == "edge-it-1" and r.features.shape == (12, 18, N_CHANNELS) for r in recs)
    assert all(m.timestamp == r.ts_ms for m, r in zip(msgs, recs, strict=True))
    assert recs[-1].ts_ms - recs[0].ts_ms == 3900  # 10 fps presentation times
    assert max(float(r.features[..., 2].max()) for r in recs) > 0.5  # people walk in Test001


def test_produce_all_runs_every_configured_camera(stack_env, run_vad, ped2, topic, tmp_path):
    cfg = tmp_path / "edge.yaml"
    cfg.write_text(
        "edge:\n  progress: false\ncameras:\n"
        f"  edge-it-a: {{source: {ped2 / 'test' / 'Test002.mp4'}}}\n"
        f"  edge-it-b: {{source: {ped2 / 'test' / 'Test003.mp4'}, sample_every: 2, mask: [[0, 0]]}}\n"
    )
    r = run_vad(
        "--config", str(cfg), "produce", "--all", "--limit", "20", extra_env={"VAD_KAFKA__TOPICS__FEATURES": topic}
    )
    assert r.returncode == 0, r.stderr[-3000:]
    lines = [json.loads(x) for x in r.stdout.strip().splitlines()]
    assert {x["camera_id"]: x["sent"] for x in lines} == {"edge-it-a": 20, "edge-it-b": 20}
    msgs = read_all(stack_env["VAD_KAFKA__BOOTSTRAP_SERVERS"], topic, 80)
    b = [decode(m.value) for m in msgs if m.key == b"edge-it-b"]
    assert len(b) == 20 and b[1].ts_ms - b[0].ts_ms == 200  # every 2nd frame at 10 fps
    assert all(not r.features[0, 0].any() for r in b)  # masked cell
