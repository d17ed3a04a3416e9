"""The explicit registry of export formats. Importing it registers nothing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from yoloslim.errors import ConfigError
from yoloslim.export.common import ExportContext
from yoloslim.extras import installed

__all__ = ["EXPORTERS", "Exporter", "half_problem", "missing_packages", "register_exporter"]


def missing_packages(*modules: str, extra: str) -> Callable[[], str | None]:
    """An ``unavailable`` check: the reason naming the extra when a module cannot be imported."""

    def check() -> str | None:
        missing = [m for m in modules if not installed(m)]
        if missing:
            return f"{', '.join(missing)} not installed: pip install 'yoloslim[{extra}]'"
        return None

    return check


@dataclass(frozen=True)
class Exporter:
    """One deployment format.

    Attributes:
        name: the ``--format`` value.
        export: writes the artifact under ``ctx.out`` and returns its path.
        verify: runs the artifact in its own runtime and compares it with ``ctx.model``;
            returns a report entry with ``passed`` and raises ``ExportError`` on a
            mismatch (see :mod:`yoloslim.export.verify`).
        honours_half: whether ``half=True`` changes this format's weights.
        static_batch: whether the artifact runs at batch 1 only, whatever ``dynamic`` says.
        unavailable: returns None when the format can be written here, else the reason
            (a missing package or device); ``export()`` asks before doing any work.
        target: the path ``export`` will write (and return) for a context, or None when not
            known beforehand; ``export()`` refuses, before any work, to replace a file
            there that yoloslim did not write.
    """

    name: str
    export: Callable[[ExportContext], Path]
    verify: Callable[[Path, ExportContext], dict]
    honours_half: bool = False
    static_batch: bool = False
    unavailable: Callable[[], str | None] = lambda: None
    target: Callable[[ExportContext], Path] | None = None


EXPORTERS: dict[str, Exporter] = {}


def register_exporter(exporter: Exporter) -> Exporter:
    """Add a format; a duplicate name raises :class:`ConfigError`."""
    if exporter.name in EXPORTERS:
        raise ConfigError(f"exporter {exporter.name!r} is already registered")
    EXPORTERS[exporter.name] = exporter
    return exporter


def half_problem(formats: list[str], half: bool) -> str | None:
    """Why ``half`` (FP16 weights) would change none of ``formats``' artifacts, or None."""
    if not half or any(EXPORTERS[f].honours_half for f in formats if f in EXPORTERS):
        return None
    fp16 = ", ".join(f for f, e in EXPORTERS.items() if e.honours_half)
    return (
        f"none of {', '.join(formats)} stores FP16 weights (only {fp16} do); drop it, or add "
        "one of those formats"
    )
