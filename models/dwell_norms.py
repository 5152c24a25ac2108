"""The normal dwell times of a view for its model card: per cell, the longest stay (vad/cell_stays.py)
over the training clips. The job's learned loitering detector flags a stay some factor longer."""

from __future__ import annotations

import numpy as np

from models.card import DwellNorms
from vad.cell_stays import longest_stays_ms
from vad.config.zones import ZoneConfig

# A stay means what it means for a zone with the default settings (vad/config/zones.py).
PRESENCE_LEVEL = ZoneConfig.model_fields["presence_level"].default
HOLD_S = ZoneConfig.model_fields["hold_s"].default


def dwell_norms(clips: dict[str, np.ndarray], times: dict[str, np.ndarray]) -> DwellNorms:
    """``clips``: {name: feature grids [n, R, C, F]}, ``times``: {name: event times in ms}."""
    hold_ms = round(HOLD_S * 1000)
    longest, seconds = None, 0.0
    for name, grids in clips.items():
        t = np.asarray(times[name], np.int64)
        clip = longest_stays_ms(grids, t, PRESENCE_LEVEL, hold_ms)
        longest = clip if longest is None else np.maximum(longest, clip)
        seconds += float(t[-1] - t[0]) / 1000 if len(t) > 1 else 0.0
    if longest is None:
        raise ValueError("no clips to take normal dwell times from")
    return DwellNorms(
        presence_level=PRESENCE_LEVEL,
        hold_s=HOLD_S,
        seconds=round(seconds, 1),
        longest_s=(longest / 1000).round(2).tolist(),
    )
