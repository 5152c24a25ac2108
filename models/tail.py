"""The upper tail of the smoothed score on normal video, as false *episodes* per hour, so that a
threshold for a target false-alarm rate can be set from a few minutes of normal video at any fps.

What is modelled is what the detector (vad.detect) compares with its threshold: the causal EMA of
the frame score, held for ``min_duration_s`` of event time (an episode opens at threshold t only if
the smoothed score stays >= t that long, so the level a run *sustains* is the min over that span).
Runs above a level u that are closer than ``merge_gap_s + cooldown_s`` form one cluster (the
detector would merge them, or keep them apart only by its cooldown), and each cluster is one
episode at threshold u. Peaks-over-threshold: the cluster peaks' excesses over u follow a
generalized Pareto distribution (Pickands-Balkema-de Haan), so the rate of episodes at t > u is
``rate_u * S(t - u)`` and the threshold for a target rate r solves ``rate_u * S(t - u) = r``. With
fewer than ``GPD_MIN`` clusters the shape is not estimable and the tail is taken as exponential
(shape 0, scale = the mean excess): lighter-tailed models would set the threshold too low.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

# Clusters above u needed to fit the GPD shape; fewer: exponential tail (shape 0).
GPD_MIN = 30
# Clusters above u the exponential fallback looks for before taking a lower level.
EXPONENTIAL_MIN = 10
# Candidate levels u, as quantiles of the sustained score: the highest leaving GPD_MIN clusters.
LEVELS = (0.98, 0.95, 0.9, 0.8, 0.7, 0.6, 0.5)
# The shape is bounded: |xi| > 0.5 from a few dozen peaks is noise, and xi >= 1 has no mean.
SHAPE_BOUNDS = (-0.5, 0.5)


class TailModel(BaseModel):
    """Episodes per hour of normal video above a level, and the tail of their peaks above it."""

    model_config = ConfigDict(extra="forbid")
    method: Literal["gpd", "gpd-pwm", "exponential"]
    level: float = Field(description="u: the level the peaks are taken over")
    episodes_per_hour_at_level: float = Field(ge=0, description="clusters per hour of normal video above u")
    shape: float = Field(ge=SHAPE_BOUNDS[0], le=SHAPE_BOUNDS[1], description="GPD shape xi (0: exponential)")
    scale: float = Field(gt=0, description="GPD scale sigma of the excesses over u")
    clusters: int = Field(ge=0, description="clusters above u the fit used")
    hours: float = Field(gt=0, description="hours of held-out normal video")
    max_peak: float = Field(description="the highest sustained score seen on that video")
    # The detector settings the episodes were counted with: another setting changes the rate.
    ema_alpha: float = Field(gt=0, le=1)
    min_duration_s: float = Field(ge=0)
    merge_gap_s: float = Field(ge=0)
    cooldown_s: float = Field(ge=0)

    def episodes_per_hour(self, threshold: float) -> float:
        """Modelled false episodes per hour at ``threshold`` (the level's rate below it)."""
        x = threshold - self.level
        if x <= 0:
            return self.episodes_per_hour_at_level
        if abs(self.shape) < 1e-9:
            return self.episodes_per_hour_at_level * math.exp(-x / self.scale)
        z = 1 + self.shape * x / self.scale
        return 0.0 if z <= 0 else self.episodes_per_hour_at_level * z ** (-1 / self.shape)

    def threshold(self, per_hour: float) -> float:
        """The threshold whose modelled rate of false episodes is ``per_hour``; never below the
        level u (rates above the level's are not modelled: the level is returned)."""
        if not per_hour > 0:
            raise ValueError("the target rate must be positive")
        lam = self.episodes_per_hour_at_level
        if lam <= per_hour:
            return self.level
        ratio = lam / per_hour  # > 1
        if abs(self.shape) < 1e-9:
            return self.level + self.scale * math.log(ratio)
        return self.level + self.scale / self.shape * (ratio**self.shape - 1)


def sustained(smoothed: np.ndarray, ts_ms: np.ndarray, min_duration_s: float) -> np.ndarray:
    """Per frame, the highest threshold at which the detector would open there: the min of the
    smoothed score over the last ``min_duration_s`` of event time (-inf before that much video)."""
    s, ts = np.asarray(smoothed, np.float64), np.asarray(ts_ms, np.int64)
    start = np.searchsorted(ts, ts - round(min_duration_s * 1000), side="right") - 1
    out = np.full(len(s), -np.inf)
    for i, j in enumerate(start):
        if j >= 0:
            out[i] = s[j : i + 1].min()
    return out


def cluster_peaks(levels: np.ndarray, ts_ms: np.ndarray, u: float, separation_ms: int) -> list[float]:
    """Peaks of the runs of ``levels`` >= u, runs less than ``separation_ms`` apart merged."""
    peaks: list[float] = []
    last_ts = None
    for v, t in zip(levels, ts_ms, strict=True):
        if v < u:
            continue
        if last_ts is None or t - last_ts > separation_ms:
            peaks.append(float(v))
        else:
            peaks[-1] = max(peaks[-1], float(v))
        last_ts = t
    return peaks


def _pwm(excess: np.ndarray) -> tuple[float, float]:
    """GPD shape and scale by probability-weighted moments (Hosking and Wallis 1987): steadier
    than maximum likelihood on a few dozen peaks."""
    x = np.sort(excess)
    n = len(x)
    a0 = float(x.mean())
    a1 = float(np.mean((1 - (np.arange(1, n + 1) - 0.35) / n) * x))
    if a0 - 2 * a1 <= 0:
        return SHAPE_BOUNDS[1], a0 * (1 - SHAPE_BOUNDS[1])
    return 2 - a0 / (a0 - 2 * a1), 2 * a0 * a1 / (a0 - 2 * a1)


def _fit_excesses(excess: np.ndarray) -> tuple[str, float, float]:
    mean = float(excess.mean()) if len(excess) else 0.0
    if len(excess) < EXPONENTIAL_MIN or mean <= 0:
        return "exponential", 0.0, mean
    if len(excess) >= GPD_MIN:
        from scipy.stats import genpareto

        xi, _, sigma = genpareto.fit(excess, floc=0)
        method = "gpd"
        lo = SHAPE_BOUNDS[0]
    else:
        xi, sigma = _pwm(excess)
        method = "gpd-pwm"
        # From a few dozen peaks a bounded tail (xi < 0) is not told from sampling noise, and it
        # sets the threshold at the largest peak seen: the exponential is the lightest tail assumed.
        lo = 0.0
    if lo <= xi <= SHAPE_BOUNDS[1] and sigma > 0:
        return method, float(xi), float(sigma)
    xi = float(np.clip(xi, lo, SHAPE_BOUNDS[1]))
    return method, xi, mean * (1 - xi)  # the GPD's mean excess is sigma / (1 - xi)


def fit_tail(
    clips: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    ema_alpha: float,
    min_duration_s: float,
    merge_gap_s: float,
    cooldown_s: float,
) -> TailModel:
    """Fits the tail on held-out normal clips: ``(smoothed score, event time ms)`` per clip, the
    score smoothed as the detector does with ``ema_alpha``."""
    if not clips:
        raise ValueError("no calibration clips")
    held = [(sustained(s, t, min_duration_s), np.asarray(t, np.int64)) for s, t in clips]
    # A clip's duration counts its last frame's period too (its median frame interval).
    hours = sum((t[-1] - t[0] + (np.median(np.diff(t)) if len(t) > 1 else 100)) for _, t in held) / 3.6e6
    finite = np.concatenate([m[np.isfinite(m)] for m, _ in held])
    if finite.size == 0:
        raise ValueError(f"calibration clips are shorter than min_duration_s ({min_duration_s} s)")
    sep = round((merge_gap_s + cooldown_s) * 1000)
    # The highest level leaving enough clusters for the GPD, else for the exponential, else the
    # level with the most clusters: a low level fits the bulk of the scores, not their tail.
    candidates = []
    for q in LEVELS:
        u = float(np.quantile(finite, q))
        candidates.append((u, np.array([p for m, t in held for p in cluster_peaks(m, t, u, sep)])))
    u, peaks = next(
        (c for c in candidates if len(c[1]) >= GPD_MIN),
        next((c for c in candidates if len(c[1]) >= EXPONENTIAL_MIN), max(candidates, key=lambda c: len(c[1]))),
    )
    method, xi, sigma = _fit_excesses(peaks - u)
    # Scores constant on the calibration video leave no spread: a scale of 5 % of the level (or a
    # tiny absolute one) keeps the model valid and the threshold just above what was seen.
    sigma = sigma if sigma > 0 else max(abs(u) * 0.05, 1e-6)
    return TailModel(
        method=method,
        level=u,
        episodes_per_hour_at_level=len(peaks) / hours,
        shape=xi,
        scale=sigma,
        clusters=len(peaks),
        hours=hours,
        max_peak=float(finite.max()),
        ema_alpha=ema_alpha,
        min_duration_s=min_duration_s,
        merge_gap_s=merge_gap_s,
        cooldown_s=cooldown_s,
    )
