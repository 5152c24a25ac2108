"""Data for research/vad_features_study.py: decoded clips, synthetic anomalies made from normal
training clips (the training-only proxy), candidate features cached under /tmp/vad-study/.

Proxies (made from a held-out *normal* training clip, never from test video):
- ``speed2x``: the clip played at twice its speed (every second frame): faster than normal.
- ``wide_real`` / ``big_real``: a real person cut out of the same clip, stretched 2.5x wide (a cart at
  walking pace) or scaled 2x (too big for its row: perspective), moving like ``wide``.
- ``wide`` (texture, reported only): a textured object as tall as a normal moving blob at that row and 2.5x
  as wide (a cart,
  a vehicle), gliding along the scene's dominant direction of motion at the *normal* speed of moving
  blobs at that row; in a scene whose walkers move up/down it is rescaled row by row as it moves
  (perspective). Size, speed and direction are read from the training clips' own features.
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np

from research.feature_candidates import CHANNELS, CandidateExtractor, YoloxNano
from research.flow_study import gray_frames
from vad.config import EdgeSettings

DATA = Path("/work/shared/datasets")
CACHE = Path("/tmp/vad-study")
WARM_CLIP, WARM_FRAMES = "Train001", 100  # the background model's warm-up: never held out


def decode(scene: str, split: str, names: list[str] | None = None) -> dict[str, list[np.ndarray]]:
    cfg = EdgeSettings()
    paths = sorted((DATA / scene / split).glob("*.mp4"))
    return {p.stem: gray_frames(p, cfg) for p in paths if names is None or p.stem in names}


def texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    noise = cv2.GaussianBlur(rng.integers(0, 256, (h, w)).astype(np.float32), (0, 0), max(1.0, h / 10))
    return cv2.normalize(noise, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)


def scene_stats(train_grids: list[np.ndarray]) -> dict:
    """Per grid row: median height / speed of moving blobs, how often blobs are there; the scene's
    dominant axis of motion (direction bins 0, 4 horizontal; 2, 6 vertical)."""
    g = np.concatenate(train_grids)
    h, sp = g[..., CHANNELS.index("obj_h")], g[..., CHANNELS.index("obj_speed")]
    moving = (h > 0) & (sp > 0.2)
    rows = g.shape[1]
    freq = moving.mean(axis=(0, 2))
    med_h = np.array([np.median(h[:, r][moving[:, r]]) if moving[:, r].sum() > 20 else np.nan for r in range(rows)])
    med_v = np.array([np.median(sp[:, r][moving[:, r]]) if moving[:, r].sum() > 20 else np.nan for r in range(rows)])
    ok = ~np.isnan(med_h)
    idx = np.arange(rows)
    med_h = np.interp(idx, idx[ok], med_h[ok])
    med_v = np.interp(idx, idx[ok], med_v[ok])
    d = [g[..., CHANNELS.index(f"dir{i}")].sum() for i in range(8)]
    horizontal = d[0] + d[4] + 0.5 * (d[1] + d[3] + d[5] + d[7]) >= d[2] + d[6] + 0.5 * (d[1] + d[3] + d[5] + d[7])
    col_freq = moving.mean(axis=(0, 1))
    return {"freq": freq, "height": med_h, "speed": med_v, "horizontal": bool(horizontal), "col_freq": col_freq}


def wide_object(frames: list[np.ndarray], stats: dict, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    hh, ww = frames[0].shape
    rows, cols = len(stats["freq"]), len(stats["col_freq"])
    cell_h, cell_w = hh / rows, ww / cols
    tex = texture(rng, 64, 160)
    sign = rng.choice([-1.0, 1.0])
    out = []
    if stats["horizontal"]:
        busy = np.flatnonzero(stats["freq"] >= 0.5 * stats["freq"].max())
        r = int(rng.choice(busy))
        x = rng.uniform(0, ww)
    else:
        busy = np.flatnonzero(stats["col_freq"] >= 0.5 * stats["col_freq"].max())
        c = int(rng.choice(busy))
        yc = rng.uniform(0.3 * hh, hh)
    for f in frames:
        f = f.copy()
        if stats["horizontal"]:
            yc = (r + 0.5) * cell_h
        row = int(np.clip(yc // cell_h, 0, rows - 1))
        oh = max(4, round(stats["height"][row]))
        ow = max(6, round(2.5 * oh))
        t = cv2.resize(tex, (ow, oh), interpolation=cv2.INTER_AREA)
        x0 = round((x if stats["horizontal"] else (c + 0.5) * cell_w) - ow / 2)
        y0 = round(yc - oh / 2)
        ys, xs = slice(max(y0, 0), min(y0 + oh, hh)), slice(max(x0, 0), min(x0 + ow, ww))
        if ys.stop > ys.start and xs.stop > xs.start:
            f[ys, xs] = t[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0]
        out.append(f)
        v = sign * stats["speed"][row]
        if stats["horizontal"]:
            x = (x + v) % ww
        else:
            yc = yc + v
            if not 0.25 * hh <= yc <= hh:
                sign, yc = -sign, float(np.clip(yc, 0.25 * hh, hh))
    return out


def person_patch(frames: list[np.ndarray], stats: dict) -> tuple[np.ndarray, np.ndarray]:
    """A real moving person cut out of a normal clip: (gray patch, 0/1 mask). The clip's temporal
    median is the background (offline, only to build the proxy); the largest upright blob wins."""
    bg = np.median(np.stack(frames[::5]), 0).astype(np.uint8)
    best = None
    for f in frames[len(frames) // 4 : 3 * len(frames) // 4 : 3]:
        m = (cv2.absdiff(f, bg) > 20).astype(np.uint8)
        m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
        n, lab, st, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
        for i in range(1, n):
            x, y, w, h, a = st[i]
            if h >= 1.3 * w and a >= 40 and a >= 0.35 * w * h and (best is None or a > best[0]):
                best = (a, f[y : y + h, x : x + w].copy(), (lab[y : y + h, x : x + w] == i).astype(np.uint8))
    if best is None:  # no clean blob: a textured ellipse of a normal height
        h = int(np.median(stats["height"]))
        m = np.zeros((h, h // 2), np.uint8)
        cv2.ellipse(m, (h // 4, h // 2), (h // 4, h // 2), 0, 0, 360, 1, -1)
        return texture(np.random.default_rng(0), h, h // 2), m
    return best[1], best[2]


def real_object(
    frames: list[np.ndarray], stats: dict, seed: int, sx: float, sy: float, speed: float = 1.0
) -> list[np.ndarray]:
    """A real person from the clip, scaled (sx wide, sy tall), gliding along the scene's dominant
    direction at ``speed`` times the normal speed of moving blobs at its row: ``wide_real`` (2.5, 1)
    is a cart-like object at walking pace, ``big_real`` (2, 2) a person twice too big for the row
    (perspective), ``fast_real`` (1, 1, speed 2) one person at twice the pace (a cyclist)."""
    rng = np.random.default_rng(seed)
    patch, mask = person_patch(frames, stats)
    hh, ww = frames[0].shape
    rows = len(stats["freq"])
    cell_h = hh / rows
    ph, pw = max(4, round(patch.shape[0] * sy)), max(4, round(patch.shape[1] * sx))
    patch = cv2.resize(patch, (pw, ph), interpolation=cv2.INTER_LINEAR)
    mask = cv2.resize(mask, (pw, ph), interpolation=cv2.INTER_NEAREST).astype(bool)
    busy = np.flatnonzero(stats["freq"] >= 0.5 * stats["freq"].max())
    r = int(rng.choice(busy))
    x, sign = rng.uniform(0, ww), rng.choice([-1.0, 1.0])
    horizontal = stats["horizontal"]
    yb = (r + 1) * cell_h  # the object's feet on that row
    out = []
    for f in frames:
        f = f.copy()
        x0, y0 = round(x - pw / 2), round(yb - ph)
        ys, xs = slice(max(y0, 0), min(y0 + ph, hh)), slice(max(x0, 0), min(x0 + pw, ww))
        if ys.stop > ys.start and xs.stop > xs.start:
            sub = (slice(ys.start - y0, ys.stop - y0), slice(xs.start - x0, xs.stop - x0))
            region = f[ys, xs]
            region[mask[sub]] = patch[sub][mask[sub]]
        out.append(f)
        row = int(np.clip((yb - 1) // cell_h, 0, rows - 1))
        v = sign * speed * stats["speed"][row]
        if horizontal:
            x = (x + v) % ww
        else:
            yb += v
            if not 0.3 * hh <= yb <= hh:
                sign, yb = -sign, float(np.clip(yb, 0.3 * hh, hh))
    return out


def extract(frames: dict[str, list[np.ndarray]], ex: CandidateExtractor) -> dict[str, np.ndarray]:
    out = {}
    for k, fr in frames.items():
        ex.reset()
        out[k] = np.stack([ex.process(f) for f in fr])
    return out


def build(scene: str, quick: bool, yolo: bool, log=print, bg: str = "warm") -> dict:
    """All features of a scene: train/<clip>, test/<clip>, speed2x/<clip>, wide/<clip>; + timings.
    ``bg``: "warm": the background model learns Train001's first 100 frames before every stream;
    "cold": it starts empty at every stream and learns at MOG2's own rate (history 100)."""
    tag = f"{scene}{'_quick' if quick else ''}{'_yolo' if yolo else ''}{'_cold' if bg == 'cold' else ''}"
    path = CACHE / f"feats_{tag}.npz"
    meta = CACHE / f"feats_{tag}.json"
    if path.exists() and meta.exists():
        import json

        z = np.load(path)
        return {"grids": {k: z[k] for k in z.files}, **json.loads(meta.read_text())}
    CACHE.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    train = decode(scene, "train")
    test = decode(scene, "test")
    if quick:
        keep = sorted(train)[:8]
        train = {k: train[k] for k in keep}
    ex = CandidateExtractor(EdgeSettings(), YoloxNano() if yolo else None, history=300 if bg == "warm" else 100)
    if bg == "warm":
        ex.warm(train[WARM_CLIP][:WARM_FRAMES])
    grids = {f"train/{k}": v for k, v in extract(train, ex).items()}
    n_frames = sum(len(v) for v in train.values())
    timing = {k: v / n_frames * 1e3 for k, v in ex.timings.items()}  # ms/frame, normal train clips
    log(f"{scene}: train features {time.monotonic() - t0:.0f}s {timing}")
    grids.update({f"test/{k}": v for k, v in extract(test, ex).items()})
    stats = scene_stats([grids[f"train/{k}"] for k in train])
    held = [k for k in sorted(train) if k != WARM_CLIP]
    seqs = {}
    for i, k in enumerate(held):
        seqs[f"speed2x/{k}"] = train[k][::2]
        seqs[f"wide/{k}"] = wide_object(train[k], stats, 1000 + i)
        seqs[f"wide_real/{k}"] = real_object(train[k], stats, 2000 + i, 2.5, 1.0)
        seqs[f"big_real/{k}"] = real_object(train[k], stats, 3000 + i, 2.0, 2.0)
    grids.update(extract(seqs, ex))
    log(f"{scene}: all features {time.monotonic() - t0:.0f}s")
    import json

    info = {
        "timing_ms": timing,
        "stats": {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in stats.items()},
        "frames_shape": list(next(iter(train.values()))[0].shape),
    }
    np.savez(path, **grids)
    meta.write_text(json.dumps(info))
    # One example of each proxy, for a look.
    k = held[0]
    for kind in ("wide", "wide_real", "big_real"):
        fr = seqs[f"{kind}/{k}"]
        cv2.imwrite(str(CACHE / f"proxy_{tag}_{kind}.png"), np.concatenate([fr[5], fr[len(fr) // 2]], 1))
    return {"grids": grids, **info}
