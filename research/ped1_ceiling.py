"""How far can scalep's kind of score go on Ped1? Post hoc: reads test labels, to explain, never to choose.

    nice -n 19 .venv/bin/python -m research.ped1_ceiling [--scenes ucsd_ped1 ucsd_ped2] [--edges NAME ...]

For each edge variant (flow size, grid, DIS scale; research only: flow against an older frame), the
product's extractor computes the features of every training and test clip; scalep and variants of it
are fitted on the training clips and score the test clips causally (EMA 0.5, no per-video
normalisation); one pooled frame AUC per scene. Scorer variants: the neighbourhood radius and
quantile of the per-cell scale, the detector's smoothing, a top-k mean over cells instead of the
max, and the two cues one could compute from the existing channels for "moves like a rigid object":
the flow's coherence (|mean vector| / mean magnitude) and its direction concentration (1 -
normalised entropy of the direction histogram), both weighted by the cell's scalep score. Findings:
research/FINDINGS-issue26.md ("Ped1's ceiling").
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import time

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from models.scorers import scalep  # noqa: E402
from models.train import _ema  # noqa: E402
from research.flow_study import gray_frames  # noqa: E402
from vad.config import REPO_ROOT, EdgeSettings  # noqa: E402
from vad.edge.features import FlowFeatureExtractor, make_extractor  # noqa: E402
from vad.schema import CHANNELS  # noqa: E402

DATA = REPO_ROOT.parent / "shared" / "datasets"
EDGE_VARIANTS = {
    "default": {},
    "flow at full size": {"flow_min_height": 4320},
    "grid 24x36": {"grid_rows": 24, "grid_cols": 36},
    "grid 24x36, flow at full size": {"grid_rows": 24, "grid_cols": 36, "flow_min_height": 4320},
    "DIS at its finest scale": {"dis_finest_scale": 0},
    "grid 24x36, DIS at its finest scale": {"grid_rows": 24, "grid_cols": 36, "dis_finest_scale": 0},
    "flow at full size, DIS at its finest scale": {"flow_min_height": 4320, "dis_finest_scale": 0},
    # Not an edge setting: flow against the frame `gap` back (research only, FrameGap below).
    "flow against the frame two back": {"gap": 2},
    "flow against the frame three back": {"gap": 3},
}
MAG, DX, DY = CHANNELS.index("mag"), CHANNELS.index("dx"), CHANNELS.index("dy")
DIRS = slice(CHANNELS.index("dir0"), CHANNELS.index("dir7") + 1)


class FrameGap(FlowFeatureExtractor):
    """The edge's extractor with flow from the frame `gap` sampled frames back to this one: the same
    cost a frame, `gap` times the displacement of slow and far objects (features in pixels per gap)."""

    def __init__(self, cfg: EdgeSettings, gap: int):
        super().__init__(cfg)
        self.back = collections.deque(maxlen=gap)

    def process(self, gray: np.ndarray) -> np.ndarray:
        # The edge's own step, with the reference frame swapped for the oldest one kept.
        self._prev = self.back[0] if self.back else None
        out = super().process(gray)
        self.back.append(self._prev)  # this frame, as the edge's step left it
        return out


def features(scene: str, update: dict) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    update = dict(update)
    gap = update.pop("gap", 1)
    cfg = EdgeSettings.model_validate({**EdgeSettings().model_dump(), **update})

    def clip(p):
        ex = FrameGap(cfg, gap) if gap > 1 else make_extractor(cfg)
        return np.stack([ex.process(g) for g in gray_frames(p, cfg)])

    return clips(scene, clip)


def clips(scene: str, read) -> tuple[list, list, np.ndarray]:
    """``read(path)`` of every training and test clip of the scene, and the test frames' labels."""
    labels = json.loads((DATA / scene / "labels.json").read_text())["clips"]
    train = [read(p) for p in sorted((DATA / scene / "train").glob("*.mp4"))]
    tests = sorted((DATA / scene / "test").glob("*.mp4"))
    test = [read(p) for p in tests]
    y = []
    for p, f in zip(tests, test, strict=True):
        v = np.zeros(len(f), bool)
        for a, b in labels[p.stem]["anomalous_frames"]:
            v[a - 1 : b] = True  # 1-based, inclusive
        y.append(v)
    return train, test, np.concatenate(y)


def _auc(y, test, cell_score, alpha=0.5, reduce=lambda c: c.max(axis=(1, 2))) -> float:
    return round(float(roc_auc_score(y, np.concatenate([_ema(reduce(cell_score(c)), alpha) for c in test]))), 4)


def scorers(train, test, y) -> dict[str, float]:
    out = {}
    for name, kw in {"scalep": {}, "radius 0": {"radius": 0}, "radius 2": {"radius": 2}, "q 99.5": {"q": 99.5}}.items():
        s = scalep.fit(train, **kw)
        out[name] = _auc(y, test, lambda c, s=s: c[..., MAG] / s)
    s = scalep.fit(train)

    def score(c):
        return c[..., MAG] / s

    for a in (0.3, 1.0):
        out[f"EMA alpha {a}"] = _auc(y, test, score, alpha=a)
    for k in (2, 4):
        out[f"top-{k} cell mean"] = _auc(
            y, test, score, reduce=lambda c, k=k: np.sort(c.reshape(len(c), -1), 1)[:, -k:].mean(1)
        )

    def coherence(c):
        return np.hypot(c[..., DX], c[..., DY]) / np.maximum(c[..., MAG], 1e-6)

    def concentration(c):
        p = c[..., DIRS] / np.maximum(c[..., MAG : MAG + 1], 1e-6)
        return 1 - (-(p * np.log(np.maximum(p, 1e-9))).sum(-1) / np.log(p.shape[-1]))

    out["coherence x scalep"] = _auc(y, test, lambda c: coherence(c) * score(c))
    out["direction concentration x scalep"] = _auc(y, test, lambda c: concentration(c) * score(c))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenes", nargs="+", default=["ucsd_ped1", "ucsd_ped2"])
    p.add_argument("--edges", nargs="+", default=list(EDGE_VARIANTS), choices=list(EDGE_VARIANTS))
    a = p.parse_args(argv)
    cv2.setNumThreads(1)
    for scene in a.scenes:
        for name in a.edges:
            cpu = time.process_time()
            train, test, y = features(scene, EDGE_VARIANTS[name])
            # Decode and features of every clip, one thread: the edge's cost of the variant, roughly.
            ms = 1000 * (time.process_time() - cpu) / sum(map(len, train + test))
            auc = scorers(train, test, y)
            print(json.dumps({"scene": scene, "edge": name, "cpu_ms_per_frame": round(ms, 2), "auc": auc}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
