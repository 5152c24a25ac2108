"""The fused scoring operator's logic with the Flink runtime replaced by in-memory fakes (the real
runtime is exercised by the integration tests)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from flink_fakes import MapState, Timers, ValueState
from pyflink.common import Row
from pyflink.datastream import TimeDomain

from models.card import ModelCard
from udfs.batches import pack_batch
from udfs.score_detect import DEAD_LETTER, END_OF_INPUT, EVENTS, SCORES, ScoreAndDetect
from vad.config import REPO_ROOT, DetectConfig, EdgeConfig
from vad.dead_letter_reasons import DEAD_LETTER_REASONS
from vad.edge.digest import settings_digest
from vad.records import DeadLetter, Event, ScoreLine
from vad.schema import FLAG_GAP, N_CHANNELS, FrameFeatures

MODEL = str(REPO_ROOT / "models" / "default" / "model.onnx")


class _Runtime:
    def get_state(self, _d):
        return ValueState()

    def get_map_state(self, _d):
        return MapState()

    def get_metrics_group(self):
        # What PyFlink gives with python.metric.enabled: false; the operator counts into no-ops.
        return None


SHARD_KEY = 7


class _Ctx:
    def __init__(self, ts=None, domain=TimeDomain.EVENT_TIME):
        self.timers, self.ts, self.domain = Timers(), ts, domain

    def get_current_key(self):
        return SHARD_KEY

    def timer_service(self):
        return self.timers

    def timestamp(self):
        return self.ts

    def time_domain(self):
        return self.domain


def rec(cam, i, value=0.0, flags=0) -> bytes:
    f = np.full((12, 18, N_CHANNELS), value, np.float32)
    return FrameFeatures(cam, i, 1_800_000_000_000 + 100 * i, 360, 240, f, flags).encode()


def operator(cameras=None, **detect) -> ScoreAndDetect:
    cfg = DetectConfig(merge_gap_s=0, threshold=1.0, ema_alpha=1.0, min_duration_s=0, **detect)
    op = ScoreAndDetect(MODEL, cfg, 5000, 3600, emit_scores=True, cameras=cameras)
    op.open(_Runtime())
    return op


def run(op, records, flush=True, batch=100):
    """Feeds the records in batches of `batch` (as BatchRecords does), then the final watermark."""
    out = []
    for i in range(0, len(records), batch):
        out += list(op.process_element(pack_batch(records[i : i + batch]), _Ctx(ts=1)))
    if flush:
        out += list(op.on_timer(END_OF_INPUT, _Ctx(domain=TimeDomain.EVENT_TIME)))
    sides = [o for o in out if isinstance(o, tuple)]
    lines = [line for t, v in sides if t is SCORES for line in v.split("\n")]
    assert all(ScoreLine.parse(line).to_json() == line for line in lines)
    scores = [json.loads(line) for line in lines]
    dead = [json.loads(v) for t, v in sides if t is DEAD_LETTER]
    assert all(DeadLetter.parse(v).to_json() == v for t, v in sides if t is DEAD_LETTER)
    kafka = [v for t, v in sides if t is EVENTS]
    # The Redis writer's copy: the same string per batch, under the shard's key.
    assert [(r[0], r[1]) for r in out if isinstance(r, Row)] == [(SHARD_KEY, v) for v in kafka]
    lines = [line for v in kafka for line in v.split("\n")]
    assert all(Event.parse(line).to_json() == line for line in lines)
    events = [json.loads(line) for line in lines]
    return scores, events, dead


def test_a_batch_is_scored_at_once_and_its_scores_leave_as_one_string():
    op = operator()
    out = list(op.process_element(pack_batch([rec("a", 0), rec("b", 0), rec("a", 1)]), _Ctx(ts=1)))
    sides = [v for t, v in (o for o in out if isinstance(o, tuple)) if t is SCORES]
    assert len(sides) == 1
    frames = [(s["camera_id"], s["frame_index"]) for s in map(json.loads, sides[0].split("\n"))]
    assert sorted(frames) == [("a", 0), ("a", 1), ("b", 0)]
    # the camera's window carries over to the next batch: frame 1 again is a duplicate
    scores, _, _ = run(op, [rec("a", 1), rec("a", 2)])
    assert [s["frame_index"] for s in scores] == [2]


def test_out_of_order_within_a_batch_is_reordered_and_late_frames_dropped():
    op = operator()
    scores, _, _ = run(op, [rec("a", 1), rec("a", 0), rec("a", 2)])
    assert [s["frame_index"] for s in scores] == [0, 1, 2]
    scores, _, _ = run(op, [rec("a", 2), rec("a", 1), rec("a", 3)])  # 1 and 2 were scored already
    assert [s["frame_index"] for s in scores] == [3]


def test_cameras_in_one_batch_do_not_leak_into_each_other():
    alone = operator()
    a_alone, _, _ = run(alone, [rec("a", i, 0.1 * i) for i in range(6)])
    mixed = operator()
    both = [r for i in range(6) for r in (rec("a", i, 0.1 * i), rec("b", i, 5.0))]
    scores, _, _ = run(mixed, both)
    a_mixed = [s for s in scores if s["camera_id"] == "a"]
    assert [s["score"] for s in a_mixed] == [s["score"] for s in a_alone]


def test_malformed_records_are_dead_lettered_and_the_rest_scored():
    op = operator()
    bad = rec("a", 1, 0.5)[:-4] + b"\x00\x00\xc0\x7f"  # NaN in the last cell
    scores, _, dead = run(op, [rec("a", 0), bad, b"garbage", rec("a", 2)])
    assert [s["frame_index"] for s in scores] == [0, 2]
    assert sorted(d["reason"] for d in dead) == ["non_finite", "truncated"]


class _Counters:
    """A metric group that keeps each counter's total by its group path (``reason.truncated.dead_letters``)."""

    def __init__(self, totals=None, path=()):
        self.totals, self.path = ({} if totals is None else totals), path

    def add_group(self, name, extra=None):
        return _Counters(self.totals, (*self.path, name) if extra is None else (*self.path, name, extra))

    def counter(self, name):
        key = ".".join((*self.path[1:], name))  # without the `vad` group, as the REST API's ids after it
        totals = self.totals

        class Counter:
            def inc(self, n=1):
                totals[key] = totals.get(key, 0) + n

            def update(self, _value):
                pass

        return Counter()

    def distribution(self, _name):
        return self.counter("_")

    def gauge(self, _name, _obj):
        pass


