"""What a model per camera view costs the scoring operator: batches of records from 100 cameras,
scored as the job does (``udfs.model_set.ModelSet.score``: one ONNX call per model among a batch's
cameras), once with every camera on the default model and once with the cameras on 10 views of a
registry. Per record, in the same process and run, so the ratio is what to read."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from models.card import ModelCard, card_path
from models.registry import publish
from udfs.model_set import ModelSet
from vad.config import REPO_ROOT, DetectConfig
from vad.schema import N_CHANNELS

CAMERAS, VIEWS, BATCH = 100, 10, 64


def _per_record_us(models: ModelSet, batches: list[list[str]], histories: list[list[np.ndarray]]) -> float:
    models.score(batches[0], histories)  # warm-up
    t0 = time.perf_counter()
    for cams in batches:
        models.score(cams, histories)
    return (time.perf_counter() - t0) * 1e6 / (len(batches) * BATCH)


def run(quick: bool = False) -> dict:
    default = REPO_ROOT / "models" / "default" / "model.onnx"
    card = ModelCard.load(card_path(default))
    rng = np.random.default_rng(0)
    rows, cols = card.grid
    histories = [[rng.random((rows, cols, N_CHANNELS), np.float32) for _ in range(card.window)] for _ in range(BATCH)]
    cameras = [f"cam-{i:03d}" for i in range(CAMERAS)]
    batches = [list(rng.choice(cameras, BATCH)) for _ in range(50 if quick else 400)]
    detect = DetectConfig()
    with tempfile.TemporaryDirectory() as tmp:
        reg = Path(tmp)
        for v in range(VIEWS):
            publish(default.parent, reg, f"view-{v}", "1")
        views = {cam: f"view-{i % VIEWS}" for i, cam in enumerate(cameras)}
        one = ModelSet(default, detect, {}, None, {}, 3600)
        per_view = ModelSet(default, detect, {}, reg, views, 3600)
        # Interleaved, best of three each: the machine is shared.
        a, b = [], []
        for _ in range(3):
            a.append(_per_record_us(one, batches, histories))
            b.append(_per_record_us(per_view, batches, histories))
    return {
        "models_cameras": CAMERAS,
        "models_views": VIEWS,
        "models_batch": BATCH,
        "score_us_per_record_one_model": round(min(a), 2),
        "score_us_per_record_per_view": round(min(b), 2),
        "per_view_models_cost_ratio": round(min(b) / min(a), 2),
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(quick=True)))
