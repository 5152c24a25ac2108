"""The job's start-up check of its model, against the config: apart from the job graph so that
`vad run` and `vad submit` can refuse a model before they import PyFlink (whose import logs)."""

from __future__ import annotations

import logging

from models.card import ModelCard, card_path
from models.check import ModelError
from models.check import check_model as checked_model
from models.registry import latest
from vad.config import Config, ConfigError
from vad.edge.digest import feature_settings

log = logging.getLogger(__name__)


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
    # A warning, not a refusal: what matters is the settings the edges run with, which may be
    # configured elsewhere; but a config that disagrees with its own model is worth a line.
    for line in edge_settings_warnings(cfg, cards=cards):
        log.warning("%s", line)


def edge_settings_warnings(
    cfg: Config, cameras: list[str] | None = None, cards: dict[str | None, tuple[ModelCard, str]] | None = None
) -> list[str]:
    """One line per camera (of ``cameras``, default all in the config, and the ``edge`` section
    itself, which cameras the config does not list run with) whose configured edge settings are not
    the ones its model was trained with: the job would dead-letter its records
    (``edge_settings_mismatch``). ``cards``: {view (None: job.model_path): (card, label)} already
    loaded; the others are read here, and those not at hand (an edge's machine) are skipped."""
    views = cfg.views()
    cards = dict(cards or {})

    def card_of(view: str | None) -> tuple[ModelCard, str] | None:
        if view not in cards:
            cards[view] = None
            try:
                if view is None:
                    path, label = cfg.resolve(cfg.job.model_path), str(cfg.job.model_path)
                else:
                    found = latest(cfg.resolve(cfg.job.model_registry), view) if cfg.job.model_registry else None
                    path, label = (found.model_path, found.label) if found else (None, "")
                if path is not None:
                    cards[view] = ModelCard.load(card_path(path)), label
            except (OSError, ValueError):  # not here, or broken: the job's own check names it
                pass
        return cards[view]

    wanted = sorted(cfg.cameras) if cameras is None else cameras
    checks = [
        (f"cameras.{c}" if c in cfg.cameras else f"camera {c} (edge)", cfg.edge_settings(c), views.get(c))
        for c in wanted
    ]
    if cameras is None:
        checks.insert(0, ("edge", cfg.edge, None))
    out = []
    for where, settings, view in checks:
        got = card_of(view)
        if got is None or not got[0].edge:
            continue
        card, label = got
        trained = feature_settings(card.edge_settings)
        mine = feature_settings(settings)
        differ = [
            f"{k} {mine.get(k)} (model: {trained.get(k)})"
            for k in trained.keys() | mine.keys()
            if mine.get(k) != trained.get(k)
        ]
        if differ:
            out.append(
                f"{where}: edge settings other than model {label} was trained with: {', '.join(sorted(differ))}; "
                "the job dead-letters such records (edge_settings_mismatch)"
            )
    return out
