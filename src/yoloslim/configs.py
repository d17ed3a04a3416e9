"""Settings dataclasses from plain mappings (YAML files, recipes, CLI ``--config``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from yoloslim.errors import ConfigError

__all__ = ["from_mapping", "load_mapping"]


def from_mapping(cls: type, values: Any, where: str | None = None):
    """``cls(**values)`` for a frozen settings dataclass; unknown keys and bad values are
    :class:`ConfigError` naming ``where`` (default: the class name) and the allowed keys."""
    where = where or cls.__name__
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(values).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in {where}; allowed: {sorted(names)}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from e


def load_mapping(path: str | Path, what: str) -> dict:
    """A YAML file that must hold a mapping (of ``what`` fields); errors name the file."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file does not exist")
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from e
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping of {what} fields")
    return loaded
