"""Per-camera score quantiles for the drift alert, registered in PyFlink's own metric groups (the
ones a Python worker hands the operator): a camera's gauges follow its smoothed scores' quantiles,
under a `camera` key group (a Prometheus label), beside its model card's calibrated p99."""

from __future__ import annotations

import json

import numpy as np
import pytest
from apache_beam.metrics.execution import MetricsContainer
from apache_beam.metrics.metricbase import MetricName
from apache_beam.runners.worker import statesampler
from apache_beam.utils.counters import CounterFactory
from pyflink.fn_execution.metrics.process.metric_impl import GenericMetricGroup

from udfs.metrics import vad_metrics
from udfs.score_drift import ScoreDrift


class Cal:
    """A model card's calibration (models.card.Calibration), the fields read."""

    def __init__(self, ema_alpha: float = 0.5, p99: float | None = 1.3632):
        self.ema_alpha = ema_alpha
        self.frame_score_quantiles = {"0.999": 1.59} | ({} if p99 is None else {"0.99": p99})


CAL = Cal()


class _Runtime:
    def __init__(self, group):
        self.group = group

    def get_metrics_group(self):
        return self.group


@pytest.fixture
def step():
    """A bundle's step scope, as the Python worker runs process_element in: counters count into
    ``container``."""
    sampler = statesampler.StateSampler("bundle", CounterFactory())
    statesampler.set_current_tracker(sampler)
    container = MetricsContainer("score-detect")
    with sampler.scoped_state("score-detect", "process", metrics_container=container):
        yield container
    statesampler.set_current_tracker(None)


def _vad_group() -> GenericMetricGroup:
    return vad_metrics(_Runtime(GenericMetricGroup(None, None)))


def _gauges(group: GenericMetricGroup, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], int]:
    """Every gauge under ``group`` by its group path and name, read as the worker reads them when
    a bundle finishes."""
    out = {}
    for name, fn in group._flink_gauge.items():
        out[(*prefix, name)] = fn()
    for sub in group._sub_groups:
        out.update(_gauges(sub, (*prefix, sub._name)))
    return out


def _ema(x, alpha):
    out, e = [], None
    for v in x:
        e = v if e is None else alpha * v + (1 - alpha) * e
        out.append(e)
    return np.array(out, np.float32)


def test_no_camera_gauge_before_it_has_enough_scores_then_its_quantiles_and_calibration(step):
    g = _vad_group()
    drift = ScoreDrift(g, window=200, min_samples=100, refresh=10)
    for _ in range(99):
        drift.observe("cam-1", 1.0, CAL)
    assert drift.quantiles("cam-1") is None
    assert _gauges(g) == {}
    drift.observe("cam-1", 1.0, CAL)
    assert _gauges(g) == {
        ("camera", "cam-1", "score_p50_x1000"): 1000,
        ("camera", "cam-1", "score_p99_x1000"): 1000,
        ("camera", "cam-1", "calibration_p99_x1000"): 1363,
    }
    # The camera is a key group: its name becomes a label, not a part of the metric's name.
    cam = g.add_group("camera", "cam-1")
    assert json.loads(cam._get_namespace())[:3] == ["vad", "camera", "cam-1"]
    assert "MetricGroupType.key" in cam._get_namespace() and "MetricGroupType.value" in cam._get_namespace()
    counted = step.get_counter(MetricName(cam._get_namespace(), "windows_scored")).get_cumulative()
    assert counted == 100


def test_quantiles_are_those_of_the_scores_smoothed_as_the_card_was_calibrated(step):
    rng = np.random.default_rng(7)
    scores = rng.gamma(4.0, 0.2, 600)
    g = _vad_group()
    drift = ScoreDrift(g, window=400, min_samples=200, refresh=50)
    for s in scores:
        drift.observe("c", float(s), CAL)
    recent = _ema(scores, 0.5)[-400:]
    p50, p99 = drift.quantiles("c")
    assert p50 == pytest.approx(float(np.quantile(recent, 0.5)), abs=1e-3)
    assert p99 == pytest.approx(float(np.quantile(recent, 0.99)), abs=1e-3)
    # Raw scores have a wider tail than smoothed ones: the gauge is not the raw quantile.
    assert abs(p99 - float(np.quantile(scores[-400:], 0.99))) > 0.05
    assert _gauges(g)[("camera", "c", "score_p99_x1000")] == round(p99 * 1000)


