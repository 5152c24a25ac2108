"""Feature grids for integration tests that write records directly instead of through the edge."""

from __future__ import annotations

import numpy as np

from vad.schema import N_CHANNELS


def grid_features(anomalous: bool) -> np.ndarray:
    """A grid of the shipped model's shape: no motion (scores 0), or fast motion to the right over a
    block of cells, far above the model's threshold."""
    f = np.zeros((12, 18, N_CHANNELS), np.float32)
    if anomalous:
        f[4:8, 6:12, [0, 2, 3]] = 6.0
        f[4:8, 6:12, 11] = 0.3
    return f
