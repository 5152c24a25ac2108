"""The model card written beside every exported model and read by the job (thresholds)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from models import tensors
from models.tail import TailModel
from vad.config import DetectConfig, EdgeConfig
from vad.edge.digest import settings_digest

log = logging.getLogger(__name__)

# 2: calibration.tail (the false-episode tail model); a card without the field is format 1.
# 3: dwell (the normal dwell times per cell, for learned loitering).
CARD_FORMAT = 3


class Calibration(BaseModel):
    model_config = ConfigDict(extra="forbid")
    frames: int = Field(ge=1)
    ema_alpha: float = Field(0.5, gt=0, le=1, description="smoothing the frame quantiles were taken after")
    # Quantiles of the causal frame score on normal (training) video, keys "0.99", "0.999", ...
    frame_score_quantiles: dict[str, float]
    cell_score_quantiles: dict[str, float]
    tail: TailModel | None = Field(None, description="false episodes per hour vs threshold (card format >= 2)")


class DwellNorms(BaseModel):
    """How long things stayed in each cell of the normal video (vad/cell_stays.py's rule): what the
    job's learned loitering detector (``cameras.<id>.loitering``) compares a stay with."""

    model_config = ConfigDict(extra="forbid")
    presence_level: float = Field(gt=0, le=1, description="fg at or above which a cell is occupied")
    hold_s: float = Field(ge=0, description="empty spells shorter than this are part of a stay")
    seconds: float = Field(ge=0, description="event time of normal video the stays were taken from")
    longest_s: list[list[float]] = Field(description="per cell [rows][cols]: the longest normal stay, seconds")


class ModelCard(BaseModel):
    model_config = ConfigDict(extra="forbid")
    card_format: int = Field(
        1, ge=1, le=CARD_FORMAT, description="1: quantiles only; 2: + calibration.tail; 3: + dwell"
    )
    name: str
    model_version: str
    feature_schema_version: int
    window: int = Field(ge=1)
    grid: tuple[int, int]
    channels: int
    input_name: str = tensors.INPUT
    input_shape: list[int | str]
    outputs: list[str] = [tensors.CELL_SCORES, tensors.FRAME_SCORE]
    edge: dict  # the EdgeConfig the features were computed with: the producer must match it
    training_data: dict
    calibration: Calibration
    dwell: DwellNorms | None = Field(None, description="normal dwell times per cell (card format >= 3)")
    metrics: dict = {}
    notes: str = ""

    @property
    def frame_size(self) -> tuple[int, int] | None:
        """(width, height) of the frames it was trained on (``training_data.frame_size``; the pixels
        its speeds are in), or None when the card does not say (models.check validates it)."""
        size = self.training_data.get("frame_size")
        return (size[0], size[1]) if size else None

    @property
    def edge_settings(self) -> EdgeConfig | None:
        """The edge settings it was trained with (fields the card does not know at their defaults);
        None for a card that records none."""
        return self.edge_config(EdgeConfig()) if self.edge else None

    @property
    def edge_digest(self) -> int | None:
        """The edge digest (vad.edge.digest) of the settings it was trained with, as records state
        theirs; None for a card that records no edge settings."""
        settings = self.edge_settings
        return settings_digest(settings) if settings is not None else None

    def threshold(self, quantile: str) -> float:
        q = self.calibration.frame_score_quantiles
        if quantile not in q:
            raise KeyError(f"{quantile} is not in the model card's calibration {sorted(q)}")
        return q[quantile]

    def detection_threshold(self, detect: DetectConfig) -> float:
        """The frame-score threshold detection uses (before a camera's ``sensitivity``):
        ``detect.threshold`` if set; else, with ``detect.target_false_alarms_per_hour``, the card's
        tail model at that rate; else (or with a card that has no tail model) the card's
        calibration quantile ``detect.calibration_quantile``."""
        if detect.threshold is not None:
            return detect.threshold
        tail = self.calibration.tail
        if detect.target_false_alarms_per_hour is not None and tail is not None:
            settings = ("ema_alpha", "min_duration_s", "merge_gap_s", "cooldown_s")
            differ = [k for k in settings if getattr(detect, k) != getattr(tail, k)]
            if differ:
                log.warning(
                    "detect.%s differ from the settings the card's tail was fitted with; the false-episode "
                    "rate at the threshold will not be the target's (retrain with them)",
                    ", ".join(differ),
                )
            return tail.threshold(detect.target_false_alarms_per_hour)
        if detect.target_false_alarms_per_hour is not None:
            log.warning("model card format %d has no tail model: threshold from its quantile", self.card_format)
        return self.threshold(detect.calibration_quantile)

    def edge_config(self, base: EdgeConfig) -> EdgeConfig:
        """The edge settings the model was trained with, on top of ``base`` (fields the card does
        not know keep their base values)."""
        known = {k: v for k, v in self.edge.items() if k in EdgeConfig.model_fields}
        return EdgeConfig.model_validate({**base.model_dump(mode="json"), **known})

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.model_dump(mode="json"), indent=2) + "\n")

    @staticmethod
    def load(path: Path) -> ModelCard:
        return ModelCard.model_validate_json(path.read_text())


def card_path(model_path: Path) -> Path:
    return model_path.with_name("card.json")
