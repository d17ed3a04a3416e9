"""Where the library's progress bars go: stderr, so stdout stays for tables and JSON.

Benchmarks print one JSON object on stdout and ``yoloslim ... | jq`` must keep working
while training, validation or a search shows its bar.
"""

from __future__ import annotations

import functools

__all__ = ["progress_console"]


@functools.cache
def progress_console():
    """The rich Console on stderr that every library progress bar draws on."""
    from rich.console import Console

    return Console(stderr=True)
