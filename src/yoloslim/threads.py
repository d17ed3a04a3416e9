"""torch's intra-op thread count is process-wide: a function that sets it for its own work
hands the caller's count back when it ends."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

__all__ = ["torch_threads"]


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op threads at ``threads`` while the block runs (None: as they are, for a
    block that may set them itself), and the earlier count back afterwards, however the block
    ends. Also a decorator: ``@torch_threads(None)``. torch is imported here, not at the top:
    the CLI imports this before it needs torch."""
    import torch

    before = torch.get_num_threads()
    if threads is not None and threads != before:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
