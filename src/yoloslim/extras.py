"""Optional dependencies: import one, or say which extra installs it."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType

from yoloslim.errors import ConfigError, YoloslimError

__all__ = ["install_hint", "installed", "require", "require_for"]


def install_hint(module: str, extra: str) -> str:
    """``"{module} is not installed: pip install 'yoloslim[{extra}]'"``."""
    return f"{module} is not installed: pip install 'yoloslim[{extra}]'"


def installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it."""
    if module in sys.modules:  # None there means: blocked, as tests do
        return sys.modules[module] is not None
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a broken one
        return False


def require(module: str, extra: str, error: type[YoloslimError] = ConfigError) -> ModuleType:
    """Import ``module``; when it is missing raise ``error`` naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise error(install_hint(module, extra)) from e


def require_for(path, module: str, extra: str, what: str) -> None:
    """ExportError naming ``path`` when ``module``, which ``what`` (reading or running it)
    needs, is not installed, with the extra that installs it; nothing is imported."""
    from yoloslim.errors import ExportError

    if not installed(module):
        raise ExportError(
            f"{path}: {what} needs {module}, which is not installed: "
            f"pip install 'yoloslim[{extra}]'"
        )
