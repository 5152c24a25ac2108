"""One typed configuration for the whole system: defaults, then a YAML file, then ``VAD_`` environment
overrides.

Every field has a default, bounds and a description; unknown keys are refused (``extra="forbid"``) so
a typo fails at start with the field's path instead of being silently ignored. Environment overrides
use ``__`` to descend: ``VAD_JOB__PARALLELISM=4``, ``VAD_REDIS__PASSWORD=...``,
``VAD_CAMERAS__GATE-3__SENSITIVITY=2``. Secrets (passwords) are SecretStr so they never print in logs,
``--validate-config`` or ``vad config show``.

Everything that differs per camera is in one section, ``cameras``, keyed by camera id: its source, any
edge setting it overrides, its mask and its sensitivity. The edge and the job read the same entry.

``load_config_with_sources`` also returns where each value came from (``vad config show``);
vad/config/render.py writes the model out (config/default.yaml, docs/configuration.md).
"""

from vad.config.edge import CAMERA_OWN_FIELDS, CameraConfig, EdgeConfig, EdgeSettings
from vad.config.load import (
    DEFAULT,
    ENV_PREFIX,
    ConfigError,
    dump_config,
    load_config,
    load_config_with_sources,
    source_of,
)
from vad.config.model import Config, state_dir, views_of
from vad.config.sections import (
    LOCAL_CHECKPOINT_DIR,
    LOCAL_SAVEPOINT_DIR,
    REPO_ROOT,
    ClusterConfig,
    DetectConfig,
    JobConfig,
    KafkaConfig,
    RedisConfig,
    StackConfig,
    TopicsConfig,
)

__all__ = [
    "CAMERA_OWN_FIELDS",
    "DEFAULT",
    "ENV_PREFIX",
    "LOCAL_CHECKPOINT_DIR",
    "LOCAL_SAVEPOINT_DIR",
    "REPO_ROOT",
    "CameraConfig",
    "ClusterConfig",
    "Config",
    "ConfigError",
    "DetectConfig",
    "EdgeConfig",
    "EdgeSettings",
    "JobConfig",
    "KafkaConfig",
    "RedisConfig",
    "StackConfig",
    "TopicsConfig",
    "dump_config",
    "load_config",
    "load_config_with_sources",
    "source_of",
    "state_dir",
    "views_of",
]
