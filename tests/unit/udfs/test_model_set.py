"""Per-camera models: the registry's newest version per view, swapped in while the operator runs,
one ONNX call per model in a batch, and events that name the version that scored them."""

from __future__ import annotations

import json
import shutil

import pytest
from test_score_detect import _Runtime, rec, run

from models.registry import publish
from udfs.model_set import ModelSet
from udfs.score_detect import ScoreAndDetect
from vad.config import REPO_ROOT, CameraConfig, DetectConfig

DEFAULT = REPO_ROOT / "models" / "default"
DETECT = DetectConfig(merge_gap_s=0, threshold=1.0, ema_alpha=1.0, min_duration_s=0, update_every_s=100)
CAMERAS = {"door": CameraConfig(view="lobby"), "hall": CameraConfig()}


def _model(tmp_path, name: str, **card_fields):
    d = tmp_path / name
    d.mkdir()
    shutil.copy2(DEFAULT / "model.onnx", d / "model.onnx")
    card = json.loads((DEFAULT / "card.json").read_text())
    (d / "card.json").write_text(json.dumps({**card, **card_fields}))
    return d


def _set(reg, refresh_s=30.0) -> ModelSet:
    return ModelSet(DEFAULT / "model.onnx", DETECT, CAMERAS, reg, {"door": "lobby"}, refresh_s)


def test_each_camera_gets_its_views_newest_version(tmp_path):
    reg = tmp_path / "reg"
    publish(DEFAULT, reg, "lobby", "1")
    publish(DEFAULT, reg, "lobby", "2")
    models = _set(reg)
    assert models.for_camera("door").label == "lobby/2"
    default_version = json.loads((DEFAULT / "card.json").read_text())["model_version"]
    assert models.for_camera("hall").label == default_version == models.for_camera("unlisted").label


def test_a_view_without_a_version_is_refused_at_open(tmp_path):
    with pytest.raises(ValueError, match="no version of view 'lobby'"):
        _set(tmp_path / "empty")


def test_a_new_version_is_picked_up_when_due_and_a_broken_one_is_refused_once(tmp_path):
    reg = tmp_path / "reg"
    publish(DEFAULT, reg, "lobby", "1")
    models = _set(reg, refresh_s=10)
    t = models._next_refresh
    publish(DEFAULT, reg, "lobby", "2")
    assert models.refresh(t - 1) == [] and models.for_camera("door").label == "lobby/1"
    assert models.refresh(t) == ["lobby/2"] and models.for_camera("door").label == "lobby/2"
    publish(_model(tmp_path, "broken", channels=99), reg, "lobby", "3")
    assert models.refresh(t + 10) == [] and models.for_camera("door").label == "lobby/2"
    assert len(models.refused) == 1 and models.refresh(t + 20) == [] and len(models.refused) == 1
    publish(DEFAULT, reg, "lobby", "4")
    assert models.refresh(t + 30) == ["lobby/4"] and len(models.refused) == 1


def test_a_batch_is_scored_once_per_model_and_events_name_the_version(tmp_path, monkeypatch):
    reg = tmp_path / "reg"
    publish(DEFAULT, reg, "lobby", "7")
    op = ScoreAndDetect(str(DEFAULT / "model.onnx"), DETECT, 5000, 3600, True, cameras=CAMERAS, registry=str(reg))
    op.open(_Runtime())
    calls = []
    for m in op.models.models():
        real = m.scorer.score
        monkeypatch.setattr(m.scorer, "score", lambda w, real=real, label=m.label: calls.append(label) or real(w))
    records = [rec(cam, i, 50.0) for i in range(4) for cam in ("door", "hall")]
    _, events, _ = run(op, records, flush=False)
    assert sorted(calls) == sorted(["lobby/7", op.models.default.label])  # one call each
    versions = {e["camera_id"]: e["model_version"] for e in events if e["phase"] == "open"}
    assert versions == {"door": "lobby/7", "hall": op.models.default.label}


def test_a_swap_keeps_the_cameras_open_episode(tmp_path):
    reg = tmp_path / "reg"
    publish(DEFAULT, reg, "lobby", "1")
    op = ScoreAndDetect(str(DEFAULT / "model.onnx"), DETECT, 5000, 3600, True, cameras=CAMERAS, registry=str(reg))
    op.open(_Runtime())
    _, first, _ = run(op, [rec("door", i, 50.0) for i in range(3)], flush=False)
    publish(DEFAULT, reg, "lobby", "2")
    op.models._next_refresh = 0  # due now
    _, second, _ = run(op, [rec("door", i, 50.0) for i in range(3, 6)] + [rec("door", 6, 0.0)], flush=False)
    opened = [e for e in first if e["phase"] == "open"]
    closed = [e for e in second if e["phase"] == "close"]
    assert len(opened) == 1 and opened[0]["model_version"] == "lobby/1"
    assert [e["phase"] for e in second if e["phase"] == "open"] == []  # no second episode
    assert closed[0]["event_id"] == opened[0]["event_id"] and closed[0]["model_version"] == "lobby/2"
