"""Choose ``detect.target_false_alarms_per_hour`` on cameras' own *normal* clips, never test video.

    python -m research.threshold_study --data DIR [--data DIR ...] [--targets 1,2,5] [--splits 20]
        [--minutes M] [--out FILE] [--cache DIR] [--min-durations 0.1,0.2] [--ema-alphas 0.5,0.7]

Per scene (DIR/train, features with the edge defaults, as `vad train` computes them): every clip is
scored by a scalep model fitted on the other clips (leave-one-clip-out, as `vad train` calibrates),
and so is the clip played at 2x (every second frame: faster than normal, wholly anomalous). Then
``splits`` random halvings of the clips: the tail (models/tail.py) is fitted on one half's held-out
normal scores (``--minutes``: only its first M minutes of clips, the short-video case), and each
target rate's threshold drives the job's EpisodeDetector over the other half: false episodes per hour
observed on its normal clips, event recall and first-alert delay on their 2x versions. The quantile
rule (0.999 of the same calibration scores) is reported beside it. ``--min-durations`` and
``--ema-alphas`` repeat all of it for each detector setting, the tail fitted with that setting.
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import tempfile
from pathlib import Path

import numpy as np

from models.evaluate import detect_clip
from models.tail import fit_tail
from models.train import _ema, _fit_export, score_clips
from vad.config import DetectConfig, EdgeSettings, load_config
from vad.detect import EpisodeDetector
from vad.edge.clips import clip_samples, list_clips


def scene_scores(data: Path, edge: EdgeSettings, log=print) -> dict[str, dict]:
    """{clip: {"normal": raw scores, "ts": ms, "fast": raw scores of the 2x clip, "fast_ts": ms}}."""
    fast_edge = EdgeSettings.model_validate(
        {**{k: getattr(edge, k) for k in EdgeSettings.model_fields}, "sample_every": 2}
    )
    grids, out = {}, {}
    for p in list_clips(data / "train"):
        s, f = clip_samples(p, edge), clip_samples(p, fast_edge)
        period = int(np.median(np.diff(s.ts_ms))) if len(s.ts_ms) > 1 else 100
        grids[p.stem] = (s.grids, f.grids)
        # The 2x clip is played at the camera's frame rate: every frame one period apart.
        out[p.stem] = {"ts": s.ts_ms, "fast_ts": np.arange(len(f.grids), dtype=np.int64) * period}
        log(f"{data.name}: features {len(grids)}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.onnx"
        for name, (normal, fast) in grids.items():
            _fit_export("scalep", [g for k, (g, _) in grids.items() if k != name], path)
            scored = score_clips(path, {"n": normal, "f": fast}, 1)
            out[name]["normal"], out[name]["fast"] = scored["n"][0], scored["f"][0]
    return out


def _run(detector: EpisodeDetector, raw: np.ndarray, ts: np.ndarray) -> list[tuple[int, int, int]]:
    return detect_clip("c", raw, None, detector, ts)[1]


def evaluate_split(scores: dict, cal: list[str], val: list[str], thresholds: dict, detect: DetectConfig) -> dict:
    out = {}
    hours = sum((scores[k]["ts"][-1] + 100) / 3.6e6 for k in val)
    for name, thr in thresholds.items():
        det = EpisodeDetector(detect, thr)
        false = sum(len(_run(det, scores[k]["normal"], scores[k]["ts"])) for k in val)
        hits, delays = 0, []
        for k in val:
            ev = _run(det, scores[k]["fast"], scores[k]["fast_ts"])
            if ev:
                hits += 1
                delays.append(scores[k]["fast_ts"][ev[0][1]] / 1000.0)
        out[name] = {"threshold": thr, "false": false, "hours": hours, "hits": hits, "n": len(val), "delays": delays}
    return out


def study(scores: dict, targets: list[float], splits: int, minutes: float | None, detect: DetectConfig) -> dict:
    rng = np.random.default_rng(0)
    names = sorted(scores)
    pooled: dict[str, dict] = {}
    for _ in range(splits):
        order = [names[i] for i in rng.permutation(len(names))]
        cal, val = order[: len(order) // 2], order[len(order) // 2 :]
        if minutes is not None:
            kept, total = [], 0.0
            for k in cal:
                if total >= minutes * 60:
                    break
                kept.append(k)
                total += (scores[k]["ts"][-1] + 100) / 1000
            cal = kept
        smoothed = [(_ema(scores[k]["normal"], detect.ema_alpha), scores[k]["ts"]) for k in cal]
        tail = fit_tail(
            smoothed,
            ema_alpha=detect.ema_alpha,
            min_duration_s=detect.min_duration_s,
            merge_gap_s=detect.merge_gap_s,
            cooldown_s=detect.cooldown_s,
        )
        thresholds = {"quantile 0.999": float(np.quantile(np.concatenate([s for s, _ in smoothed]), 0.999))}
        thresholds.update({f"target {r:g}/h": tail.threshold(r) for r in targets})
        for name, r in evaluate_split(scores, cal, val, thresholds, detect).items():
            p = pooled.setdefault(name, {"false": 0, "hours": 0.0, "hits": 0, "n": 0, "delays": [], "thr": []})
            for key in ("false", "hours", "hits", "n"):
                p[key] += r[key]
            p["delays"] += r["delays"]
            p["thr"].append(r["threshold"])
        pooled.setdefault("_tail", {"methods": [], "clusters": []})
        pooled["_tail"]["methods"].append(tail.method)
        pooled["_tail"]["clusters"].append(tail.clusters)
    table = {}
    for name, p in pooled.items():
        if name == "_tail":
            continue
        table[name] = {
            "false_episodes_per_hour": round(p["false"] / p["hours"], 2),
            "fast_recall": round(p["hits"] / p["n"], 3),
            "fast_delay_s": round(float(np.mean(p["delays"])), 2) if p["delays"] else None,
            "threshold_median": round(float(np.median(p["thr"])), 3),
            "validation_hours": round(p["hours"], 3),
        }
    methods = pooled["_tail"]["methods"]
    table["_tail"] = {
        "methods": {m: methods.count(m) for m in sorted(set(methods))},
        "clusters_median": float(np.median(pooled["_tail"]["clusters"])),
    }
    return table


def _floats(arg: str | None, default: float) -> list[float]:
    return [float(x) for x in arg.split(",")] if arg else [default]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", action="append", required=True)
    ap.add_argument("--targets", default="0.5,1,2,5,10,20,50")
    ap.add_argument("--splits", type=int, default=20)
    ap.add_argument("--minutes", type=float, default=None)
    ap.add_argument("--out", default=None)
    ap.add_argument("--cache", default=None, help="folder for the scenes' scores (reused when there)")
    ap.add_argument("--min-durations", default=None, help="detect.min_duration_s values to compare (s)")
    ap.add_argument("--ema-alphas", default=None, help="detect.ema_alpha values to compare")
    args = ap.parse_args(argv)
    cfg = load_config()
    targets = [float(x) for x in args.targets.split(",")]
    detects = {
        f"min_duration_s {d:g}, ema_alpha {a:g}": cfg.detect.model_copy(update={"min_duration_s": d, "ema_alpha": a})
        for d in _floats(args.min_durations, cfg.detect.min_duration_s)
        for a in _floats(args.ema_alphas, cfg.detect.ema_alpha)
    }
    report = {}
    for d in args.data:
        cache = Path(args.cache) / f"{Path(d).name}.pkl" if args.cache else None
        if cache is not None and cache.exists():
            scores = pickle.loads(cache.read_bytes())
        else:
            scores = scene_scores(Path(d), cfg.edge, log=lambda m: print(m, file=sys.stderr))
            if cache is not None:
                cache.write_bytes(pickle.dumps(scores))
        for setting, detect in detects.items():
            key = Path(d).name if len(detects) == 1 else f"{Path(d).name}, {setting}"
            report[key] = study(scores, targets, args.splits, args.minutes, detect)
            for name, row in report[key].items():
                print(key, name, json.dumps(row), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
