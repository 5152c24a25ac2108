"""`vad train` on a folder of real clips: progress on stderr, and a card with a held-out tail model."""

from __future__ import annotations

import re

from models.card import CARD_FORMAT, ModelCard
from models.train import train
from vad.config import DetectConfig, load_config


def test_train_reports_progress_on_stderr_and_writes_a_tail_model(ped2, tmp_path, capsys):
    data = tmp_path / "data"
    (data / "train").mkdir(parents=True)
    for name in ("Train001.mp4", "Train002.mp4", "Train003.mp4"):
        (data / "train" / name).symlink_to(ped2 / "train" / name)
    detect = DetectConfig(min_duration_s=0.3)
    card = train(data, tmp_path / "out", load_config(env={}).edge, detect=detect)
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    progress = [ln for ln in lines if ln.startswith("vad train [")]
    stages = [re.sub(r"^vad train \[\s*[\d.]+ s\] ", "", ln) for ln in progress]
    assert stages[:3] == [f"features: clips decoded {i}/3 clips" for i in (1, 2, 3)]
    assert stages[3] == "fit scalep"
    assert stages[4:7] == [f"calibration: clips held out and scored {i}/3 clips" for i in (1, 2, 3)]
    assert stages[7] == "tail fit" and stages[8].startswith("done: ")
    elapsed = [float(re.search(r"\[\s*([\d.]+) s\]", ln).group(1)) for ln in progress]
    assert elapsed == sorted(elapsed) and elapsed[-1] > 0
    assert "vad train [" not in captured.out
    saved = ModelCard.load(tmp_path / "out" / "card.json")
    assert saved == card and saved.card_format == CARD_FORMAT
    tail = saved.calibration.tail
    assert tail is not None and tail.min_duration_s == 0.3 and tail.clusters > 0
    # Three clips at 10 fps (120, 150, 150 frames): the hours of held-out video the rate is per.
    assert abs(tail.hours - 42.0 / 3600) < 0.5 / 3600
    assert "leave-one-clip-out" in saved.notes
    # The normal dwell times per cell, over the clips' event time (the learned loitering detector's).
    assert saved.dwell is not None and len(saved.dwell.longest_s) == saved.grid[0]
    assert abs(saved.dwell.seconds - 42.0) < 0.5


def test_train_refuses_clips_of_another_frame_size_and_records_the_size(ped2, tmp_path):
    """Speeds are in the decoded frame's pixels: clips of two sizes in one folder are refused, both named
    (edge.resize does not change that unit)."""
    import pytest

    ped1 = ped2.parent / "ucsd_ped1"
    data = tmp_path / "data"
    (data / "train").mkdir(parents=True)
    (data / "train" / "a.mp4").symlink_to(ped2 / "train" / "Train001.mp4")  # 360x240
    (data / "train" / "b.mp4").symlink_to(ped1 / "train" / "Train001.mp4")  # 238x158
    (data / "train" / "c.mp4").symlink_to(ped2 / "train" / "Train002.mp4")
    for env in ({}, {"VAD_EDGE__RESIZE": "[238, 158]"}):
        with pytest.raises(ValueError) as e:
            train(data, tmp_path / "out", load_config(env=env).edge)
        msg = str(e.value)
        assert "b.mp4: 238x158 frames, but" in msg and "a.mp4: 360x240;" in msg and "folder of its own" in msg
        assert not (tmp_path / "out" / "model.onnx").exists()
    (data / "train" / "b.mp4").unlink()
    card = train(data, tmp_path / "out", load_config(env={}).edge)
    assert card.training_data["clips"] == 2 and card.training_data["frame_size"] == [360, 240]
    # Evaluated on clips of another size, the model is refused the same way.
    from models.evaluate import evaluate

    (data / "test").mkdir()
    (data / "test" / "Test001.mp4").symlink_to(ped1 / "test" / "Test001.mp4")
    (data / "labels.json").write_text('{"fps": 10, "clips": {"Test001": {"frames": 200, "anomalous_frames": []}}}')
    with pytest.raises(ValueError, match=r"Test001.mp4: 238x158 frames, but the model was trained on 360x240"):
        evaluate(data, tmp_path / "out" / "model.onnx", load_config(env={}))
