"""Exception tree for yoloslim.

Every error a user can cause derives from :class:`YoloslimError`, so callers can
catch one type. Messages name the argument, value, file and (where known) line.
"""

from __future__ import annotations

__all__ = [
    "YoloslimError",
    "DataError",
    "ModelError",
    "ExportError",
    "ConfigError",
    "TrainingError",
]


class YoloslimError(Exception):
    """Base class of all errors raised by yoloslim."""


class DataError(YoloslimError):
    """A dataset, label file, image or data.yaml is missing or malformed."""


class ModelError(YoloslimError):
    """A model name, architecture or checkpoint is unknown or malformed."""


class ExportError(YoloslimError):
    """An export failed, a runtime is missing, or an artifact disagrees with PyTorch."""


class ConfigError(YoloslimError):
    """A configuration value or key is invalid."""


class TrainingError(YoloslimError, FloatingPointError):
    """Training diverged: the loss became NaN or infinite."""
