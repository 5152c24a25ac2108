"""Compare scorers (scalep and convae variants) on a camera's own normal clips, plus their cost.

    python -m research.model_study --data DIR [--cache FILE] [--variants JSON] [--out FILE]

The protocol of research/flow_study.py and research/direction_study.py (features and ``--cache`` shared
with the latter): each training clip held out in turn, the scorer fitted on the other clips, the
held-out clip's normal frames scored against anomalies made from it, causal EMA(0.5) frame score,
pooled AUC; ``speed_proxy`` is flow_study's proxy (2x/3x speed, moving textures), the other columns
are single anomaly kinds. A paired bootstrap over the held-out clips gives the 90 % interval of each
variant's speed-proxy difference from the first (scalep). ``us_per_window``: ONNX Runtime, one
thread, batch 256 of real windows, median of repeated runs, all models timed in the same process.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

from models.scorers import convae, scalep
from models.train import _ema
from research import direction_study
from research.flow_study import EMA_ALPHA
from vad.windows import clip_windows

VARIANTS = {
    "scalep": {"family": "scalep"},
    "convae": {"family": "convae"},  # the defaults of `vad train --model convae`: recon + scalep (sum)
    "convae_recon_alone": {"family": "convae", "mode": "recon", "combine": "none"},
    "convae_predict_sum": {"family": "convae", "mode": "predict", "combine": "sum"},
    "convae_predict_max": {"family": "convae", "mode": "predict", "combine": "max"},
    "convae_predict_alone": {"family": "convae", "mode": "predict", "combine": "none"},
    "convae_predict_linear_alone": {"family": "convae", "mode": "predict", "combine": "none", "sat": 1000.0},
    "convae_predict_sum_h8": {"family": "convae", "mode": "predict", "combine": "sum", "hidden": 8},
    "convae_predict_sum_t8": {"family": "convae", "mode": "predict", "combine": "sum", "window": 8},
}


def _model(spec: dict):
    """(fit(clips) -> params, score(windows, params) -> frame, build(params) -> ONNX, window)."""
    spec = dict(spec)
    if spec.pop("family") == "scalep":
        return (scalep.fit, lambda w, p: scalep.score_numpy(w, p)[0], lambda p: scalep.build_onnx(p, 1), 1)
    window = spec.pop("window", 4)
    return (
        lambda clips: convae.fit(clips, window, **spec),
        lambda w, p: convae.score_numpy(w, p)[0],
        lambda p: convae.build_onnx(p, window),
        window,
    )


def loo_scores(feats: list[dict[str, np.ndarray]], spec: dict):
    fit, score, build, window = _model(spec)
    out, secs = [], []
    for i in range(len(feats)):
        t0 = time.monotonic()
        params = fit([feats[j]["normal"] for j in range(len(feats)) if j != i])
        secs.append(time.monotonic() - t0)
        out.append({k: _ema(score(clip_windows(v, window), params), EMA_ALPHA)[1:] for k, v in feats[i].items()})
        print(f"  fold {i + 1}/{len(feats)} fit {secs[-1]:.1f} s", file=sys.stderr)
    return out, float(np.mean(secs)), build(params), window


def us_per_window(model: onnx.ModelProto, grids: np.ndarray, window: int, batch: int = 256, reps: int = 30) -> float:
    from models.onnx_session import OnnxScorer

    w = clip_windows(grids, window)[:batch]
    w = np.concatenate([w] * (batch // len(w) + 1))[:batch]
    with tempfile.TemporaryDirectory() as d:
        onnx.save(model, Path(d) / "m.onnx")
        scorer = OnnxScorer(Path(d) / "m.onnx", threads=1)
        scorer.score(w)
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            scorer.score(w)
            times.append(time.perf_counter() - t0)
    return float(np.median(times) / batch * 1e6)


def report(feats, variants: dict[str, dict], boot: int = 300) -> dict:
    """direction_study's rows, plus each variant's fit time and cost per window."""

    def run(spec: dict):
        sc, fit_s, model, window = loo_scores(feats, spec)
        cost = us_per_window(model, feats[0]["normal"], window)
        return sc, {"fit_s": round(fit_s, 1), "us_per_window": round(cost, 2)}

    return direction_study.report(feats, variants, boot, run)


def main(argv: list[str] | None = None) -> int:
    return direction_study.study_cli(argv, __doc__, report, VARIANTS)


if __name__ == "__main__":
    sys.exit(main())
