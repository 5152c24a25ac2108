"""Loading: defaults, then a YAML file, then ``VAD_`` environment overrides, with where each value
came from."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    ValidationError,
)

from vad.config.model import Config

ENV_PREFIX = "VAD_"


class ConfigError(ValueError):
    """Bad configuration; the message names each offending field by its dotted path."""


DEFAULT = "default"


def _record(value: Any, path: tuple[str, ...], label: str, sources: dict[str, str]) -> None:
    # Leaves only (a value that is not a mapping, or an empty one): a file setting edge.flow says
    # nothing about where edge.grid_rows came from.
    if isinstance(value, dict) and value:
        for k, v in value.items():
            _record(v, (*path, str(k)), label, sources)
    else:
        sources[".".join(path)] = label


def _apply_env(data: dict[str, Any], env: Mapping[str, str], sources: dict[str, str] | None = None) -> dict[str, Any]:
    sources = {} if sources is None else sources
    for key, raw in sorted(env.items()):
        if not key.startswith(ENV_PREFIX):
            continue
        parts = key[len(ENV_PREFIX) :].split("__")
        # VAD_<SECTION>__<FIELD>...; a single part only when it names a section (VAD_CAMERAS='{...}'),
        # so that other VAD_ variables are not taken for config.
        if len(parts) == 1 and parts[0].lower() not in Config.model_fields:
            continue
        node, path = data, []
        for i, part in enumerate(parts):
            # Names are lower case; a key already there matches whatever its case (a camera id).
            name = next((k for k in node if isinstance(k, str) and k.lower() == part.lower()), part.lower())
            path.append(name)
            if i == len(parts) - 1:
                break
            child = node.get(name)
            if not isinstance(child, dict):
                child = {}
                node[name] = child
            node = child
        # YAML parsing gives "4" -> 4, "true" -> True, "[1, 2]" -> list, like the file would.
        try:
            value = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError:
            value = raw
        node[path[-1]] = value
        dotted = ".".join(path)
        for k in [k for k in sources if k == dotted or k.startswith(dotted + ".")]:
            del sources[k]
        _record(value, tuple(path), f"env:{key}", sources)
    return data


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"invalid configuration ({source}):"]
    for e in err.errors():
        if e["loc"]:
            lines.append(f"  {'.'.join(str(p) for p in e['loc'])}: {e['msg']}")
        else:  # a rule over several fields: its message names them
            lines.append(f"  {e['msg'].removeprefix('Value error, ')}")
    return "\n".join(lines)


def load_config_with_sources(
    path: str | Path | None = None, env: Mapping[str, str] | None = None
) -> tuple[Config, dict[str, str]]:
    """The config, and where its values came from: dotted path -> ``file:<path>`` or ``env:VAD_...``
    for every value the file or the environment set (``source_of`` answers for the others)."""
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    sources: dict[str, str] = {}
    where = "defaults"
    if path is not None:
        p = Path(path)
        where = str(p)
        try:
            loaded = yaml.safe_load(p.read_text()) or {}
        except FileNotFoundError as e:
            raise ConfigError(f"config file not found: {p}") from e
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {p} is not valid YAML: {e}") from e
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {p} must hold a mapping at the top level")
        data = loaded
        _record(data, (), f"file:{p}", sources)
        sources.pop("", None)  # an empty file
    data = _apply_env(data, env, sources)
    try:
        return Config.model_validate(data), sources
    except ValidationError as e:
        raise ConfigError(_format_errors(e, where)) from None


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Load YAML (optional) plus environment overrides; raise ConfigError naming the bad fields."""
    return load_config_with_sources(path, env)[0]


def source_of(sources: Mapping[str, str], dotted: str) -> str:
    """Where the value at this dotted path came from: ``file:...``, ``env:...`` or ``default``."""
    return sources.get(dotted, DEFAULT)


def dump_config(cfg: Config) -> str:
    """YAML of the effective config with secrets masked (SecretStr prints as **********)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
