import pytest

from vad.config import EdgeConfig, load_config
from vad.edge.digest import FEATURE_FIELDS, describe, feature_settings, settings_digest

BASE = EdgeConfig()

# A changed value for every field the features depend on.
CHANGED = {
    "grid_rows": 24,
    "grid_cols": 36,
    "flow": "farneback",
    "dis_preset": "fast",
    "dis_finest_scale": 0,
    "dis_iterations": 12,
    "dis_refine_iterations": 5,
    "dis_patch_stride": 4,
    "flow_scale": 1.0,
    "flow_min_height": 0,
    "normalise": "equalize",
    "flow_gate": 0.0,
    "compensate_camera_motion": False,
    "resize": (320, 240),
    "sample_every": 2,
    "target_fps": None,
}


def test_the_default_settings_digest_is_pinned():
    # Edges and jobs of different releases compare digests: the canonical form may not change
    # without FEATURE_CODE_VERSION (and a note in the changelog), or every record is refused.
    assert settings_digest(BASE) == 303947157


@pytest.mark.parametrize("name", [f for f in FEATURE_FIELDS if f != "clahe_clip"])
def test_every_setting_the_features_depend_on_changes_the_digest(name):
    assert set(CHANGED) == set(FEATURE_FIELDS) - {"clahe_clip"}
    changed = BASE.model_copy(update={name: CHANGED[name]})
    assert settings_digest(changed) != settings_digest(BASE)


def test_knobs_the_chosen_methods_do_not_use_leave_it_alone():
    clahe = BASE.model_copy(update={"normalise": "clahe"})
    assert settings_digest(clahe.model_copy(update={"clahe_clip": 3.0})) != settings_digest(clahe)
    assert settings_digest(BASE.model_copy(update={"clahe_clip": 3.0})) == settings_digest(BASE)
    farneback = BASE.model_copy(update={"flow": "farneback"})
    assert settings_digest(farneback.model_copy(update={"dis_iterations": 3})) == settings_digest(farneback)
    assert "dis_iterations" not in feature_settings(farneback)


def test_capture_and_transport_settings_leave_it_alone():
    other = BASE.model_copy(
        update={
            "decoder": "opencv",
            "decode_threads": 2,
            "realtime": True,
            "fps": 25.0,
            "reconnect": "never",
            "open_timeout_s": 3.0,
            "wire_precision": "float32",
            "compression": "none",
            "blind_after_s": None,
            "blind_contrast": 8.0,
        }
    )
    assert settings_digest(other) == settings_digest(BASE)


def test_settings_from_the_environment_compare_as_numbers():
    cfg = load_config(env={"VAD_EDGE__FLOW_GATE": "4", "VAD_EDGE__FLOW_SCALE": "1"})
    assert settings_digest(cfg.edge) == settings_digest(BASE.model_copy(update={"flow_scale": 1.0}))
    assert "flow_scale=1.0" in describe(cfg.edge) and "code" not in describe(cfg.edge)
