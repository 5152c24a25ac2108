import subprocess
import sys

import pytest

from vad.config import ConfigError, load_config


def test_defaults_are_valid():
    cfg = load_config(env={})
    assert cfg.job.batch_size >= 1 and cfg.kafka.topics.events == "vad.events"


def test_scoring_shards_default_to_one_per_subtask():
    assert load_config(env={}).job.shards == 1
    assert load_config(env={"VAD_JOB__PARALLELISM": "4"}).job.shards == 4
    assert load_config(env={"VAD_JOB__PARALLELISM": "4", "VAD_JOB__SCORE_SHARDS": "12"}).job.shards == 12


def test_env_overrides_nest_and_parse_types(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("job:\n  parallelism: 2\nredis:\n  port: 7000\n")
    cfg = load_config(p, env={"VAD_JOB__PARALLELISM": "3", "VAD_REDIS__PASSWORD": "s3cret", "OTHER": "x"})
    assert cfg.job.parallelism == 3 and cfg.redis.port == 7000
    assert cfg.redis.password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(cfg)


@pytest.mark.parametrize(
    "yaml_text, path",
    [
        ("job:\n  batch_size: 0\n", "job.batch_size"),
        ("job:\n  batch_sise: 8\n", "job.batch_sise"),
        ("kafka:\n  topics:\n    events: 'bad topic'\n", "kafka.topics.events"),
        ("detect:\n  ema_alpha: 2\n", "detect.ema_alpha"),
        ("job:\n  delivery: sometimes\n", "job.delivery"),
        ("job:\n  parallelism: 4\n  score_shards: 2\n", "job: Value error, score_shards (2) is below parallelism (4)"),
        # An open event's state must outlive its idle close.
        ("job:\n  idle_timeout_ms: 40000\n  state_ttl_s: 60\n", "job: Value error, state_ttl_s (60) is below"),
        ("cameras:\n  door:\n    view: lobby\n", "cameras.door.view: 'lobby' needs job.model_registry"),
        ("cameras:\n  door:\n    view: ../x\n", "cameras.door.view"),
    ],
)
def test_bad_config_names_the_field(tmp_path, yaml_text, path):
    p = tmp_path / "c.yaml"
    p.write_text(yaml_text)
    with pytest.raises(ConfigError) as e:
        load_config(p, env={})
    assert path in str(e.value)


def test_unreadable_files_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml", env={})
    p = tmp_path / "c.yaml"
    p.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(p, env={})


def test_validate_config_cli(tmp_path):
    good = subprocess.run([sys.executable, "-m", "vadctl.cli", "--validate-config"], capture_output=True, text=True)
    assert good.returncode == 0 and "bootstrap_servers" in good.stdout
    p = tmp_path / "c.yaml"
    p.write_text("stack:\n  kafka_port: 99999\n")
    bad = subprocess.run(
        [sys.executable, "-m", "vadctl.cli", "--config", str(p), "--validate-config"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "stack.kafka_port" in bad.stderr


def test_shipped_default_yaml_matches_the_embedded_defaults():
    from vad.config import REPO_ROOT

    assert load_config(REPO_ROOT / "config" / "default.yaml", env={}) == load_config(env={})


def test_shipped_default_yaml_is_what_the_model_generates():
    from vad.config import REPO_ROOT
    from vad.config.render import defaults_yaml

    committed = (REPO_ROOT / "config" / "default.yaml").read_text()
    assert committed == defaults_yaml(), "config/default.yaml is stale: run `vad config defaults --write`"
    cli = subprocess.run(
        [sys.executable, "-m", "vadctl.cli", "config", "defaults", "--check"], capture_output=True, text=True
    )
    assert cli.returncode == 0, cli.stderr


def test_configuration_reference_is_what_the_model_generates():
    from vad.config import REPO_ROOT
    from vad.config.render import defaults_markdown, replace_generated

    page = (REPO_ROOT / "docs" / "configuration.md").read_text()
    fresh = replace_generated(page, defaults_markdown())
    assert page == fresh, "docs/configuration.md is stale: run `vad config defaults --format markdown --write`"
    for section in ("kafka", "kafka.topics", "redis", "stack", "cluster", "edge", "job", "detect", "cameras"):
        assert f"### `{section}`" in page


def _models(model, seen=None):
    """The config's model classes, walked through fields and dict values (the cameras' entries)."""
    import typing

    from pydantic import BaseModel

    seen = set() if seen is None else seen
    if model in seen:
        return seen
    seen.add(model)
    for f in model.model_fields.values():
        for t in (f.annotation, *typing.get_args(f.annotation)):
            if isinstance(t, type) and issubclass(t, BaseModel):
                _models(t, seen)
    return seen


def test_every_field_of_every_section_has_a_description():
    from vad.config import CameraConfig, Config, EdgeSettings

    models = _models(Config)
    assert CameraConfig in models and {"KafkaConfig", "TopicsConfig", "JobConfig"} <= {m.__name__ for m in models}
    missing = [
        f"{m.__name__}.{name}"
        for m in models | {EdgeSettings}
        for name, f in m.model_fields.items()
        if not f.description
    ]
    assert missing == []


def test_one_camera_section_with_overrides_mask_and_sensitivity(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(
        "edge:\n  flow_scale: 0.5\n"
        "cameras:\n"
        "  gate-3: {source: 'rtsp://cam/x', flow_scale: 0.25, target_fps: null, grid_rows: 20, mask: [[19, 0]]}\n"
        "  lobby: {sensitivity: 2}\n"
    )
    cfg = load_config(p, env={})
    gate = cfg.edge_settings("gate-3")
    assert gate.flow_scale == 0.25 and gate.target_fps is None and gate.grid_rows == 20  # null is an override
    assert cfg.edge_settings("lobby").target_fps == 10.0 and cfg.edge_settings("unlisted") == cfg.edge.settings_for()
    assert cfg.mask_for("gate-3") == [(19, 0)] and cfg.mask_for("lobby") == [] and cfg.mask_for("unlisted") == []
    assert cfg.camera("lobby").source is None and cfg.camera("lobby").sensitivity == 2.0


@pytest.mark.parametrize(
    "yaml_text, message",
    [
        # the mask is checked against the camera's own grid, the path in the message
        ("cameras:\n  c1: {mask: [[12, 0]]}\n", "cameras.c1.mask: cells [(12, 0)] outside the camera's 12x18 grid"),
        (
            "cameras:\n  c1: {grid_cols: 4, mask: [[0, 4]]}\n",
            "cameras.c1.mask: cells [(0, 4)] outside the camera's 12x4",
        ),
        ("cameras:\n  c1: {flow_scale: 7}\n", "cameras.c1.flow_scale"),
        ("cameras:\n  c1: {grid_rows: null}\n", "cameras.c1.grid_rows: Input should be a valid integer"),
        ("cameras:\n  c1: {sensitivity: 0}\n", "cameras.c1.sensitivity"),
        ("cameras:\n  c1: {id: c1}\n", "cameras.c1.id: Extra inputs are not permitted"),
        # the id pattern of the record schema (vad/schema.py)
        ("cameras:\n  'bad id': {}\n", "bad_camera_id"),
        ("cameras:\n  -x: {}\n", "bad_camera_id"),
        ("cameras:\n  'a/../x': {}\n", "bad_camera_id"),
        ('cameras:\n  "cam\\n": {}\n', "bad_camera_id"),
        # the old places name the new one
        ("edge:\n  cameras: [{id: a, source: x.mp4}]\n", "edge.cameras: moved to the top-level `cameras` section"),
        ("detect:\n  cameras: {a: {sensitivity: 2}}\n", "detect.cameras: moved to the top-level `cameras` section"),
        ("edge:\n  mask: [[0, 0]]\n", "edge.mask: moved to `cameras.<id>.mask`"),
    ],
)
def test_bad_cameras_are_refused_with_the_path(tmp_path, yaml_text, message):
    p = tmp_path / "c.yaml"
    p.write_text(yaml_text)
    with pytest.raises(ConfigError) as e:
        load_config(p, env={})
    assert message in str(e.value)


def test_cameras_from_the_environment():
    env = {"VAD_CAMERAS": "{gate-3: {source: x.mp4}}", "VAD_CAMERAS__GATE-3__SENSITIVITY": "2"}
    cfg = load_config(env=env)
    assert cfg.camera("gate-3").source == "x.mp4" and cfg.camera("gate-3").sensitivity == 2.0
    with pytest.raises(ConfigError, match=r"edge\.cameras: moved"):
        load_config(env={"VAD_EDGE__CAMERAS": "[]"})
    # Other VAD_ variables that name no section are not config.
    assert load_config(env={"VAD_SOMETHING": "1"}) == load_config(env={})


def test_an_env_camera_matches_a_file_camera_whatever_its_case(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("cameras:\n  Gate-3: {source: x.mp4}\n")
    cfg = load_config(p, env={"VAD_CAMERAS__GATE-3__SENSITIVITY": "3"})
    assert list(cfg.cameras) == ["Gate-3"] and cfg.camera("Gate-3").sensitivity == 3.0


def test_provenance_names_the_file_the_environment_or_the_default(tmp_path):
    from vad.config import load_config_with_sources, source_of

    p = tmp_path / "c.yaml"
    p.write_text("job:\n  parallelism: 2\n  batch_size: 32\ncameras:\n  c1: {source: 'rtsp://u:pw@cam/x'}\n")
    env = {"VAD_JOB__PARALLELISM": "3", "VAD_REDIS__PASSWORD": "s3cret", "VAD_CAMERAS__C1__MASK": "[[0, 1]]"}
    cfg, sources = load_config_with_sources(p, env=env)
    assert cfg.job.parallelism == 3 and cfg.job.batch_size == 32
    assert source_of(sources, "job.parallelism") == "env:VAD_JOB__PARALLELISM"  # the environment wins
    assert source_of(sources, "job.batch_size") == f"file:{p}"
    assert source_of(sources, "job.bundle_size") == "default"
    assert source_of(sources, "cameras.c1.source") == f"file:{p}"
    assert source_of(sources, "cameras.c1.mask") == "env:VAD_CAMERAS__C1__MASK"
    # A section set whole from the environment replaces what the file said, its provenance too.
    _, sources = load_config_with_sources(p, env={"VAD_CAMERAS": "{c2: {source: y.mp4}}"})
    assert source_of(sources, "cameras.c2.source") == "env:VAD_CAMERAS" and "cameras.c1.source" not in sources


def test_config_show_lists_every_field_with_value_source_and_description(tmp_path):
    from vad.config import CAMERA_OWN_FIELDS, load_config_with_sources
    from vad.config.render import rows, show_table, show_yaml

    p = tmp_path / "c.yaml"
    p.write_text("job:\n  batch_size: 32\ncameras:\n  c1: {source: 'rtsp://u:pw@cam/x', flow_scale: 0.25}\n")
    env = {"VAD_JOB__PARALLELISM": "3", "VAD_REDIS__PASSWORD": "s3cret"}
    cfg, sources = load_config_with_sources(p, env=env)
    by_path = {r.path: r for r in rows(cfg, sources)}
    assert by_path["job.parallelism"].value == 3 and by_path["job.parallelism"].source == "env:VAD_JOB__PARALLELISM"
    assert by_path["job.batch_size"].source == f"file:{p}" and by_path["job.bundle_size"].source == "default"
    assert by_path["job.batch_size"].description.startswith("records of a shard")
    assert by_path["redis.password"].value == "**********"
    # A camera: its own fields and the overrides it sets, credentials in its URL masked.
    cams = [k for k in by_path if k.startswith("cameras.")]
    own = [f"cameras.c1.{f}" for f in CAMERA_OWN_FIELDS]
    assert own[:3] == ["cameras.c1.source", "cameras.c1.mask", "cameras.c1.sensitivity"]
    assert cams == [*own, "cameras.c1.flow_scale"]
    assert by_path["cameras.c1.source"].value == "rtsp://***@cam/x"
    # Every leaf of the model is a row.
    assert {"edge.grid_rows", "kafka.topics.events", "detect.update_every_s", "job.checkpoint_dir"} <= set(by_path)
    table, text = show_table(cfg, sources), show_yaml(cfg, sources)
    for out in (table, text):
        assert "s3cret" not in out and "pw@" not in out
    line = next(x for x in table.splitlines() if x.startswith("job.parallelism "))
    assert line.split()[1:3] == ["3", "env:VAD_JOB__PARALLELISM"] and "the job's parallelism" in line
    assert "  batch_size: 32  # file:" in text
    import yaml

    assert yaml.safe_load(text)["job"]["parallelism"] == 3  # the yaml form is the config, loadable


def test_config_show_cli(tmp_path):
    import os

    p = tmp_path / "c.yaml"
    p.write_text("job:\n  batch_size: 32\n")
    env = {**os.environ, "VAD_JOB__PARALLELISM": "3"}
    args = [sys.executable, "-m", "vadctl.cli", "--config", str(p), "config", "show"]
    r = subprocess.run(args, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert any(x.split()[:3] == ["job.batch_size", "32", f"file:{p}"] for x in r.stdout.splitlines())
    assert any(x.split()[:3] == ["job.parallelism", "3", "env:VAD_JOB__PARALLELISM"] for x in r.stdout.splitlines())
    r = subprocess.run([*args, "--format", "yaml"], capture_output=True, text=True, env=env)
    assert r.returncode == 0 and "parallelism: 3  # env:VAD_JOB__PARALLELISM" in r.stdout
