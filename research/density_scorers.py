"""Scorers for issue 26, fitted per camera on normal feature grids [n, R, C, F] (research only).

All are causal: a frame's score uses its window of the last T grids (the first grid repeated at a
stream's start, as vad.windows does). Cell scores -> frame score = max over cells. Families:

- ``scalep``: the product default (models.scorers.scalep), for reference.
- ``knn``: per-cell k-nearest-neighbour distance of the cell's window vector (chosen channels, signed
  log1p, divided by each channel's std over active training cells, T grids stacked) to a bank of
  normal vectors from that cell's 3x3 neighbourhood (so rarely visited cells borrow from neighbours;
  position-conditioned without a position feature). The bank keeps at most ``bank`` active vectors
  (random subsample) plus the zero vector: an empty cell is always normal.
- ``kmeans``: the same, the bank replaced by ``bank`` k-means centroids (cheap enough for the job).
- ``predict``: per-cell ridge regression of the cell's vector at t from its vectors at t-T+1..t-1,
  score = norm of the standardised residual.
- ``max``: a combination: each member's frame score divided by its own 99th percentile on normal
  clips held out inside the fitting set (two-fold), then the max.
"""

from __future__ import annotations

import time

import numpy as np

from models.scorers import scalep
from research.feature_candidates import CHANNELS

SIGNED = {"dx", "dy"}
FEATURE_SETS = {
    "base": ("dx", "dy", "mag", *(f"dir{i}" for i in range(8)), "fg"),
    "motion4": ("mag", "dx", "dy", "fg"),
    "motion_fgf": ("mag", "dx", "dy", "fg", "fgf"),
    "obj4": ("mag", "obj_h", "obj_w", "obj_speed"),
    "compact": ("mag", "dx", "dy", "fg", "fgf", "obj_h", "obj_w", "obj_sqa", "obj_fill", "obj_speed"),
    "base_obj": (
        *("dx", "dy", "mag", *(f"dir{i}" for i in range(8)), "fg"),
        *("fgf", "obj_h", "obj_w", "obj_sqa", "obj_fill", "obj_speed"),
    ),
    "base_hog": (*("dx", "dy", "mag", *(f"dir{i}" for i in range(8)), "fg"), "fgf", *(f"hog{i}" for i in range(8))),
    "all": CHANNELS,
    "shape": ("fgf", *(f"hog{i}" for i in range(8)), "obj_h", "obj_w", "obj_sqa", "obj_fill", "obj_speed"),
    "compact_yolo": (
        *("mag", "dx", "dy", "fg", "fgf", "obj_h", "obj_w", "obj_sqa", "obj_fill", "obj_speed"),
        "yolo_person",
        "yolo_other",
    ),
}
ALL_CHANNELS = (*CHANNELS, "yolo_person", "yolo_other")


