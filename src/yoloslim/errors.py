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
    "stop_requested",
]

# the stop signals (SIGINT, SIGTERM) the command line recorded while a command ran
# (``yoloslim.cli.common.sigterm_as_interrupt`` appends them): an interrupt raised inside a
# library can come out as that library's own error, and code that carries on past an
# error (export's other formats) must stop instead
STOPS: list[KeyboardInterrupt] = []


def stop_requested() -> KeyboardInterrupt | None:
    """The interrupt that Ctrl-C or SIGTERM raised during this command, if any (only the
    command line records them)."""
    return STOPS[-1] if STOPS else None


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
