from bench import models


def test_the_per_view_cost_is_measured_on_the_same_batches():
    got = models.run(quick=True)
    assert (got["models_cameras"], got["models_views"]) == (100, 10)
    assert got["score_us_per_record_one_model"] > 0 and got["score_us_per_record_per_view"] > 0
    ratio = got["score_us_per_record_per_view"] / got["score_us_per_record_one_model"]
    assert abs(got["per_view_models_cost_ratio"] - ratio) < 0.02
