"""`vad run` (the job's main) refuses a model its workers could not score with, before any JVM or
Flink job exists: one line naming the config field, exit code 2."""

from __future__ import annotations

import json
import shutil

import pytest

from jobs.anomaly_job import main
from jobs.model_check import check_model, edge_settings_warnings
from models.card import ModelCard
from vad.config import REPO_ROOT, ConfigError, load_config
from vad.schema import FEATURE_LAYOUT_VERSION

DEFAULT = REPO_ROOT / "models" / "default"


def _main_refuses(monkeypatch, capsys, **env) -> str:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(SystemExit) as e:
        main([])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    return err.strip()


def test_the_default_model_passes():
    check_model(load_config(env={}))


def test_a_missing_model_stops_main_with_one_line_naming_the_field(monkeypatch, capsys, tmp_path):
    line = _main_refuses(monkeypatch, capsys, VAD_JOB__MODEL_PATH=str(tmp_path / "gone.onnx"))
    assert line == f"job.model_path: {tmp_path / 'gone.onnx'}: no such file"


def test_a_corrupt_model_stops_main(monkeypatch, capsys, tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"\x08\x07 not onnx at all" * 100)
    shutil.copy(DEFAULT / "card.json", tmp_path / "card.json")
    line = _main_refuses(monkeypatch, capsys, VAD_JOB__MODEL_PATH=str(tmp_path / "model.onnx"))
    assert line.startswith("job.model_path: ") and "not a loadable ONNX model" in line


def test_a_card_of_another_feature_schema_version_stops_main(monkeypatch, capsys, tmp_path):
    shutil.copy(DEFAULT / "model.onnx", tmp_path / "model.onnx")
    card = json.loads((DEFAULT / "card.json").read_text())
    (tmp_path / "card.json").write_text(json.dumps({**card, "feature_schema_version": FEATURE_LAYOUT_VERSION + 1}))
    line = _main_refuses(monkeypatch, capsys, VAD_JOB__MODEL_PATH=str(tmp_path / "model.onnx"))
    assert line.startswith("job.model_path: ") and "feature_schema_version is" in line


def test_a_calibration_quantile_the_card_lacks_names_its_field(tmp_path):
    shutil.copy(DEFAULT / "model.onnx", tmp_path / "model.onnx")
    card = json.loads((DEFAULT / "card.json").read_text())
    card["calibration"]["frame_score_quantiles"].pop("0.999")
    (tmp_path / "card.json").write_text(json.dumps(card))
    model = str(tmp_path / "model.onnx")
    # The card's tail model sets the threshold by default: the quantile is not needed then.
    check_model(load_config(env={"VAD_JOB__MODEL_PATH": model}))
    cfg = load_config(env={"VAD_JOB__MODEL_PATH": model, "VAD_DETECT__TARGET_FALSE_ALARMS_PER_HOUR": "null"})
    with pytest.raises(ConfigError, match=r"^detect.calibration_quantile: 0.999 is not in the model card"):
        check_model(cfg)
    # A fixed threshold needs no calibration from the card.
    check_model(load_config(env={"VAD_JOB__MODEL_PATH": str(tmp_path / "model.onnx"), "VAD_DETECT__THRESHOLD": "2"}))


def test_a_view_without_a_good_version_in_the_registry_names_the_camera(tmp_path):
    from models.registry import publish

    reg = tmp_path / "reg"
    env = {"VAD_JOB__MODEL_REGISTRY": str(reg), "VAD_CAMERAS": '{"door": {"view": "lobby"}}'}
    cfg = load_config(env=env)
    with pytest.raises(ConfigError, match=r"^cameras\.door\.view: no version of view 'lobby'"):
        check_model(cfg)
    bad = tmp_path / "bad"
    bad.mkdir()
    shutil.copy(DEFAULT / "model.onnx", bad / "model.onnx")
    card = json.loads((DEFAULT / "card.json").read_text())
    (bad / "card.json").write_text(json.dumps({**card, "channels": 99}))
    publish(bad, reg, "lobby", "1")
    with pytest.raises(ConfigError, match=r"^job\.model_registry: lobby/1: .*channels is 99"):
        check_model(cfg)
    publish(DEFAULT, reg, "lobby", "2")
    check_model(cfg)


def test_learned_loitering_needs_a_card_with_normal_dwell_times(tmp_path):
    shutil.copy(DEFAULT / "model.onnx", tmp_path / "model.onnx")
    card = json.loads((DEFAULT / "card.json").read_text())
    assert card["dwell"]["longest_s"]  # the shipped card has them
    (tmp_path / "card.json").write_text(json.dumps({**card, "card_format": 2, "dwell": None}))
    cams = '{"gate": {"loitering": {"factor": 2}}, "lobby": {}}'
    cfg = load_config(env={"VAD_JOB__MODEL_PATH": str(tmp_path / "model.onnx"), "VAD_CAMERAS": cams})
    with pytest.raises(ConfigError, match=r"^cameras\.gate\.loitering: the model card of .* no normal dwell times"):
        check_model(cfg)
    check_model(load_config(env={"VAD_CAMERAS": cams}))


def test_cameras_whose_edge_settings_are_not_their_models_are_warned_about(tmp_path, caplog):
    from models.registry import publish

    assert edge_settings_warnings(load_config(env={})) == []
    cams = '{"door": {"flow_gate": 2}, "hall": {}, "gate": {"view": "wide"}}'
    reg = tmp_path / "reg"
    wide = tmp_path / "wide"
    wide.mkdir()
    shutil.copy(DEFAULT / "model.onnx", wide / "model.onnx")
    card = json.loads((DEFAULT / "card.json").read_text())
    (wide / "card.json").write_text(json.dumps({**card, "edge": {**card["edge"], "flow_scale": 1.0}}))
    publish(wide, reg, "wide", "1")
    cfg = load_config(env={"VAD_CAMERAS": cams, "VAD_JOB__MODEL_REGISTRY": str(reg)})
    lines = edge_settings_warnings(cfg)
    assert [line.split(":")[0] for line in lines] == ["cameras.door", "cameras.gate"]
    assert "flow_gate 2.0 (model: 4.0)" in lines[0] and "models/default/model.onnx" in lines[0]
    assert "flow_scale 0.5 (model: 1.0)" in lines[1] and "wide/1" in lines[1]
    assert edge_settings_warnings(cfg, ["hall"]) == []
    # The edge section itself, for cameras the config does not list; and the job's start says it.
    cfg = load_config(env={"VAD_EDGE__TARGET_FPS": "5"})
    with caplog.at_level("WARNING"):
        check_model(cfg)
    assert any(r.getMessage().startswith("edge: edge settings other than") for r in caplog.records)
    # A model that is not at hand (an edge's machine) is no warning, however the edge is set.
    away = load_config(env={"VAD_JOB__MODEL_PATH": str(tmp_path / "no.onnx"), "VAD_EDGE__TARGET_FPS": "5"})
    assert edge_settings_warnings(away) == [] and edge_settings_warnings(away, ["door"]) == []
    assert edge_settings_warnings(cfg)[0].startswith("edge: ")  # the same edge, with the model at hand
    # Cards the caller already loaded (check_model's) are used as they are, not read again.
    given = {None: (ModelCard.load(DEFAULT / "card.json"), "given")}
    assert "other than model given was trained with" in edge_settings_warnings(away, cards=given)[0]
