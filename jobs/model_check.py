"""The job's start-up check of its model, against the config: apart from the job graph so that
`vad run` and `vad submit` can refuse a model before they import PyFlink (whose import logs)."""

from __future__ import annotations

from models.check import ModelError
from models.check import check_model as checked_model
from models.registry import latest
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
    cards = {None: (card, str(cfg.job.model_path))}
    for view in sorted(set(cfg.views().values())):
        registry = cfg.resolve(cfg.job.model_registry)
        found = latest(registry, view)
        if found is None:
            cams = sorted(c for c, v in cfg.views().items() if v == view)
            raise ConfigError(f"cameras.{cams[0]}.view: no version of view {view!r} in job.model_registry {registry}")
        try:
            cards[view] = (checked_model(found.model_path), found.label)
            cards[view][0].detection_threshold(cfg.detect)
        except ModelError as e:
            raise ConfigError(f"job.model_registry: {found.label}: {e}") from None
        except KeyError as e:
            raise ConfigError(f"detect.calibration_quantile: {found.label}: {e.args[0]}") from None
    for cam, c in sorted(cfg.cameras.items()):
        used, label = cards[c.view]
        if c.loitering is not None and used.dwell is None:
            raise ConfigError(
                f"cameras.{cam}.loitering: the model card of {label} has no normal dwell times "
                f"(card format {used.card_format}); retrain it with `vad train`"
            )