def test_a_camera_whose_scores_move_moves_its_gauge_and_no_other(step):
    rng = np.random.default_rng(3)
    g = _vad_group()
    drift = ScoreDrift(g, window=300, min_samples=150, refresh=30)
    for s in rng.normal(1.0, 0.1, 300):
        drift.observe("steady", float(s), CAL)
        drift.observe("moved", float(s), CAL)
    before = _gauges(g)
    assert abs(before[("camera", "moved", "score_p99_x1000")] - before[("camera", "steady", "score_p99_x1000")]) < 60
    for s in rng.normal(1.0, 0.1, 300):
        drift.observe("steady", float(s), CAL)
        drift.observe("moved", 2.5 * float(s), CAL)  # a moved camera: every score higher
    after = _gauges(g)
    assert after[("camera", "moved", "score_p99_x1000")] > 2 * before[("camera", "moved", "score_p99_x1000")]
    assert abs(after[("camera", "steady", "score_p99_x1000")] - before[("camera", "steady", "score_p99_x1000")]) < 100


def test_a_gap_restarts_the_smoothing(step):
    drift = ScoreDrift(_vad_group(), window=4, min_samples=1, refresh=1)
    drift.observe("c", 0.0, CAL)
    drift.observe("c", 4.0, CAL)  # smoothed: 2.0
    drift.observe("c", 4.0, CAL, gap=True)  # afresh: 4.0, not 3.0
    assert drift.quantiles("c")[1] == pytest.approx(np.quantile([0.0, 2.0, 4.0], 0.99), abs=1e-3)


def test_cameras_past_the_cap_are_not_tracked(step):
    g = _vad_group()
    drift = ScoreDrift(g, window=2, min_samples=1, refresh=1, max_cameras=2)
    for cam in ("a", "b", "c"):
        drift.observe(cam, 1.0, CAL)
    assert drift.quantiles("c") is None
    assert {k[1] for k in _gauges(g) if k[0] == "camera"} == {"a", "b"}


def test_another_model_starts_the_camera_afresh_against_its_own_card(step):
    g = _vad_group()
    drift = ScoreDrift(g, window=10, min_samples=4, refresh=1)
    for _ in range(10):
        drift.observe("c", 1.0, CAL)
    new = Cal(ema_alpha=1.0, p99=3.0)  # a new version with scores on another scale
    for _ in range(3):
        drift.observe("c", 3.0, new)
    # Not warm again yet: the gauges hold the old model's values, no mix of the two scales.
    assert _gauges(g)[("camera", "c", "score_p99_x1000")] == 1000
    drift.observe("c", 3.0, new)
    assert _gauges(g)[("camera", "c", "score_p99_x1000")] == 3000
    assert _gauges(g)[("camera", "c", "calibration_p99_x1000")] == 3000


def test_a_card_without_the_calibrated_quantile_exports_a_calibration_of_0(step):
    g = _vad_group()
    drift = ScoreDrift(g, window=2, min_samples=1, refresh=1)
    drift.observe("c", 1.0, Cal(p99=None))
    assert _gauges(g)[("camera", "c", "calibration_p99_x1000")] == 0  # the rule skips it


def test_bad_bounds_are_refused():
    with pytest.raises(ValueError, match="min_samples"):
        ScoreDrift(_vad_group(), window=10, min_samples=11)


def test_no_op_metrics_take_the_drift_gauges_too():
    drift = ScoreDrift(vad_metrics(_Runtime(None)), window=2, min_samples=1, refresh=1)
    drift.observe("c", 1.0, CAL)
    assert drift.quantiles("c") == (1.0, 1.0)
