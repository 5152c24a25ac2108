"""Model card versions and the threshold rule: explicit threshold, else the tail model at the target
rate, else (null target, or a card from before the tail model) the calibration quantile."""

from __future__ import annotations

import json
import logging

import pytest

from models.card import CARD_FORMAT, ModelCard
from vad.config import REPO_ROOT, CameraConfig, ConfigError, DetectConfig, load_config
from vad.detect import EpisodeDetector

DEFAULT_CARD = REPO_ROOT / "models" / "default" / "card.json"


def _format1(tmp_path):
    """The default card as the format before the tail model wrote it."""
    raw = json.loads(DEFAULT_CARD.read_text())
    raw.pop("card_format")
    raw.pop("dwell")
    raw["calibration"].pop("tail")
    p = tmp_path / "card.json"
    p.write_text(json.dumps(raw))
    return p


def test_the_shipped_card_is_the_current_format_with_a_tail_model():
    card = ModelCard.load(DEFAULT_CARD)
    assert card.card_format == CARD_FORMAT == 3 and card.calibration.tail is not None
    assert card.dwell is not None and [len(card.dwell.longest_s), len(card.dwell.longest_s[0])] == list(card.grid)
    tail = card.calibration.tail
    d = DetectConfig()
    # Fitted with the detector settings the job runs by default.
    assert (tail.ema_alpha, tail.min_duration_s, tail.merge_gap_s, tail.cooldown_s) == (
        d.ema_alpha,
        d.min_duration_s,
        d.merge_gap_s,
        d.cooldown_s,
    )
    assert card.detection_threshold(d) == pytest.approx(tail.threshold(d.target_false_alarms_per_hour))


def test_an_old_card_loads_and_falls_back_to_its_quantile(tmp_path, caplog):
    card = ModelCard.load(_format1(tmp_path))
    assert card.card_format == 1 and card.calibration.tail is None
    with caplog.at_level(logging.WARNING, logger="models.card"):
        thr = card.detection_threshold(DetectConfig(target_false_alarms_per_hour=5.0))
    assert thr == card.calibration.frame_score_quantiles["0.999"]
    assert "no tail model" in caplog.text


def test_the_rule_explicit_threshold_then_target_then_quantile():
    card = ModelCard.load(DEFAULT_CARD)
    q = card.calibration.frame_score_quantiles
    assert card.detection_threshold(DetectConfig(threshold=3.5, target_false_alarms_per_hour=1.0)) == 3.5
    assert card.detection_threshold(DetectConfig(target_false_alarms_per_hour=None)) == q["0.999"]
    q99 = DetectConfig(target_false_alarms_per_hour=None, calibration_quantile="0.99")
    assert card.detection_threshold(q99) == q["0.99"]
    rare, often = (card.detection_threshold(DetectConfig(target_false_alarms_per_hour=r)) for r in (0.5, 50.0))
    assert rare > often


def test_a_detector_setting_unlike_the_tails_is_warned_about(caplog):
    card = ModelCard.load(DEFAULT_CARD)
    with caplog.at_level(logging.WARNING, logger="models.card"):
        card.detection_threshold(DetectConfig(min_duration_s=1.0))
    assert "detect.min_duration_s differ" in caplog.text


def test_sensitivity_still_scales_the_cards_threshold():
    card = ModelCard.load(DEFAULT_CARD)
    thr = card.detection_threshold(DetectConfig())
    det = EpisodeDetector(DetectConfig(), thr, cameras={"gate": CameraConfig(sensitivity=2.0)})
    assert det.threshold_for("gate") == pytest.approx(thr / 2) and det.threshold_for("other") == thr


def test_a_card_of_a_future_format_is_refused(tmp_path):
    raw = json.loads(DEFAULT_CARD.read_text())
    p = tmp_path / "card.json"
    p.write_text(json.dumps({**raw, "card_format": CARD_FORMAT + 1}))
    with pytest.raises(ValueError, match="card_format"):
        ModelCard.load(p)


def test_the_card_round_trips(tmp_path):
    card = ModelCard.load(DEFAULT_CARD)
    card.save(tmp_path / "card.json")
    assert ModelCard.load(tmp_path / "card.json") == card


@pytest.mark.parametrize("value", ["0", "-1", "3601", "often"])
def test_a_bad_target_rate_is_refused_naming_its_field(tmp_path, value):
    p = tmp_path / "c.yaml"
    p.write_text(f"detect:\n  target_false_alarms_per_hour: {value}\n")
    with pytest.raises(ConfigError, match=r"detect\.target_false_alarms_per_hour"):
        load_config(p, env={})


def test_the_target_rate_from_the_environment_and_null():
    def target(**env):
        return load_config(env=env).detect.target_false_alarms_per_hour

    assert target(VAD_DETECT__TARGET_FALSE_ALARMS_PER_HOUR="2.5") == 2.5
    assert target(VAD_DETECT__TARGET_FALSE_ALARMS_PER_HOUR="null") is None
    assert target() == 10.0