def select(grids: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    """Channels by name, signed log1p: [n, R, C, F_all] -> float32 [n, R, C, len(names)]."""
    x = grids[..., [ALL_CHANNELS.index(c) for c in names]].astype(np.float32)
    return np.sign(x) * np.log1p(np.abs(x))


def windows(x: np.ndarray, t: int) -> np.ndarray:
    """Causal windows stacked on the last axis: [n, R, C, F] -> [n, R, C, F*t] (oldest first)."""
    if t == 1:
        return x
    pad = np.concatenate([np.repeat(x[:1], t - 1, 0), x])
    return np.concatenate([pad[i : i + len(x)] for i in range(t)], axis=-1)


def neighbours(rows: int, cols: int, radius: int = 1) -> list[list[int]]:
    out = []
    for r in range(rows):
        for c in range(cols):
            rr = range(max(r - radius, 0), min(r + radius + 1, rows))
            cc = range(max(c - radius, 0), min(c + radius + 1, cols))
            out.append([i * cols + j for i in rr for j in cc])
    return out


class Prep:
    """Channel selection, per-channel scale (std over active training cells), windows."""

    def __init__(self, names: tuple[str, ...], t: int):
        self.names, self.t = names, t

    def fit(self, clips: list[np.ndarray]) -> Prep:
        x = np.concatenate([select(c, self.names) for c in clips]).reshape(-1, len(self.names))
        act = x[np.abs(x).max(1) > 0]
        self.scale = (act.std(0) if len(act) else np.ones(x.shape[1])).astype(np.float32) + 1e-3
        return self

    def __call__(self, clip: np.ndarray) -> np.ndarray:
        return windows(select(clip, self.names) / self.scale, self.t)


def _cells(xs: list[np.ndarray]) -> np.ndarray:
    x = np.concatenate(xs)
    n, r, c, d = x.shape
    return x.reshape(n, r * c, d).transpose(1, 0, 2)  # [cells, n, D]


class CellBank:
    """knn / kmeans density per cell."""

    def __init__(self, names, t=1, k=1, bank=1024, kind="knn", seed=0, calib=False, q=99.0):
        self.prep, self.k, self.bank_size, self.kind, self.seed = Prep(names, t), k, bank, kind, seed
        self.calib, self.q = calib, q
        self.norm = None

    def fit(self, clips: list[np.ndarray]):
        """With ``calib``: each cell's distance is divided by the q-th percentile of the distances of
        normal vectors held out from its bank (two halves of the clips, each scored against a bank of
        the other), pooled over the 3x3 neighbourhood and floored at half the median cell's: like
        scalep's per-cell scale, a score of about 1 is the normal tail of that cell."""
        self.prep.fit(clips)
        self.norm = None
        if self.calib and len(clips) >= 2:
            held = []
            for a, b in ((clips[0::2], clips[1::2]), (clips[1::2], clips[0::2])):
                self._build(a)
                held.append(np.concatenate([self.cell_scores(c) for c in b]))
            d = np.concatenate(held)  # [n, R, C]
            rows, cols = d.shape[1:]
            flat = d.reshape(len(d), -1)
            q = []
            for nb in neighbours(rows, cols):
                v = flat[:, nb].ravel()
                v = v[v > 0]
                q.append(np.percentile(v, self.q) if len(v) >= 20 else np.nan)
            q = np.array(q)
            floor = 0.5 * np.nanmedian(q) if np.isfinite(q).any() else 1.0
            self.norm = np.where(np.isfinite(q), np.maximum(q, floor), floor).reshape(rows, cols).astype(np.float32)
        self._build(clips)
        return self

    def _build(self, clips: list[np.ndarray]):
        self.norm_on = False
        cells = _cells([self.prep(c) for c in clips])
        ncell, _, d = cells.shape
        rows, cols = clips[0].shape[1:3]
        active = [cells[i][np.abs(cells[i]).max(1) > 0] for i in range(ncell)]
        rng = np.random.default_rng(self.seed)
        self.banks = []
        for nb in neighbours(rows, cols):
            pool = np.concatenate([active[j] for j in nb]) if nb else np.zeros((0, d), np.float32)
            if self.kind == "kmeans" and len(pool) > self.bank_size:
                from sklearn.cluster import MiniBatchKMeans

                km = MiniBatchKMeans(self.bank_size, random_state=self.seed, n_init=1, batch_size=2048)
                pool = km.fit(pool[rng.permutation(len(pool))[:20000]]).cluster_centers_.astype(np.float32)
            elif len(pool) > self.bank_size:
                pool = pool[rng.choice(len(pool), self.bank_size, replace=False)]
            b = np.concatenate([np.zeros((1, d), np.float32), pool]).astype(np.float32)
            self.banks.append((b, (b * b).sum(1)))
        self.shape = (rows, cols)
        self.norm_on = self.norm is not None

    def cell_scores(self, clip: np.ndarray) -> np.ndarray:
        out = self._dist(clip)
        return out / self.norm if self.norm_on else out

    def _dist(self, clip: np.ndarray) -> np.ndarray:
        x = self.prep(clip)
        n = len(x)
        cells = x.reshape(n, -1, x.shape[-1])
        out = np.zeros((n, cells.shape[1]), np.float32)
        for i, (b, bb) in enumerate(self.banks):
            xi = cells[:, i]
            act = np.abs(xi).max(1) > 0
            if not act.any():
                continue
            a = xi[act]
            d2 = (a * a).sum(1)[:, None] + bb[None] - 2 * a @ b.T
            k = min(self.k, b.shape[0])
            part = np.partition(d2, k - 1, axis=1)[:, :k]
            out[act, i] = np.sqrt(np.maximum(part, 0)).mean(1)
        return out.reshape(n, *self.shape)


class CellPredict:
    """Per-cell ridge forecast of the cell's vector from its previous T-1 vectors."""

    def __init__(self, names, t=3, lam=1.0):
        self.names, self.t, self.lam = names, t, lam
        self.prep = Prep(names, t)

    def _xy(self, clip):
        w = self.prep(clip)
        d = len(self.names)
        n, r, c, _ = w.shape
        w = w.reshape(n, r * c, -1)
        x = np.concatenate([w[..., :-d], np.ones((n, r * c, 1), np.float32)], -1)
        return x, w[..., -d:]

    def fit(self, clips):
        self.prep.fit(clips)
        xs, ys = zip(*(self._xy(c) for c in clips), strict=False)
        x, y = np.concatenate(xs).transpose(1, 0, 2), np.concatenate(ys).transpose(1, 0, 2)
        rows, cols = clips[0].shape[1:3]
        self.shape = (rows, cols)
        self.w = []
        for nb in neighbours(rows, cols):
            xa, ya = np.concatenate(x[nb]), np.concatenate(y[nb])
            keep = (np.abs(xa[:, :-1]).max(1) > 0) | (np.abs(ya).max(1) > 0)
            xa, ya = xa[keep], ya[keep]
            if len(xa) < 5:
                self.w.append(np.zeros((x.shape[-1], y.shape[-1]), np.float32))
                continue
            reg = self.lam * np.eye(xa.shape[1])
            reg[-1, -1] = 0
            self.w.append(np.linalg.solve(xa.T @ xa + reg, xa.T @ ya).astype(np.float32))
        self.w = np.stack(self.w)  # [cells, in, out]
        return self

    def cell_scores(self, clip):
        x, y = self._xy(clip)
        pred = np.einsum("nci,cio->nco", x, self.w)
        err = np.sqrt(((y - pred) ** 2).mean(-1))
        return err.reshape(len(clip), *self.shape)


class ScaleP:
    def fit(self, clips):
        self.scale = scalep.fit(clips)
        return self

    def cell_scores(self, clip):
        return clip[..., 2] / self.scale


class MultiScale:
    """scalep generalised to several channels: each channel divided by its own per-cell scale (the
    99th percentile over the 3x3 neighbourhood, floored by the per-row line: scalep.fit unchanged),
    cell score = max over channels. Size channels (obj_w, obj_sqa, ...) carry perspective in their
    per-cell scales, as mag does for speed."""

    def __init__(self, names, q=99.0, t=1, box=1):
        self.idx = [ALL_CHANNELS.index(c) for c in names]
        self.q, self.t, self.box = q, t, box

    def _pool(self, clip):
        """The chosen channels averaged over the last t grids (causal) and a box x box block of cells
        (the block ending at the cell, edges repeated): less noise per cell before the max."""
        x = clip[..., self.idx].astype(np.float32)
        if self.t > 1:
            c = np.cumsum(np.concatenate([np.repeat(x[:1], self.t, 0), x]), 0)
            x = (c[self.t :] - c[: -self.t]) / self.t
        if self.box > 1:
            b = self.box
            p = np.pad(x, [(0, 0), (b - 1, 0), (b - 1, 0), (0, 0)], mode="edge")
            r, cc = x.shape[1:3]
            x = sum(p[:, i : i + r, j : j + cc] for i in range(b) for j in range(b)) / (b * b)
        return x

    def fit(self, clips):
        pooled = [self._pool(c) for c in clips]
        self.scales = np.stack(
            [scalep.fit([np.repeat(c[..., i : i + 1], 3, -1) for c in pooled], q=self.q) for i in range(len(self.idx))],
            -1,
        )
        return self

    def cell_scores(self, clip):
        return (self._pool(clip) / self.scales).max(-1)


class Channel:
    """One channel as the cell score, nothing fitted (e.g. YOLOX's non-person box score)."""

    def __init__(self, name):
        self.i = ALL_CHANNELS.index(name)

    def fit(self, clips):
        return self

    def cell_scores(self, clip):
        return clip[..., self.i]


def make(spec: dict):
    fam = spec["family"]
    if fam == "scalep":
        return ScaleP()
    if fam in ("knn", "kmeans"):
        return CellBank(
            FEATURE_SETS[spec["features"]],
            spec.get("t", 1),
            spec.get("k", 1),
            spec.get("bank", 1024),
            fam,
            calib=spec.get("calib", False),
            q=spec.get("q", 99.0),
        )
    if fam == "channel":
        return Channel(spec["channel"])
    if fam == "multiscale":
        return MultiScale(tuple(spec["channels"]), spec.get("q", 99.0), spec.get("t", 1), spec.get("box", 1))
    if fam == "predict":
        return CellPredict(FEATURE_SETS[spec["features"]], spec.get("t", 3), spec.get("lam", 1.0))
    if fam == "max":
        return MaxOf([make(s) for s in spec["members"]])
    raise ValueError(fam)


def frame_scores(model, clip: np.ndarray) -> np.ndarray:
    c = model.cell_scores(clip)
    return c.reshape(len(c), -1).max(1)


class MaxOf:
    """Max of members' frame scores, each divided by its 99th percentile on held-out normal clips."""

    def __init__(self, members):
        self.members = members

    def fit(self, clips):
        halves = (clips[0::2], clips[1::2]) if len(clips) >= 2 else (clips, clips)
        self.q = []
        for m in self.members:
            qs = []
            for a, b in (halves, halves[::-1]):
                m.fit(a)
                qs.append(np.concatenate([frame_scores(m, c) for c in b]))
            self.q.append(float(np.percentile(np.concatenate(qs), 99)) + 1e-6)
            m.fit(clips)
        return self

    def cell_scores(self, clip):
        return np.max([m.cell_scores(clip) / q for m, q in zip(self.members, self.q, strict=False)], axis=0)


def ema(x: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    out, e = np.empty(len(x)), None
    for i, v in enumerate(x):
        e = v if e is None else alpha * v + (1 - alpha) * e
        out[i] = e
    return out


def us_per_window(model, clip: np.ndarray, reps: int = 3) -> float:
    """Single-thread numpy cost of scoring, per window (frame), over a real clip, best of reps.
    Includes the window stacking; the grids are already on the consumer."""
    best = np.inf
    for _ in range(reps):
        t0 = time.thread_time()
        frame_scores(model, clip)
        best = min(best, time.thread_time() - t0)
    return best / len(clip) * 1e6
