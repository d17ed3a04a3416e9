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

__all__ = ["console", "handle_errors", "write_json", "setup_logging"]

console = Console(stderr=False)
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
            err_console.print(f"[bold red]error:[/] {type(e).__name__}: {escape(str(e))}")
            raise typer.Exit(2) from e

    return wrapper


def write_json(path: str | Path | None, obj: dict) -> None:
    """Write one JSON object (atomic rename) when ``path`` is given."""
    if not path:
        return
    atomic_write_text(path, json.dumps(obj, indent=2, default=str) + "\n")


def command_line() -> str:
    return " ".join(["yoloslim", *sys.argv[1:]])
