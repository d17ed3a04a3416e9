"""Seeding without side effects: a function that seeds the global generators for its own
reproducibility hands the caller's generator states back when it returns."""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import torch

__all__ = ["keeps_rng_state"]

F = TypeVar("F", bound=Callable[..., Any])


def keeps_rng_state(fn: F) -> F:
    """Decorate ``fn`` so that Python's ``random``, numpy's global and torch's CPU generator
    are where they were before the call, however it ends (CUDA generators are not touched
    here: the trainer seeds them through ``torch.manual_seed`` for its own run)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        states = random.getstate(), np.random.get_state(), torch.get_rng_state()
        try:
            return fn(*args, **kwargs)
        finally:
            random.setstate(states[0])
            np.random.set_state(states[1])
            torch.set_rng_state(states[2])

    return wrapper  # type: ignore[return-value]
