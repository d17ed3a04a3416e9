"""Shared CLI plumbing: error handling, JSON output, console."""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from yoloslim.errors import YoloslimError
from yoloslim.fileio import atomic_write_text

__all__ = ["console", "handle_errors", "layered", "write_json", "setup_logging"]

# rich falls back to 80 columns when stdout is not a terminal (make demo | tee, CI logs), which
# squeezes the comparison tables into unreadable "Par…" cells; piped output gets 160.
console = Console(stderr=False, width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True)


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn yoloslim errors into a one-line message and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except YoloslimError as e:
            # soft_wrap: never break the line, so the file paths in it stay whole
            err_console.print(
                f"[bold red]error:[/] {type(e).__name__}: {escape(str(e))}", soft_wrap=True
            )
            raise typer.Exit(2) from e

    return wrapper


def layered(
    ctx: typer.Context | None,
    section: dict | None,
    flags: dict[str, Any],
    params: dict[str, str] | None = None,
) -> dict:
    """Settings from three layers: option defaults < ``section`` (from ``--config``) < options
    given on the command line.

    ``flags`` maps setting names to option values (``None`` values are skipped); ``params``
    names the command's parameter where it differs from the setting (``flops`` ->
    ``budget_flops``). Without a context (``ctx=None``) every flag counts as given.
    """
    params = params or {}

    def given(key: str) -> bool:
        if ctx is None:
            return True
        source = ctx.get_parameter_source(params.get(key, key))
        return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")

    out = {k: v for k, v in flags.items() if v is not None and not given(k)}
    out.update(section or {})
    out.update({k: v for k, v in flags.items() if v is not None and given(k)})
    return out


def write_json(path: str | Path | None, obj: dict) -> None:
    """Write one JSON object (atomic rename) when ``path`` is given."""
    if not path:
        return
    atomic_write_text(path, json.dumps(obj, indent=2, default=str) + "\n")


def command_line() -> str:
    return " ".join(["yoloslim", *sys.argv[1:]])
