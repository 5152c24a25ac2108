"""The job's start-up check of its model, against the config: apart from the job graph so that
`vad run` and `vad submit` can refuse a model before they import PyFlink (whose import logs)."""

from __future__ import annotations

from models.check import ModelError
from models.check import check_model as checked_model
from models.registry import latest
from vad.config import Config, ConfigError


def _checked(cfg: Config, path, model_field: str, label: str):
    """The model's card, checked (models/check.py) and with a threshold for cfg.detect; refused naming
    ``model_field`` (the model itself) or detect.calibration_quantile."""
    try:
        card = checked_model(path)
    except ModelError as e:
        raise ConfigError(f"{model_field}{e}") from None
    try:
        card.detection_threshold(cfg.detect)
    except KeyError as e:
        raise ConfigError(f"detect.calibration_quantile: {label}{e.args[0]}") from None
    return card


def check_model(cfg: Config) -> None:
    """Refuses, naming the field, a model the job's workers could not score with (they would fail
    and restart for as long as the job is deployed)."""
    cards = {None: (_checked(cfg, cfg.resolve(cfg.job.model_path), "job.model_path: ", ""), str(cfg.job.model_path))}
    views = cfg.views()
    registry = cfg.resolve(cfg.job.model_registry) if views else None
    for view in sorted(set(views.values())):
        found = latest(registry, view)
        if found is None:
            cams = sorted(c for c, v in views.items() if v == view)
            raise ConfigError(f"cameras.{cams[0]}.view: no version of view {view!r} in job.model_registry {registry}")
        where = f"{found.label}: "
        cards[view] = (_checked(cfg, found.model_path, f"job.model_registry: {where}", where), found.label)
    for cam, c in sorted(cfg.cameras.items()):
        used, label = cards[c.view]
        if c.loitering is not None and used.dwell is None:
            raise ConfigError(
                f"cameras.{cam}.loitering: the model card of {label} has no normal dwell times "
                f"(card format {used.card_format}); retrain it with `vad train`"
            )
