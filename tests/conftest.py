import os

import pytest
import torch

# keep test runs predictable on a 2-core machine
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _interrupting(real, on_call: int):
    """``real``, except that its ``on_call``-th call raises KeyboardInterrupt (a Ctrl-C that
    lands there); the calls so far are in the wrapper's ``calls``."""

    def wrapper(*args, **kwargs):
        wrapper.calls.append(args)
        if len(wrapper.calls) == on_call:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    wrapper.calls = []
    return wrapper


@pytest.fixture
def interrupting():
    """``interrupting(real, n)``: ``real`` whose n-th call is stopped by a Ctrl-C."""
    return _interrupting
