"""End to end on real parts: Ped2 video -> edge producer -> Kafka -> Flink mini-cluster job ->
ONNX scoring -> events in Kafka and Redis; a malformed record goes to the dead-letter topic, and so
do the records of an edge whose feature settings are not the model's."""

from __future__ import annotations

import json

import numpy as np
import pytest
from kafka import KafkaProducer
from kafka.partitioner.default import murmur2

from models.card import ModelCard, card_path
from models.train import score_clips
from vad.config import load_config
from vad.consumer import read_kafka_dead_letters, read_kafka_events, read_kafka_scores, read_redis_events
from vad.edge.clips import clip_features
from vad.kafka_clients import make_consumer
from vad.records import Event
from vad.schema import wire_values

CLIP = "Test004"  # a bicycle and more from frame 31 on (labels.json)
CAMERA = "ped2-test004"
OTHER = {"ped2-test001": "Test001"}  # a second camera streamed at the same time
MISSET = "ped2-misset"  # an edge run with another flow gate than the model was trained with
MISSET_FRAMES = 12


@pytest.fixture(scope="module")
def job_run(stack_env, ped2, run_vad):
    cfg = load_config(env=stack_env)
    # A malformed record first: the job must dead-letter it and keep going.
    p = KafkaProducer(bootstrap_servers=cfg.kafka.bootstrap_servers)
    p.send(cfg.kafka.topics.features, key=b"broken-cam", value=b"VADF\x01 not a record")
    p.flush()
    p.close()
    for cam, clip in OTHER.items():
        other = run_vad("produce", "--camera", cam, "--source", str(ped2 / "test" / f"{clip}.mp4"))
        assert other.returncode == 0, other.stderr
    misset = run_vad(
        "produce",
        "--camera",
        MISSET,
        "--source",
        str(ped2 / "test" / "Test002.mp4"),
        "--limit",
        str(MISSET_FRAMES),
        extra_env={"VAD_EDGE__FLOW_GATE": "2"},
    )
    assert misset.returncode == 0, misset.stderr
    # The model is at hand here, so the edge says at once what the job will do with these records.
    assert f"camera {MISSET} (edge): edge settings other than model" in misset.stderr
    assert "flow_gate 2.0 (model: 4.0)" in misset.stderr
    prod = run_vad("produce", "--camera", CAMERA, "--source", str(ped2 / "test" / f"{CLIP}.mp4"))
    assert prod.returncode == 0, prod.stderr
    stats = json.loads(prod.stdout.strip().splitlines()[-1])
    job = run_vad("run", extra_env={"VAD_JOB__BOUNDED": "true", "VAD_JOB__EMIT_SCORES": "true"}, timeout=600)
    assert job.returncode == 0, job.stderr[-5000:]
    return cfg, stats


def test_every_frame_is_scored_exactly_as_offline(job_run, ped2):
    """Streaming scores equal in-process scores of the same clip: same features (as the wire rounds
    them: float16 by default), same windows, same model; cameras scored in shared batches do not leak
    into each other."""
    cfg, stats = job_run
    scores = read_kafka_scores(cfg, timeout_s=20, expect=stats["sent"] * 2)
    for cam, clip in {CAMERA: CLIP, **OTHER}.items():
        got = sorted((s.frame_index, s.score) for s in scores if s.camera_id == cam)
        assert [f for f, _ in got] == list(range(stats["sent"] if cam == CAMERA else len(got)))
        exact = clip_features(ped2 / "test" / f"{clip}.mp4", cfg.edge)
        grids = {clip: np.stack([wire_values(g, cfg.edge.wire_precision) for g in exact])}
        model = cfg.resolve(cfg.job.model_path)
        offline, _cells = score_clips(model, grids, ModelCard.load(card_path(model)).window)[clip]
        assert len(offline) == len(got)
        np.testing.assert_allclose([v for _, v in got], offline, rtol=1e-5, atol=1e-5)


def test_anomalous_clip_yields_an_event_over_the_labelled_interval(job_run, ped2_labels):
    cfg, _ = job_run
    kafka_events = read_kafka_events(cfg, timeout_s=20)
    redis_events = read_redis_events(cfg)
    ((lo, hi),) = ped2_labels[CLIP]["anomalous_frames"]
    lo, hi = lo - 1, hi - 1  # labels are 1-based; frame_index is 0-based

    def overlapping(events):
        closed = [e for e in events if e.camera_id == CAMERA and e.phase == "close"]
        return {e.event_id for e in closed if e.start_frame <= hi and e.end_frame >= lo}

    hits = overlapping(kafka_events)
    assert hits, f"no event overlaps frames {lo}-{hi}: {[(e.phase, e.start_frame) for e in kafka_events]}"
    assert hits == overlapping(redis_events)
    # one event per episode: every OPEN has exactly one CLOSE, ids never repeat a phase/seq
    keys = [(e.event_id, e.seq) for e in kafka_events]
    assert len(keys) == len(set(keys))
    opens = sorted(e.event_id for e in kafka_events if e.phase == "open")
    closes = sorted(e.event_id for e in kafka_events if e.phase == "close")
    assert opens == closes


