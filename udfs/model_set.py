"""The models a scoring operator scores with: ``job.model_path`` for cameras without a view, and for
each view named in ``cameras.<id>.view`` its newest version in the model registry
(models/registry.py), swapped in while the job runs.

Each model comes with its own detector (the card's threshold and version; the camera settings are
shared), so a camera's events carry the version that scored them and its thresholds come from its
view's calibration. A batch is scored with one ONNX call per model among its cameras (one call when
every camera shares a model). The cameras' state (windows, open episodes) is not the model's, so a
new version takes over a camera mid-stream without losing it: its open episode keeps its id.

A newer version is looked for at most every ``job.model_refresh_s`` (a directory listing per view,
when a batch arrives); one that fails the start-up check (models/check.py) is logged and counted and
the version in use stays."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.card import ModelCard, card_path
from models.check import ModelError, check_model
from models.onnx_session import OnnxScorer
from models.registry import Version, latest
from vad.config import DetectConfig
from vad.detect import EpisodeDetector
from vad.edge.digest import describe
from vad.schema import FEATURE_LAYOUT_VERSION, N_CHANNELS, SchemaError
from vad.windows import fill_window

log = logging.getLogger(__name__)


def layout_mismatch(card: ModelCard) -> SchemaError | None:
    """Why no record this code reads is scorable by the card's model, or None. Every record version
    the reader accepts carries the channels of ``FEATURE_LAYOUT_VERSION`` (``vad.schema``), so a
    model trained on another layout can score none of them."""
    if card.feature_schema_version == FEATURE_LAYOUT_VERSION and card.channels == N_CHANNELS:
        return None
    return SchemaError(
        "layout_mismatch",
        f"feature layout {FEATURE_LAYOUT_VERSION} with {N_CHANNELS} channels, the model scores layout "
        f"{card.feature_schema_version} with {card.channels}",
    )


def edge_mismatch(digest: int, model: Model) -> SchemaError:
    """A record whose edge computed its features with other settings than the model was trained
    with (vad.edge.digest): valid, but its scores would be wrong without any other sign."""
    return SchemaError(
        "edge_settings_mismatch",
        f"edge digest {digest}, the model {model.label} was trained with edge digest {model.edge_digest} "
        f"({describe(model.card.edge_settings)}): run the camera's edge with those settings, or retrain "
        "on its features",
    )


@dataclass
class Model:
    label: str  # what events carry: the card's model_version, or <view>/<version> from the registry
    card: ModelCard
    scorer: OnnxScorer
    detector: EpisodeDetector
    layout_error: SchemaError | None
    grid: tuple[int, int]  # the card's, as records report theirs
    # (width, height) of the frames it was trained on, as records report theirs; None: not recorded
    # (a card from before it was)
    frame_size: tuple[int, int] | None = None
    # The edge digest of the card's edge settings, as records state theirs (compared per record);
    # None: the card has none
    edge_digest: int | None = None

    @property
    def window(self) -> int:
        return self.card.window


class ModelSet:
    def __init__(
        self,
        default_path: Path,
        detect: DetectConfig,
        cameras: Mapping[str, Any],
        registry: Path | None = None,
        views: Mapping[str, str] | None = None,
        refresh_s: float = 30.0,
    ):
        self.detect, self.cameras = detect, dict(cameras)
        self.registry, self.views, self.refresh_s = registry, dict(views or {}), refresh_s
        self.default = self._load(Path(default_path), None)
        self.by_view: dict[str, Model] = {}
        self.loaded: dict[str, Version] = {}
        self.refused: set[tuple[str, str]] = set()  # tried once: a published version never changes
        for view in sorted(set(self.views.values())):
            found = latest(registry, view) if registry is not None else None
            if found is None:
                raise ModelError(f"job.model_registry: no version of view {view!r} in {registry}")
            self.by_view[view], self.loaded[view] = self._load(found.model_path, found), found
        self._next_refresh = time.monotonic() + refresh_s

    def _load(self, path: Path, version: Version | None) -> Model:
        # The default model was checked before the job started (jobs/model_check.py): a card that
        # no longer fits the records dead-letters them (layout_error) rather than failing every
        # worker. A registry version is checked here, and refused if it fails.
        card = ModelCard.load(card_path(path)) if version is None else check_model(path)
        if version is not None and card.dwell is None:
            # As jobs/model_check.py refuses it at start: learned loitering needs the card's dwell times.
            loitering = sorted(c for c, v in self.views.items() if v == version.view and _loitering(self.cameras, c))
            if loitering:
                needs = f"cameras.{loitering[0]}.loitering"
                raise ModelError(f"{version.label}: its card has no normal dwell times, which {needs} needs")
        label = card.model_version if version is None else version.label
        detector = EpisodeDetector(self.detect, card.detection_threshold(self.detect), label, self.cameras)
        return Model(
            label,
            card,
            OnnxScorer(path),
            detector,
            layout_mismatch(card),
            tuple(card.grid),
            card.frame_size,
            card.edge_digest,
        )

    def for_camera(self, camera_id: str) -> Model:
        view = self.views.get(camera_id)
        return self.default if view is None else self.by_view[view]

    def score(self, cameras: list[str], histories: list[list[np.ndarray]]) -> tuple[np.ndarray, list[np.ndarray]]:
        """Frame scores [B] and cell scores (one [R, C] array each) of the windows of a batch (each
        record's camera and its last grids, oldest first): one ONNX call per model among the
        cameras, one in all when they share a model."""
        if not self.by_view:  # every camera on the default model: one call, in order
            m = self.default
            windows = np.empty((len(cameras), m.window, *m.grid, N_CHANNELS), np.float32)
            for k, h in enumerate(histories):
                fill_window(windows[k], h)
            f, c = m.scorer.score(windows)
            return f, list(c)
        groups: dict[int, tuple[Model, list[int]]] = {}
        for i, cam in enumerate(cameras):
            m = self.for_camera(cam)
            groups.setdefault(id(m), (m, []))[1].append(i)
        frame, cells = np.empty(len(cameras), np.float32), [None] * len(cameras)
        for m, idx in groups.values():
            windows = np.empty((len(idx), m.window, *m.grid, N_CHANNELS), np.float32)
            for k, i in enumerate(idx):
                fill_window(windows[k], histories[i])
            f, c = m.scorer.score(windows)
            frame[idx] = f
            for k, i in enumerate(idx):
                cells[i] = c[k]
        return frame, cells

    def models(self) -> list[Model]:
        return [self.default, *self.by_view.values()]

    def refresh(self, now: float | None = None) -> list[str]:
        """Swaps in each view's newest version if it changed, at most every ``refresh_s``; returns
        the labels swapped in."""
        now = time.monotonic() if now is None else now
        if self.registry is None or not self.by_view or now < self._next_refresh:
            return []
        self._next_refresh = now + self.refresh_s
        swapped = []
        for view, current in self.loaded.items():
            try:
                found = latest(self.registry, view)
            except OSError as e:
                log.warning("model registry %s not readable: %s; view %s stays at %s", self.registry, e, view, current)
                continue
            if found is None or found.version == current.version or (view, found.version) in self.refused:
                continue
            try:
                model = self._load(found.model_path, found)
            except (ModelError, KeyError, OSError) as e:
                self.refused.add((view, found.version))
                log.error("view %s: version %s refused, %s stays in use: %s", view, found.version, current.label, e)
                continue
            self.by_view[view], self.loaded[view] = model, found
            swapped.append(found.label)
            log.info("view %s: now scoring with %s (was %s)", view, found.label, current.label)
        return swapped


def _loitering(cameras: Mapping[str, Any], camera_id: str) -> bool:
    return getattr(cameras.get(camera_id), "loitering", None) is not None
