import os

import pytest
import torch

# keep test runs predictable on a 2-core machine
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _no_stop_left():
    """A test that stops a command (or calls sigterm_as_interrupt itself) leaves no recorded
    stop for the next one's library calls (export would take their errors for a stop)."""
    from yoloslim.errors import STOPS

    yield
    STOPS.clear()


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


class _HalfWrite:
    """A file opened by ``fileio.os.fdopen`` whose write stores half the bytes, then raises
    ``stop`` (a Ctrl-C, or a full disk's OSError) there."""

    def __init__(self, f, stop: BaseException):
        self.f, self.stop = f, stop

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()

    def write(self, data):
        self.f.write(data[: len(data) // 2])
        raise self.stop


@pytest.fixture
def stopped_writes(monkeypatch):
    """``stopped_writes(stop, first=n)``: the first ``n`` (default: every) atomic writes of
    ``yoloslim.fileio`` stop halfway with ``stop``; later ones are whole."""
    from yoloslim import fileio

    real = fileio.os.fdopen

    def install(stop: BaseException, first: int | None = None):
        opened = []

        def fdopen(fd, mode):
            opened.append(fd)
            if first is None or len(opened) <= first:
                return _HalfWrite(real(fd, mode), stop)
            return real(fd, mode)

        monkeypatch.setattr(fileio.os, "fdopen", fdopen)
        return opened

    return install
