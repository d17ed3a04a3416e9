"""torch's process-wide settings that yoloslim's work depends on: a function that sets one for
its own work hands the caller's back when it ends.

- the intra-op thread count (:func:`torch_threads`);
- the default dtype (:func:`float32_default`): yoloslim's models, inputs and losses are float32,
  and a caller's ``torch.set_default_dtype(torch.float64)`` would build float64 weights that
  float32 images cannot run through;
- autograd (:func:`autograd_on`): training and pruning need gradients, also when called inside
  a caller's ``torch.no_grad()`` or ``torch.inference_mode()``.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

__all__ = ["autograd_on", "float32_default", "keeps_caller_state", "torch_threads"]

F = TypeVar("F", bound=Callable[..., Any])


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


@contextlib.contextmanager
def float32_default() -> Iterator[None]:
    """torch's default dtype at float32 while the block runs, the caller's back afterwards
    (nothing changes for a caller at float32, torch's own default). Also a decorator:
    ``@float32_default()``."""
    import torch

    before = torch.get_default_dtype()
    if before is not torch.float32:
        torch.set_default_dtype(torch.float32)
    try:
        yield
    finally:
        if torch.get_default_dtype() is not before:
            torch.set_default_dtype(before)


def keeps_caller_state(fn: F) -> F:
    """Decorate a public function so that it runs at float32 (:func:`float32_default`) and
    leaves the caller's random generators where they were (:func:`yoloslim.rng.keeps_rng_state`),
    however it ends: the two settings every public entry point of yoloslim keeps."""
    from yoloslim.rng import keeps_rng_state  # imports torch: not at this module's top

    inner = keeps_rng_state(fn)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with float32_default():
            return inner(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


@contextlib.contextmanager
def autograd_on() -> Iterator[None]:
    """Gradients recorded while the block runs, whatever the caller's ``torch.no_grad()`` or
    ``torch.inference_mode()``; the caller's mode back afterwards. Also a decorator:
    ``@autograd_on()``."""
    import torch

    with torch.inference_mode(False), torch.enable_grad():
        yield
