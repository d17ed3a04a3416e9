"""Where the library's progress bars go: stderr, so stdout stays for tables and JSON.

Benchmarks print one JSON object on stdout and ``yoloslim ... | jq`` must keep working
while training, validation or a search shows its bar.
"""

from __future__ import annotations

import functools

__all__ = ["progress_console"]


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
