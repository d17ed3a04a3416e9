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


# --- one ONNX export per distinct model -------------------------------------------------------
# torch.onnx.export (the torch.export-based exporter) takes 3-6 s even for the tiny models the
# tests build, and many tests export the same checkpoint with the same settings. Within a test
# session an export is memoized on everything that decides its file: every submodule's class,
# forward function and attributes, every parameter and buffer, the example input and the
# exporter's arguments. Anything the fingerprint cannot pin down exactly (a hook, an attribute
# whose repr is elided or names an address) is exported for real.

_ONNX_FILES: dict[str, tuple[bytes, list]] = {}
_MODULE_STATE = ("_parameters", "_buffers", "_modules", "_non_persistent_buffers_set")


class _Unpinned(Exception):
    """The call has something the fingerprint cannot describe exactly."""


def _feed(h, value, keep: list) -> None:
    if isinstance(value, torch.Tensor):
        t = value.detach().contiguous().cpu()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
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
    elif callable(value) and not isinstance(value, type):
        keep.append(value)  # held, so its id is not reused by another function this session
        h.update(f"F{id(value)}".encode())
    else:
        text = repr(value)
        if "..." in text or " at 0x" in text:
            raise _Unpinned(text[:80])
        h.update(f"{type(value).__qualname__}:{text}".encode())


def _onnx_key(model, args, kwargs) -> tuple[str, list] | None:
    import hashlib

    h, keep = hashlib.sha256(), []
    try:
        for name, m in model.named_modules():
            cls = type(m)
            keep.append(cls.forward)
            h.update(f"M{name}|{cls.__module__}.{cls.__qualname__}|{id(cls.forward)}".encode())
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
        _feed(h, list(args), keep)
        _feed(h, {k: v for k, v in kwargs.items()}, keep)
    except _Unpinned:
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