def test_dead_letters_are_counted_per_reason_and_every_reason_is_announced_at_zero():
    totals = {}

    class Runtime(_Runtime):
        def get_metrics_group(self):
            return _Counters(totals)

    op = ScoreAndDetect(MODEL, DetectConfig(threshold=1.0), 5000, 3600, emit_scores=False)
    op.open(Runtime())
    small = FrameFeatures("a", 1, 1_800_000_000_100, 360, 240, np.ones((6, 9, N_CHANNELS), np.float32)).encode()
    _, _, dead = run(op, [rec("a", 0), small, b"garbage", b"garbage!"])
    assert sorted(d["reason"] for d in dead) == ["grid_mismatch", "truncated", "truncated"]
    assert totals["vad_dead_letters"] == 3
    by_reason = {k.split(".")[1]: v for k, v in totals.items() if k.startswith("reason.")}
    assert by_reason == {r: {"truncated": 2, "grid_mismatch": 1}.get(r, 0) for r in DEAD_LETTER_REASONS}


def test_a_grid_the_model_cannot_score_is_dead_lettered_not_a_crash():
    op = operator()
    small = FrameFeatures("a", 1, 1_800_000_000_100, 360, 240, np.ones((6, 9, N_CHANNELS), np.float32)).encode()
    scores, _, dead = run(op, [rec("a", 0), small, rec("a", 2)])
    assert [s["frame_index"] for s in scores] == [0, 2]
    assert [d["reason"] for d in dead] == ["grid_mismatch"]


