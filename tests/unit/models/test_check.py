"""The model check before a job starts: a model the job's workers could not score with is refused
with one line saying what is wrong, instead of a job that restarts for as long as it is deployed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from models.check import ModelError, check_model
from vad.config import REPO_ROOT
from vad.schema import FEATURE_LAYOUT_VERSION, N_CHANNELS

DEFAULT = REPO_ROOT / "models" / "default"


def _model(tmp_path: Path, card_change: dict | None = None, onnx: bytes | None = None) -> Path:
    """A copy of the shipped model, its card changed by `card_change` (a value None: key removed)."""
    path = tmp_path / "model.onnx"
    if onnx is None:
        shutil.copy(DEFAULT / "model.onnx", path)
    else:
        path.write_bytes(onnx)
    card = json.loads((DEFAULT / "card.json").read_text())
    for k, v in (card_change or {}).items():
        if v is None:
            card.pop(k)
        else:
            card[k] = v
    (tmp_path / "card.json").write_text(json.dumps(card))
    return path


def _refused(path: Path) -> str:
    with pytest.raises(ModelError) as e:
        check_model(path)
    msg = str(e.value)
    assert "\n" not in msg, msg
    return msg


def test_the_shipped_model_passes():
    card = check_model(DEFAULT / "model.onnx")
    assert card.feature_schema_version == FEATURE_LAYOUT_VERSION and card.channels == N_CHANNELS


def test_a_missing_model_file(tmp_path):
    assert _refused(tmp_path / "nowhere.onnx") == f"{tmp_path / 'nowhere.onnx'}: no such file"


def test_a_folder_is_not_a_model(tmp_path):
    assert _refused(tmp_path).endswith("no such file")


def test_a_file_of_random_bytes(tmp_path):
    path = _model(tmp_path, onnx=np.random.default_rng(0).bytes(4096))
    assert "not a loadable ONNX model" in _refused(path)


def test_a_missing_card(tmp_path):
    path = _model(tmp_path)
    (tmp_path / "card.json").unlink()
    assert _refused(path) == f"no model card card.json beside {path}"


def test_a_card_that_is_not_json(tmp_path):
    path = _model(tmp_path)
    (tmp_path / "card.json").write_text("{not json")
    assert "card.json: " in _refused(path)


@pytest.mark.parametrize(
    "change, names",
    [
        ({"window": 0}, "window: Input should be greater than or equal to 1"),
        ({"grid": "12x18"}, "grid: "),
        ({"calibration": None}, "calibration: Field required"),
        ({"surprise": 1}, "surprise: Extra inputs are not permitted"),
    ],
)
def test_a_card_with_a_bad_field_names_it(tmp_path, change, names):
    assert names in _refused(_model(tmp_path, change))


def test_a_card_of_another_feature_schema_version(tmp_path):
    path = _model(tmp_path, {"feature_schema_version": FEATURE_LAYOUT_VERSION + 1})
    msg = _refused(path)
    assert f"feature_schema_version is {FEATURE_LAYOUT_VERSION + 1}" in msg
    assert f"the records carry feature layout {FEATURE_LAYOUT_VERSION}" in msg


def test_a_card_of_another_channel_count(tmp_path):
    assert f"channels is {N_CHANNELS + 1}" in _refused(_model(tmp_path, {"channels": N_CHANNELS + 1}))


def test_a_card_whose_edge_settings_are_invalid_names_the_edge_field(tmp_path):
    edge = json.loads((DEFAULT / "card.json").read_text())["edge"]
    assert "edge.flow: " in _refused(_model(tmp_path, {"edge": {**edge, "flow": "magic"}}))


@pytest.mark.parametrize("size", [[360], [360, "240"], [0, 240], "360x240"])
def test_a_card_whose_frame_size_is_not_a_width_and_height(tmp_path, size):
    data = json.loads((DEFAULT / "card.json").read_text())["training_data"]
    msg = _refused(_model(tmp_path, {"training_data": {**data, "frame_size": size}}))
    assert "training_data.frame_size is" in msg and "not [width, height] in pixels" in msg
    check_model(_model(tmp_path, {"training_data": {**data, "frame_size": [360, 240]}}))


def test_a_card_whose_grid_is_not_its_edge_settings(tmp_path):
    edge = json.loads((DEFAULT / "card.json").read_text())["edge"]
    msg = _refused(_model(tmp_path, {"edge": {**edge, "grid_rows": 6}}))
    assert "grid is 12x18, but its edge settings make 6x18 grids" in msg


def test_a_card_whose_grid_is_not_the_models(tmp_path):
    edge = json.loads((DEFAULT / "card.json").read_text())["edge"]
    change = {"grid": [6, 9], "input_shape": ["batch", 1, 6, 9, N_CHANNELS], "edge": {**edge, "grid_rows": 6}}
    change["edge"]["grid_cols"] = 9
    assert "does not score a window of its card's shape [2, 1, 6, 9, 12]" in _refused(_model(tmp_path, change))


def test_a_card_whose_input_shape_is_not_its_window(tmp_path):
    msg = _refused(_model(tmp_path, {"input_shape": ["batch", 4, 12, 18, N_CHANNELS]}))
    assert "input_shape is ['batch', 4, 12, 18, 12]" in msg
