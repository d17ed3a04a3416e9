"""Where the library's progress bars go: stderr, so stdout stays for tables and JSON.

Benchmarks print one JSON object on stdout and ``yoloslim ... | jq`` must keep working
while training, validation or a search shows its bar.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterator

__all__ = ["progress_console", "quieted"]


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
