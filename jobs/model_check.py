"""The job's start-up check of its model, against the config: apart from the job graph so that
`vad run` and `vad submit` can refuse a model before they import PyFlink (whose import logs)."""

from __future__ import annotations

from models.check import ModelError
from models.check import check_model as checked_model
from vad.config import Config, ConfigError


def check_model(cfg: Config) -> None:
    """Refuses, naming the field, a model the job's workers could not score with (they would fail
    and restart for as long as the job is deployed)."""
    try:
        card = checked_model(cfg.resolve(cfg.job.model_path))
    except ModelError as e:
        raise ConfigError(f"job.model_path: {e}") from None
    try:
        card.detection_threshold(cfg.detect)
    except KeyError as e:
        raise ConfigError(f"detect.calibration_quantile: {e.args[0]}") from None
