import os

import pytest
import torch

# keep test runs predictable on a 2-core machine. Under pytest-xdist (make test runs one worker
# per core) each worker computes on one thread, and sees the terminal a plain run sees: xdist's
# workers are given COLUMNS=80, which would narrow every table the CLI prints
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
    os.environ.pop("COLUMNS", None)
    os.environ.pop("LINES", None)
else:
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


# --- one ONNX export per distinct model -------------------------------------------------------
# torch.onnx.export (the torch.export-based exporter) takes 3-6 s even for the tiny models the
# tests build, and many tests export the same checkpoint with the same settings. Within a test
# session an export is memoized on everything that decides its file: every submodule's class
# (its methods and class attributes, up its MRO), instance attributes, parameters and buffers,
# every function and value at the top of yoloslim's modules (a helper a forward calls, patched
# by a test, is another function), the example input and the exporter's arguments. Anything
# the fingerprint cannot pin down exactly (a hook, a module held outside ``_modules``) is
# exported for real, as is any model whose fingerprint fails to compute.

_ONNX_FILES: dict[str, tuple[bytes, list]] = {}
_MODULE_STATE = ("_parameters", "_buffers", "_modules", "_non_persistent_buffers_set")


class _Unpinned(Exception):
    """The call has something the fingerprint cannot describe exactly."""


def _feed(h, value, keep: list) -> None:
    import numpy as np

    if isinstance(value, torch.Tensor):
        t = value.detach().contiguous().cpu()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(value, (np.ndarray, np.generic)):
        a = np.ascontiguousarray(value)
        h.update(f"N{a.dtype}{a.shape}".encode() + a.tobytes())
    elif isinstance(value, (list, tuple)):
        h.update(f"{type(value).__name__}{len(value)}[".encode())
        for v in value:
            _feed(h, v, keep)
        h.update(b"]")
    elif isinstance(value, dict):
        h.update(f"dict{len(value)}{{".encode())
        for k, v in value.items():
            _feed(h, k, keep)
            _feed(h, v, keep)
        h.update(b"}")
    elif isinstance(value, torch.nn.Module):
        raise _Unpinned(type(value).__name__)  # a module held outside _modules: weights unseen
    elif callable(value) or isinstance(value, (staticmethod, classmethod, property)):
        keep.append(value)  # held, so its id is not reused by another object this session
        h.update(f"F{id(value)}".encode())
    else:
        text = repr(value)
        if "..." in text or " at 0x" in text:
            raise _Unpinned(text[:80])
        h.update(f"{type(value).__qualname__}:{text}".encode())


def _feed_or_identity(h, value, keep: list) -> None:
    """``value`` by content where it can be, else by identity (held, so it stays unique)."""
    try:
        _feed(h, value, keep)
    except _Unpinned:
        keep.append(value)
        h.update(f"I{id(value)}".encode())


def _feed_code(h, keep: list, classes: set) -> None:
    """The classes' own attributes (methods by identity) and the top level of every loaded
    yoloslim module: what a forward can reach besides its instance."""
    import sys

    for cls in sorted(classes, key=lambda c: (c.__module__, c.__qualname__)):
        h.update(f"C{cls.__module__}.{cls.__qualname__}".encode())
        for name, value in sorted(vars(cls).items()):
            if name.startswith("__") and not callable(value):
                continue  # __dict__, __doc__, __module__, ...
            h.update(f"c{name}=".encode())
            _feed_or_identity(h, value, keep)
    for mod_name in sorted(n for n in sys.modules if n == "yoloslim" or n.startswith("yoloslim.")):
        module = sys.modules[mod_name]
        h.update(f"G{mod_name}".encode())
        for name, value in sorted(vars(module).items()):
            if name.startswith("__"):
                continue
            h.update(f"g{name}=".encode())
            _feed_or_identity(h, value, keep)


def _onnx_key(model, args, kwargs) -> tuple[str, list] | None:
    import hashlib

    h, keep, classes = hashlib.sha256(), [], set()
    try:
        for name, m in model.named_modules():
            cls = type(m)
            classes.update(c for c in cls.__mro__ if c is not object)
            h.update(f"M{name}|{cls.__module__}.{cls.__qualname__}".encode())
            for k, v in sorted(vars(m).items()):
                if k in _MODULE_STATE:
                    continue
                if "hook" in k:
                    if v:
                        raise _Unpinned(k)
                    continue
                h.update(f"A{k}=".encode())
                _feed(h, v, keep)
            for k, v in [*m._parameters.items(), *m._buffers.items()]:
                h.update(f"P{k}".encode())
                _feed(h, v, keep)
        _feed_code(h, keep, classes)
        _feed(h, list(args), keep)
        _feed(h, {k: v for k, v in kwargs.items()}, keep)
    except Exception:  # noqa: BLE001 - _Unpinned, or anything unforeseen: export for real
        return None
    return h.hexdigest(), keep


_real_onnx_export = torch.onnx.export


def _memo_onnx_export(model, args=(), f=None, **kwargs):
    from pathlib import Path

    key = None
    if isinstance(model, torch.nn.Module) and f is not None and kwargs.get("dynamo", True):
        key = _onnx_key(model, args, kwargs)
    if key is not None and key[0] in _ONNX_FILES:
        Path(f).write_bytes(_ONNX_FILES[key[0]][0])
        return None
    result = _real_onnx_export(model, args, f, **kwargs)
    if key is not None:
        _ONNX_FILES[key[0]] = (Path(f).read_bytes(), key[1])
    return result


torch.onnx.export = _memo_onnx_export
