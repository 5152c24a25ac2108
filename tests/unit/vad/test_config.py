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
