"""`vad train`: fit a scorer on a folder of normal clips and export ONNX plus its model card."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnx
from tqdm import tqdm

from models import baseline, tensors
from models.card import Calibration, ModelCard, card_path
from vad.config import EdgeConfig
from vad.edge.clips import clip_features, list_clips
from vad.schema import N_CHANNELS, SCHEMA_VERSION
from vad.windows import clip_windows

log = logging.getLogger(__name__)
QUANTILES = ("0.99", "0.995", "0.999", "0.9999")


def extract(folder: Path, edge: EdgeConfig, desc: str) -> dict[str, np.ndarray]:
    return {p.stem: clip_features(p, edge) for p in tqdm(list_clips(folder), desc=desc, unit="clip")}


def score_clips(
    model_path: Path, clips: dict[str, np.ndarray], window: int
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Causal scores of whole clips through the exported model: {clip: (frame [n], cells [n,R,C])}."""
    from udfs.onnx_session import OnnxScorer

    scorer = OnnxScorer(model_path)
    return {name: scorer.score(clip_windows(g, window)) for name, g in clips.items()}


def train(data: Path, out: Path, edge: EdgeConfig, window: int = 8) -> ModelCard:
    t0 = time.monotonic()
    clips = extract(data / "train", edge, "features")
    params = baseline.fit(list(clips.values()), window)
    out.mkdir(parents=True, exist_ok=True)
    model_path = out / "model.onnx"
    onnx.save(baseline.build_onnx(params, window), model_path)
    scores = score_clips(model_path, clips, window)
    frame = np.concatenate([s[0] for s in scores.values()])
    cells = np.concatenate([s[1].ravel() for s in scores.values()])
    rows, cols = edge.grid_rows, edge.grid_cols
    card = ModelCard(
        name="vad-baseline-cell-zscore",
        model_version=datetime.now(UTC).strftime("baseline-%Y%m%d%H%M%S"),
        feature_schema_version=SCHEMA_VERSION,
        window=window,
        grid=(rows, cols),
        channels=N_CHANNELS,
        input_shape=["batch", window, rows, cols, N_CHANNELS],
        outputs=[tensors.CELL_SCORES, tensors.FRAME_SCORE],
        edge=edge.model_dump(mode="json"),
        training_data={
            "folder": data.name,
            "clips": len(clips),
            "frames": int(sum(len(g) for g in clips.values())),
        },
        calibration=Calibration(
            frames=int(frame.size),
            frame_score_quantiles={q: float(np.quantile(frame, float(q))) for q in QUANTILES},
            cell_score_quantiles={q: float(np.quantile(cells, float(q))) for q in QUANTILES},
        ),
        notes="Calibration quantiles are in-sample on the training clips.",
    )
    card.save(card_path(model_path))
    log.info("trained in %.1f s: %s", time.monotonic() - t0, model_path)
    return card