@pytest.mark.parametrize("field, value", [("feature_schema_version", 2), ("channels", N_CHANNELS + 1)])
def test_records_of_another_feature_layout_than_the_models_are_dead_lettered(tmp_path, field, value):
    import shutil

    model = tmp_path / "model.onnx"
    shutil.copy(MODEL, model)
    card = json.loads((REPO_ROOT / "models" / "default" / "card.json").read_text())
    (tmp_path / "card.json").write_text(json.dumps({**card, field: value}))
    cfg = DetectConfig(merge_gap_s=0, threshold=1.0, ema_alpha=1.0, min_duration_s=0)
    op = ScoreAndDetect(str(model), cfg, 5000, 3600, emit_scores=True)
    op.open(_Runtime())
    scores, events, dead = run(op, [rec("a", 0, 50.0), b"garbage", rec("a", 1, 50.0)])
    assert scores == [] and events == []
    assert [d["reason"] for d in dead] == ["layout_mismatch", "truncated", "layout_mismatch"]
    assert "the model scores layout" in dead[0]["detail"] and dead[0]["camera_id"] == "a"


def test_frames_of_another_size_than_the_models_are_dead_lettered(tmp_path):
    """The card's training_data.frame_size (vad train records it): speeds are in those pixels."""
    import shutil

    model = tmp_path / "model.onnx"
    shutil.copy(MODEL, model)
    card = json.loads((REPO_ROOT / "models" / "default" / "card.json").read_text())
    card["training_data"] = {**card["training_data"], "frame_size": [238, 158]}
    (tmp_path / "card.json").write_text(json.dumps(card))
    cfg = DetectConfig(merge_gap_s=0, threshold=1.0, ema_alpha=1.0, min_duration_s=0)
    op = ScoreAndDetect(str(model), cfg, 5000, 3600, emit_scores=True)
    op.open(_Runtime())
    small = FrameFeatures("b", 0, 1_800_000_000_000, 238, 158, np.zeros((12, 18, N_CHANNELS), np.float32)).encode()
    scores, _, dead = run(op, [rec("a", 0), small, rec("a", 1)])  # rec: 360x240 frames
    assert [(s["camera_id"], s["frame_index"]) for s in scores] == [("b", 0)]
    assert [d["reason"] for d in dead] == ["frame_size_mismatch", "frame_size_mismatch"]
    assert "frames 360x240, the model was trained on 238x158" in dead[0]["detail"] and dead[0]["camera_id"] == "a"
    # A card without it (the default model's, from before it was recorded) checks nothing.
    scores, _, dead = run(operator(), [rec("a", 0), small])
    assert len(scores) == 2 and dead == []


def test_records_of_other_edge_settings_than_the_models_are_dead_lettered():
    """The record's edge digest against the card's edge settings; a record that states none (schema
    v3, or a tool that does not know its edge) is scored."""
    card = ModelCard.load(REPO_ROOT / "models" / "default" / "card.json")
    full = card.edge_config(EdgeConfig()).model_copy(update={"flow_scale": 1.0})
    zeros = np.zeros((12, 18, N_CHANNELS), np.float32)

    def stated(cam, i, digest):
        return FrameFeatures(cam, i, 1_800_000_000_000 + 100 * i, 360, 240, zeros, edge_digest=digest).encode()

    records = [
        stated("a", 0, card.edge_digest),
        stated("b", 0, settings_digest(full)),
        stated("c", 0, 0),
        FrameFeatures("d", 0, 1_800_000_000_000, 360, 240, zeros, schema_version=3).encode(),
    ]
    scores, _, dead = run(operator(), records)
    assert sorted(s["camera_id"] for s in scores) == ["a", "c", "d"]
    assert [(d["reason"], d["camera_id"]) for d in dead] == [("edge_settings_mismatch", "b")]
    assert f"edge digest {settings_digest(full)}, the model" in dead[0]["detail"]
    assert "flow_scale=0.5" in dead[0]["detail"]  # the card's settings, for the operator to match


def test_a_batchs_events_leave_once_for_kafka_and_once_for_redis_under_the_shard_key():
    op = operator(update_every_s=100)
    out = list(op.process_element(pack_batch([rec("a", 0, 50.0), rec("b", 0, 50.0)]), _Ctx(ts=1)))
    kafka = [v for t, v in (o for o in out if isinstance(o, tuple)) if t is EVENTS]
    redis_rows = [o for o in out if isinstance(o, Row)]
    assert len(kafka) == 1 and len(redis_rows) == 1 and redis_rows[0][0] == SHARD_KEY
    assert redis_rows[0][1] == kafka[0]
    assert sorted(json.loads(line)["camera_id"] for line in kafka[0].split("\n")) == ["a", "b"]


