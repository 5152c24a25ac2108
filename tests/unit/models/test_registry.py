import shutil

import pytest

from models.registry import latest, publish, version_key, versions
from vad.config import REPO_ROOT

DEFAULT = REPO_ROOT / "models" / "default"


def test_versions_sort_by_their_numbers_not_as_text():
    names = ["10", "2", "v10", "v9", "20261206T0900", "20261205T1200"]
    assert sorted(names, key=version_key)[:2] == ["2", "10"]
    assert sorted(["v10", "v9"], key=version_key) == ["v9", "v10"]
    assert sorted(["20261206T0900", "20261205T1200"], key=version_key) == ["20261205T1200", "20261206T0900"]


def test_publish_then_latest_is_the_newest_complete_version(tmp_path):
    reg = tmp_path / "registry"
    publish(DEFAULT, reg, "walkway", "2")
    publish(DEFAULT, reg, "walkway", "10")
    # Not versions: a hidden folder (a publish under way) and a folder without its card.
    (reg / "walkway" / ".11.tmp").mkdir()
    shutil.copy2(DEFAULT / "model.onnx", reg / "walkway" / ".11.tmp" / "model.onnx")
    (reg / "walkway" / "12").mkdir()
    shutil.copy2(DEFAULT / "model.onnx", reg / "walkway" / "12" / "model.onnx")
    assert [v.version for v in versions(reg, "walkway")] == ["2", "10"]
    newest = latest(reg, "walkway")
    assert newest.label == "walkway/10" and newest.model_path == reg / "walkway" / "10" / "model.onnx"
    assert latest(reg, "lobby") is None


def test_a_published_version_never_changes_and_names_are_checked(tmp_path):
    reg = tmp_path / "registry"
    publish(DEFAULT, reg, "walkway", "1")
    with pytest.raises(FileExistsError, match="never changes"):
        publish(DEFAULT, reg, "walkway", "1")
    for view, version in (("../x", "1"), ("walkway", ".hidden"), ("walk way", "1"), ("walkway", "a/b")):
        with pytest.raises(ValueError, match="letters, digits"):
            publish(DEFAULT, reg, view, version)
    with pytest.raises(FileNotFoundError, match=r"needs model\.onnx"):
        publish(tmp_path, reg, "walkway", "2")
    assert [p.name for p in (reg / "walkway").iterdir()] == ["1"]  # nothing half-written left behind