def test_events_are_keyed_by_camera_each_in_its_keys_partition_in_order(job_run):
    """Every event record's key is its camera id, and its partition the key's hash (Kafka's default
    partitioner, what a topic co-partitioned by camera uses): a camera's events share one partition
    whatever the job's parallelism, in the order they happened."""
    cfg, _ = job_run
    consumer = make_consumer(cfg.kafka, cfg.kafka.topics.events, consumer_timeout_ms=5000)
    try:
        records = list(consumer)  # to the end: the job has finished, the topic is complete
    finally:
        consumer.close()
    assert records
    by_camera: dict[str, list] = {}
    for r in records:
        e = Event.parse(r.value)
        assert r.key == e.camera_id.encode(), (r.key, e.camera_id)
        by_camera.setdefault(e.camera_id, []).append((r.partition, r.offset, e))
    assert CAMERA in by_camera
    for cam, rows in by_camera.items():
        assert {p for p, _, _ in rows} == {(murmur2(cam.encode()) & 0x7FFFFFFF) % cfg.kafka.topics.partitions}, cam
        in_log = [(e.ts_ms, e.seq) for _, _, e in sorted(rows, key=lambda row: row[1])]
        assert in_log == sorted(in_log), cam


def test_malformed_record_goes_to_dead_letter_with_reason(job_run):
    cfg, _ = job_run
    dead = read_kafka_dead_letters(cfg, timeout_s=20, expect=1 + MISSET_FRAMES)
    broken = [d for d in dead if d.camera_id != MISSET]
    assert len(broken) == 1
    assert broken[0].reason == "truncated" and broken[0].size == len(b"VADF\x01 not a record")


def test_an_edge_with_other_feature_settings_than_the_models_is_dead_lettered_not_scored(job_run):
    """Its features look plausible and would score wrongly: every record says which settings made it."""
    cfg, _ = job_run
    dead = [d for d in read_kafka_dead_letters(cfg, timeout_s=20, expect=1 + MISSET_FRAMES) if d.camera_id == MISSET]
    assert len(dead) == MISSET_FRAMES and {d.reason for d in dead} == {"edge_settings_mismatch"}
    assert "flow_gate=4.0" in dead[0].detail  # the model's setting, for the operator to match
    assert not [s for s in read_kafka_scores(cfg, timeout_s=10) if s.camera_id == MISSET]


def test_vad_dead_letters_names_the_misset_camera_and_its_models_settings(job_run, run_vad):
    """After the run (job_run), so the topic holds the truncated record's and the mis-set edge's."""
    res = run_vad("dead-letters", "--since", "1h", "--json", timeout=120)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    groups = {(g["camera_id"], g["reason"]): g for g in summary["groups"]}
    assert summary["complete"] and summary["records"] == 1 + MISSET_FRAMES, summary
    assert set(groups) == {("", "truncated"), (MISSET, "edge_settings_mismatch")}, groups
    misset = groups[(MISSET, "edge_settings_mismatch")]
    assert misset["count"] == MISSET_FRAMES and "flow_gate=4.0" in misset["detail"]
    assert misset["first_seen_ms"] <= misset["last_seen_ms"]
    # The table, one camera; and nothing in a window that starts after the run.
    table = run_vad("dead-letters", "--camera", MISSET, timeout=120)
    assert table.returncode == 0, table.stderr
    rows = table.stdout.splitlines()
    assert rows[0].split()[:3] == ["camera", "reason", "count"], rows
    assert rows[1].split()[:3] == [MISSET, "edge_settings_mismatch", str(MISSET_FRAMES)], rows
    assert rows[-1].startswith(f"{MISSET_FRAMES} dead letters since"), rows
    later = run_vad("dead-letters", "--since", "2099-01-01T00:00:00", timeout=120)
    assert later.returncode == 0 and later.stdout.startswith("no dead letters since 2099-01-01 00:00:00Z"), later
    missing = run_vad("dead-letters", extra_env={"VAD_KAFKA__TOPICS__DEAD_LETTER": "no-such-dlq"}, timeout=120)
    assert missing.returncode == 1 and "no topic no-such-dlq (kafka.topics.dead_letter)" in missing.stderr, missing
