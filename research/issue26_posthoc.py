"""Post-hoc analyses for research/FINDINGS-issue26.md (they read test labels: used to explain, never to choose).

    nice -n 19 .venv/bin/python -m research.issue26_posthoc [--bg cold|warm] [--yolo]

1. shift: do the test clips' *normal* frames score like held-out normal training clips? Share of test
   normal frames above the held-out training clips' 99th percentile (3 folds, as in the study), and
   share of test anomalous frames above it.
2. bootstrap (``--cost``: instead, the edge cost per feature stage): paired bootstrap over test clips
  (resampled per scene, 1000 draws) of the pooled AUC
   difference of each candidate from scalep: 90 % interval.
"""

from __future__ import annotations

import argparse
import json
import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from research import density_scorers as ds  # noqa: E402
from research import study_data  # noqa: E402
from research.vad_features_study import CANDIDATES, SCENES, YOLO_CANDIDATES  # noqa: E402

cv2.setNumThreads(1)
SHOW = (
    "scalep (default)",
    "scalep-multi mag+fgf",
    "scalep-multi mag+fgf T3",
    "scalep-multi mag+obj_h",
    "knn motion4 T1 cal",
    "knn obj4 T1 cal",
    "knn obj4 T3 cal",
    "max(scalep, knn obj4 T3 cal)",
)
YOLO_SHOW = ("max(scalep, yolo_other)",)


def test_clip_scores(model, g, scene):
    lab = json.loads((study_data.DATA / scene / "labels.json").read_text())["clips"]
    out = []
    for c in sorted(lab):
        sc = ds.ema(ds.frame_scores(model, g[f"test/{c}"]))
        y = np.zeros(len(sc))
        for a, b in lab[c]["anomalous_frames"]:
            y[a - 1 : b] = 1
        out.append((y, sc))
    return out


def cost(reps: int = 3) -> None:
    """Edge cost per stage, one thread: thread CPU ms/frame over 4 training clips per scene, best of reps."""
    from research.feature_candidates import CandidateExtractor, YoloxNano
    from vad.config import EdgeSettings

    det = YoloxNano()
    for s in SCENES:
        frames = study_data.decode(s, "train", [f"Train00{i}" for i in range(1, 5)])
        n = sum(len(f) for f in frames.values())
        best: dict[str, float] = {}
        for r in range(reps):
            ex = CandidateExtractor(EdgeSettings(), det if r == 0 else None, history=100)
            study_data.extract(frames, ex)
            for k, v in ex.timings.items():
                if k != "yolo" or r == 0:
                    best[k] = min(best.get(k, np.inf), v / n * 1e3)
        print(
            f"{s} edge ms/frame (flow at {ex.base._geometry.fw}x{ex.base._geometry.fh}): "
            + ", ".join(f"{k} {v:.2f}" for k, v in best.items()),
            flush=True,
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bg", default="cold", choices=("cold", "warm"))
    ap.add_argument("--yolo", action="store_true")
    ap.add_argument("--cost", action="store_true", help="only the edge cost per stage")
    args = ap.parse_args()
    if args.cost:
        cost()
        return
    cands = {**CANDIDATES, **YOLO_CANDIDATES}
    show = SHOW + (YOLO_SHOW if args.yolo else ())
    rng = np.random.default_rng(0)
    for s in SCENES:
        g = study_data.build(s, False, args.yolo, bg=args.bg)["grids"]
        train = sorted(k[6:] for k in g if k.startswith("train/"))
        held = [k for k in train if k != study_data.WARM_CLIP]
        per = {}
        for name in show:
            spec = cands[name]
            hn = []
            for f in range(3):
                fold = held[f::3]
                m = ds.make(spec).fit([g[f"train/{k}"] for k in train if k not in fold])
                hn += [ds.ema(ds.frame_scores(m, g[f"train/{k}"])) for k in fold]
            p99 = np.percentile(np.concatenate(hn), 99)
            clips = test_clip_scores(ds.make(spec).fit([g[f"train/{k}"] for k in train]), g, s)
            per[name] = clips
            y = np.concatenate([c[0] for c in clips])
            sc = np.concatenate([c[1] for c in clips])
            print(
                f"{s} {name:34s} AUC {roc_auc_score(y, sc):.3f} | held-out normal p50/p99 "
                f"{np.percentile(np.concatenate(hn), 50):.2f}/{p99:.2f} | test normal > p99: {100 * (sc[y == 0] > p99).mean():4.1f}%"  # noqa: E501
                f" | test anomalous > p99: {100 * (sc[y == 1] > p99).mean():4.1f}%",
                flush=True,
            )
        n = len(per[show[0]])
        draws = [rng.integers(0, n, n) for _ in range(1000)]

        def pooled(clips, idx):
            y = np.concatenate([clips[i][0] for i in idx])
            return roc_auc_score(y, np.concatenate([clips[i][1] for i in idx])) if 0 < y.sum() < len(y) else np.nan

        base = [pooled(per[show[0]], d) for d in draws]
        for name in show[1:]:
            diff = np.array([pooled(per[name], d) for d in draws]) - np.array(base)
            lo, hi = np.nanpercentile(diff, [5, 95])
            print(f"{s} bootstrap AUC({name}) - AUC(scalep): 90% [{lo:+.3f}, {hi:+.3f}]", flush=True)


if __name__ == "__main__":
    main()
