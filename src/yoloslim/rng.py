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
    are where they were before the call, however it ends, and the CUDA generators too where
    CUDA was in use before it (``torch.manual_seed`` in the trainer seeds them; audit51 api
    F4). A caller's seed for a CUDA not yet initialised is not kept: reading the generators
    would start CUDA on every call."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        states = random.getstate(), np.random.get_state(), torch.get_rng_state()
        cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
        cuda_states = torch.cuda.get_rng_state_all() if cuda else None
        try:
            return fn(*args, **kwargs)
        finally:
            random.setstate(states[0])
            np.random.set_state(states[1])
            torch.set_rng_state(states[2])
            if cuda_states is not None:
                torch.cuda.set_rng_state_all(cuda_states)

    return wrapper  # type: ignore[return-value]