def test_score_lines_are_json_with_the_exact_float_score():
    op = operator()
    scores, _, _ = run(op, [rec("site-1/cam.2:x", 0, 0.3), rec("b", 0, 0.7)])
    assert {s["camera_id"] for s in scores} == {"site-1/cam.2:x", "b"}
    frame, _ = op.models.default.scorer.score(np.full((1, 1, 12, 18, N_CHANNELS), 0.7, np.float32))
    assert [s["score"] for s in scores if s["camera_id"] == "b"] == [float(frame[0])]


def test_episode_lifecycle_gap_and_end_of_stream_close():
    op = operator(update_every_s=100, cooldown_s=0)
    calm, hot = 0.0, 50.0
    records = [
        rec("a", 0, calm),
        rec("a", 1, hot),
        rec("a", 2, hot),
        rec("a", 3, hot, flags=FLAG_GAP),
        rec("a", 4, hot),
    ]
    _, events, _ = run(op, records)
    phases = [(e["phase"], e["start_frame"], e.get("close_reason")) for e in events]
    assert phases[0] == ("open", 1, None) and phases[1] == ("close", 1, "gap")
    # after the gap a new episode starts; the end of the stream (max watermark) closes it as idle
    assert phases[2][0] == "open" and phases[-1] == ("close", phases[2][1], "idle")


@pytest.mark.parametrize("masked", [True, False])
def test_region_mask_applies_per_camera(masked):
    from vad.config import load_config

    # The camera's entry as the job gets it: the config's cameras section, mask checked against the grid.
    cells = [[r, c] for r in range(12) for c in range(18)]
    cams = load_config(env={"VAD_CAMERAS__A__MASK": str(cells)}).cameras if masked else {}
    op = operator(cameras=cams)
    _, events, _ = run(op, [rec("a", i, 50.0) for i in range(3)])
    assert (events == []) is masked


def test_opening_without_the_beam_sampler_thread_takes_it_out_of_the_worker():
    from apache_beam.runners.worker import statesampler

    from udfs.beam_sampler import _start, restore_sampling_thread

    cfg = DetectConfig(merge_gap_s=0, threshold=1.0)
    try:
        ScoreAndDetect(MODEL, cfg, 5000, 3600, emit_scores=False).open(_Runtime())
        assert statesampler.StateSampler.start is not _start
        ScoreAndDetect(MODEL, cfg, 5000, 3600, emit_scores=False, beam_sampling_thread=False).open(_Runtime())
        assert statesampler.StateSampler.start is _start
    finally:
        restore_sampling_thread()


def test_a_loitering_stay_whose_zone_left_the_config_is_closed_after_a_restore():
    from vad.config import load_config
    from vad.dwell import FG

    def fg_rec(i):
        f = np.zeros((12, 18, N_CHANNELS), np.float32)
        f[2, 3, FG] = 0.2
        return FrameFeatures("a", i, 1_800_000_000_000 + 100 * i, 360, 240, f).encode()

    cams = load_config(env={"VAD_CAMERAS": "{a: {zones: {door: {cells: [[2, 3]], min_dwell_s: 1}}}}"}).cameras
    before = operator(cameras=cams)
    _, events, _ = run(before, [fg_rec(i) for i in range(20)], flush=False)
    assert [(e["zone"], e["phase"]) for e in events] == [("door", "open")]
    # The same keyed state in a job started without the zone (a savepoint restored with edited zones).
    after = operator()
    after.cameras = before.cameras
    _, later, _ = run(after, [fg_rec(i) for i in range(20, 25)], flush=False)
    assert [(e["event_id"], e["phase"], e["close_reason"]) for e in later] == [
        (events[0]["event_id"], "close", "config")
    ]
    # Once closed, the camera carries no dwell state any more: its next records add nothing.
    assert run(after, [fg_rec(i) for i in range(25, 30)])[1] == []
