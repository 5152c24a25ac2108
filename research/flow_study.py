"""Choose edge flow settings on a camera's own *normal* clips, never on its test video.

    python -m research.flow_study --data DIR [--settings NAME=JSON ...] [--out FILE]

Each clip of ``DIR/train`` is held out in turn; ``scalep`` is fitted on the features of the others
and scores the held-out clip (normal, label 0) and anomalies made from it (label 1): the clip played
at 2x and 3x speed, and two smooth 20x20 textures moving across it at 3-12 px/frame. The proxy is the
pooled AUC of the causal (EMA-smoothed) score; a paired bootstrap over the held-out clips says how
sure each setting's difference from the first one is. This is how the default edge settings were
chosen (docs/models.md). Frames are decoded once and kept in memory; nothing is written but the
report.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from models.scorers import scalep
from models.train import _ema
from vad.config import EdgeSettings
from vad.edge.features import make_extractor
from vad.edge.sources import open_capture

KINDS = ("normal", "speed2x", "speed3x", "patch_a", "patch_b")
EMA_ALPHA = 0.5  # the detector's default smoothing (DetectConfig.ema_alpha)


def gray_frames(path: Path, cfg: EdgeSettings) -> list[np.ndarray]:
    cap = open_capture(str(path), cfg)
    out = []
    try:
        while (f := cap.read()) is not None:
            out.append(f.gray.copy())
    finally:
        cap.close()
    return out


def texture(rng: np.random.Generator, size: int = 20) -> np.ndarray:
    """A smooth, object-like uint8 texture: blurred noise stretched to 0-255."""
    noise = cv2.GaussianBlur(rng.integers(0, 256, (size, size)).astype(np.float32), (0, 0), 2.0)
    return cv2.normalize(noise, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)


def moving_patch(frames: list[np.ndarray], seed: int, speed: float, size: int = 20) -> list[np.ndarray]:
    """A smooth, object-like texture pasted on every frame, moving in a straight line at `speed`
    px/frame in a random direction and bouncing off the edges."""
    rng = np.random.default_rng(seed)
    tex = texture(rng, size)
    h, w = frames[0].shape
    ang = rng.uniform(0, 2 * np.pi)
    v = np.array([speed * np.cos(ang), speed * np.sin(ang)])
    p = np.array([rng.uniform(0, w - size), rng.uniform(0, h - size)])
    hi = np.array([w - size, h - size], dtype=float)
    out = []
    for g in frames:
        g = g.copy()
        x, y = np.rint(p).astype(int)
        g[y : y + size, x : x + size] = tex
        out.append(g)
        p += v
        bounce = (p < 0) | (p > hi)
        v[bounce] = -v[bounce]
        p = np.clip(p, 0, hi)
    return out


def sequences(i: int, n: int, frames: list[np.ndarray]) -> dict[str, list[np.ndarray]]:
    def speed(k: int) -> float:  # spread over the clips, 3-12 px/frame
        return 3 + 9 * (k % n) / max(n - 1, 1)

    return {
        "normal": frames,
        "speed2x": frames[::2],
        "speed3x": frames[::3],
        "patch_a": moving_patch(frames, 100 + i, speed(i)),
        "patch_b": moving_patch(frames, 200 + i, speed(i + n // 2)),
    }


def kind_features(seqs: dict[str, list[np.ndarray]], cfg: EdgeSettings, transform=None) -> dict[str, np.ndarray]:
    """Feature grids [N, R, C, F] of each sequence, a fresh extractor each (``transform``: applied
    to the frames first)."""
    out = {}
    for kind, seq in seqs.items():
        ex = make_extractor(cfg)
        out[kind] = np.stack([ex.process(g) for g in (transform(seq) if transform else seq)]).astype(np.float32)
    return out


def clip_scores(clips: list[list[np.ndarray]], cfg: EdgeSettings) -> list[dict[str, np.ndarray]]:
    """Per held-out clip and kind: causal frame scores (frame 0, which has no flow, dropped)."""
    n = len(clips)
    feats = [kind_features(sequences(i, n, frames), cfg) for i, frames in enumerate(clips)]
    out = []
    for i in range(n):
        scale = scalep.fit([feats[j]["normal"] for j in range(n) if j != i])
        out.append({k: _ema(scalep.score_numpy(feats[i][k][:, None], scale)[0], EMA_ALPHA)[1:] for k in KINDS})
    return out


def pooled_auc(scores: list[dict[str, np.ndarray]], idx, anomalies=KINDS[1:]) -> float:
    """AUC of the held-out clips `idx`: their normal frames against the frames of `anomalies`."""
    from sklearn.metrics import roc_auc_score

    kinds = ("normal", *anomalies)
    s = np.concatenate([scores[i][k] for i in idx for k in kinds])
    y = np.concatenate([np.full(len(scores[i][k]), k != "normal") for i in idx for k in kinds])
    return float(roc_auc_score(y, s))


def study(data: Path, variants: dict[str, dict], max_clips: int | None = None, boot: int = 300) -> dict:
    clip_paths = sorted((data / "train").glob("*"))[:max_clips]
    if len(clip_paths) < 3:
        raise SystemExit(f"need at least 3 normal clips in {data}/train, found {len(clip_paths)}")
    cv2.setNumThreads(1)
    base = EdgeSettings()
    clips = [gray_frames(p, base) for p in clip_paths]
    rng = np.random.default_rng(0)
    draws = [rng.integers(0, len(clips), len(clips)) for _ in range(boot)]
    results, first_boot = {}, None
    for name, update in variants.items():
        cfg = EdgeSettings.model_validate({**base.model_dump(), **update})
        scores = clip_scores(clips, cfg)
        b = np.array([pooled_auc(scores, d) for d in draws])
        r = {"settings": update, "proxy_auc": round(pooled_auc(scores, range(len(clips))), 5)}
        if first_boot is None:
            first_boot = b
        else:
            r["p_at_least_first"] = round(float(np.mean(b >= first_boot)), 3)
            r["diff_vs_first_90"] = [round(float(x), 5) for x in np.percentile(b - first_boot, [5, 95])]
        results[name] = r
        print(json.dumps({name: r}), file=sys.stderr)
    return {"clips": len(clips), "kinds": list(KINDS), "variants": results}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="folder with train/ (normal clips)")
    p.add_argument(
        "--settings",
        action="append",
        default=[],
        metavar="NAME=JSON",
        help='edge settings to compare, e.g. farneback=\'{"flow": "farneback"}\' (first: the defaults)',
    )
    p.add_argument("--max-clips", type=int, default=None)
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args(argv)
    variants = {"default": {}}
    for s in a.settings:
        name, _, js = s.partition("=")
        variants[name] = json.loads(js)
    report = study(a.data, variants, a.max_clips)
    if a.out:
        a.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
