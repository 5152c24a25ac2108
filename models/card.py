"""The model card written beside every exported model and read by the job (thresholds)."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from models import tensors
from vad.config import DetectConfig, EdgeConfig


class Calibration(BaseModel):
    model_config = ConfigDict(extra="forbid")
    frames: int = Field(ge=1)
    ema_alpha: float = Field(0.5, gt=0, le=1, description="smoothing the frame quantiles were taken after")
    # Quantiles of the causal frame score on normal (training) video, keys "0.99", "0.999", ...
    frame_score_quantiles: dict[str, float]
    cell_score_quantiles: dict[str, float]


class ModelCard(BaseModel):
    model_config = ConfigDict(extra="forbid")
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
    metrics: dict = {}
    notes: str = ""

    def threshold(self, quantile: str) -> float:
        q = self.calibration.frame_score_quantiles
        if quantile not in q:
            raise KeyError(f"{quantile} is not in the model card's calibration {sorted(q)}")
        return q[quantile]

    def detection_threshold(self, detect: DetectConfig) -> float:
        """The frame-score threshold detection uses: ``detect.threshold`` if set, else this card's
        calibration at ``detect.calibration_quantile``."""
        return detect.threshold if detect.threshold is not None else self.threshold(detect.calibration_quantile)

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
