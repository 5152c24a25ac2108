"""Each camera's recent score quantiles beside the model card's calibration: the model-health metrics.

A model card's calibration holds quantiles of the frame score on normal video, smoothed with an
EMA of its ``ema_alpha``. The scoring operator hands every frame score to ``observe`` with the
calibration of the model that scored it (cameras may have models of their own); each camera's scores
are smoothed the same way (afresh after a GAP or when its model changes), the last ``window`` of them
kept in a ring, and every ``refresh`` scores, once it holds ``min_samples``, the camera's p50 and p99
set from the ring. Registered in the operator's ``vad`` group, under a ``camera`` key group (a label):

    vad.camera.score_p50_x1000, vad.camera.score_p99_x1000   gauges (Python gauges are integers)
    vad.camera.calibration_p99_x1000                         gauge, its model card's "0.99" quantile
    vad.camera.windows_scored                                counter

exported by Flink's Prometheus reporter as ``flink_taskmanager_job_task_operator_vad_camera_score_p99_x1000
{camera="..."}`` and so on. A gauge keeps its last value once its camera falls silent, so the drift
rule (k8s/base/monitoring.yaml) also asks for a rate of the camera's ``windows_scored``.

Cardinality: four series per camera, each camera on one scoring subtask (a shard holds it), and at
most ``max_cameras`` cameras per subtask (the job's cameras are bounded by its producers; cameras
past the cap are not tracked, logged once). Memory: ``window`` float32 per tracked camera (16 KiB).
The rings are not state: after a restart each camera warms up again before its gauges move.
"""

from __future__ import annotations

import logging
from typing import Protocol

import numpy as np

log = logging.getLogger(__name__)

WINDOW = 4096  # ~7 min of a 10 fps camera: p99 from ~40 frames over the calibrated level
MIN_SAMPLES = 2048
REFRESH = 256
MAX_CAMERAS = 1024
CALIBRATED = "0.99"


class Calibration(Protocol):
    """What is read of a model card's ``calibration`` (models.card.Calibration)."""

    ema_alpha: float
    frame_score_quantiles: dict[str, float]


class _Camera:
    __slots__ = ("calibrated", "calibration", "ema", "n", "p50", "p99", "published", "ring", "scored", "since")

    def __init__(self, window: int, scored):
        self.ring = np.empty(window, np.float32)
        self.n = self.since = 0
        self.ema: float | None = None
        self.p50 = self.p99 = self.calibrated = 0
        self.calibration: Calibration | None = None
        self.scored = scored
        self.published = False


class ScoreDrift:
    """Per-camera score quantiles of one scoring subtask, as Flink metrics in ``group``."""

    def __init__(
        self,
        group,
        *,
        window: int = WINDOW,
        min_samples: int = MIN_SAMPLES,
        refresh: int = REFRESH,
        max_cameras: int = MAX_CAMERAS,
    ):
        if not 0 < min_samples <= window or refresh < 1 or max_cameras < 1:
            raise ValueError("score drift: need 0 < min_samples <= window, refresh >= 1, max_cameras >= 1")
        self._group = group
        self._window, self._min, self._refresh, self._max = window, min_samples, refresh, max_cameras
        self._cams: dict[str, _Camera] = {}
        self._capped = False

    def observe(self, camera: str, score: float, calibration: Calibration, gap: bool = False) -> None:
        c = self._cams.get(camera)
        if c is None:
            if len(self._cams) >= self._max:
                if not self._capped:
                    self._capped = True
                    log.warning("score drift: tracking %d cameras already, %s and later are not", self._max, camera)
                return
            scored = self._group.add_group("camera", camera).counter("windows_scored")
            c = self._cams[camera] = _Camera(self._window, scored)
        if calibration is not c.calibration:  # another model: another score scale, another card
            c.calibration, c.n, c.since, c.ema = calibration, 0, 0, None
            calibrated = calibration.frame_score_quantiles.get(CALIBRATED)
            if calibrated is None:  # 0: the drift rule divides by calibrations above 0 only
                log.warning("score drift: camera %s's model card has no %s frame-score quantile", camera, CALIBRATED)
            c.calibrated = 0 if calibrated is None else round(calibrated * 1000)
        a = calibration.ema_alpha
        c.ema = score if gap or c.ema is None else a * score + (1 - a) * c.ema
        c.ring[c.n % self._window] = c.ema
        c.n += 1
        c.since += 1
        c.scored.inc()
        if c.n >= self._min and c.since >= self._refresh:
            self._publish(camera, c)

    def quantiles(self, camera: str) -> tuple[float, float] | None:
        """(p50, p99) last published for ``camera``, None before it has ``min_samples``."""
        c = self._cams.get(camera)
        return (c.p50 / 1000, c.p99 / 1000) if c is not None and c.published else None

    def _publish(self, camera: str, c: _Camera) -> None:
        p50, p99 = np.quantile(c.ring[: min(c.n, self._window)], (0.5, 0.99))
        c.p50, c.p99, c.since = round(float(p50) * 1000), round(float(p99) * 1000), 0
        if not c.published:
            c.published = True
            # PyFlink hands back the camera's existing group: one group per camera.
            self._group.add_group("camera", camera).gauge("score_p50_x1000", lambda: c.p50)
            self._group.add_group("camera", camera).gauge("score_p99_x1000", lambda: c.p99)
            self._group.add_group("camera", camera).gauge("calibration_p99_x1000", lambda: c.calibrated)
