"""Where the library's progress bars go: stderr, so stdout stays for tables and JSON.

Benchmarks print one JSON object on stdout and ``yoloslim ... | jq`` must keep working
while training, validation or a search shows its bar.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
from collections.abc import Iterable, Iterator
from typing import TypeVar

__all__ = ["progress_console", "quieted", "say", "scoring_bar", "shown", "tracked"]

T = TypeVar("T")


#: columns of a bar written to a pipe or a log file (rich assumes 80, which cuts the losses off)
PIPED_WIDTH = 160


@functools.cache
def progress_console():
    """The rich Console on stderr that every library progress bar draws on: the terminal's
    width on a terminal, :data:`PIPED_WIDTH` columns when stderr is a pipe or a file (unless
    ``COLUMNS`` says otherwise)."""
    import os
    import sys

    from rich.console import Console

    piped = not sys.stderr.isatty() and "COLUMNS" not in os.environ
    return Console(stderr=True, width=PIPED_WIDTH if piped else None)


def say(text: str, style: str = "dim") -> None:
    """One line on the progress console: what a step without a bar of its own is doing, or
    which stage the bars below belong to. Never broken across lines (a path in it was, where
    stderr is a pipe: audit43 clidoc F1)."""
    progress_console().print(text, style=style, highlight=False, soft_wrap=True)


@contextlib.contextmanager
def quieted(name: str, level: int) -> Iterator[None]:
    """Raise the logger ``name`` to ``level`` while the block runs, then put it back: a
    third-party library's chatter is cut for yoloslim's call only, not for the caller's."""
    logger = logging.getLogger(name)
    before = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(before)


# whether the library code running now may draw bars it was not handed a flag for (the data
# readers, several calls below the command that asked for progress)
_SHOWN = contextvars.ContextVar("yoloslim_progress_shown", default=False)

#: fewer items than this are read without a bar (a bar that flashes by is noise)
TRACK_FROM = 2000


@contextlib.contextmanager
def shown(enabled: bool = True) -> Iterator[None]:
    """Let :func:`tracked` draw its bars while the block runs (when ``enabled``): a command
    shown with progress bars also shows the reading of a large dataset, which otherwise
    passes in silence (a minute for 100k images)."""
    token = _SHOWN.set(bool(enabled))
    try:
        yield
    finally:
        _SHOWN.reset(token)


def tracked(items: Iterable[T], total: int, label: str) -> Iterator[T]:
    """``items``, with a bar on stderr (``label``, done/total) inside a
    :func:`shown` block when ``total`` is at least :data:`TRACK_FROM`; else just ``items``."""
    if not _SHOWN.get() or total < TRACK_FROM:
        yield from items
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=progress_console()) as bar:
        yield from bar.track(items, total=total)


def scoring_bar():
    """A rich Progress on the progress console (label, bar, done/total, time elapsed) for
    a caller that adds its own tasks: one that scores candidates round after round."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    return Progress(*columns, console=progress_console())
