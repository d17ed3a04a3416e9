"""One OpenVINO ``Core`` per process, shared by every yoloslim module that uses OpenVINO.

Why not a fresh ``ov.Core()`` per call: on Linux, OpenVINO's CPU plugin installs an
alternate signal stack (``sigaltstack``) on the thread that creates it and, when the
plugin is destroyed, restores the stack it found, but only if its own is still the current
one; it then unmaps its own. Two ``Core`` objects freed in the order they were made (first
in, first out) therefore leave the thread's alternate stack pointing at unmapped memory,
and the next signal that Python handles on that thread (SIGCHLD from a DataLoader worker,
SIGINT from Ctrl-C) crashes the process with SIGSEGV. One long-lived ``Core`` creates the
plugin once, so its stack stays valid until the process exits.
"""

from __future__ import annotations

import threading

from yoloslim.errors import ConfigError

__all__ = ["openvino_core"]

_lock = threading.Lock()
_core = None


def openvino_core():
    """The process-wide ``openvino.Core`` (created on first use, never released).

    Raises:
        ConfigError: OpenVINO is not installed.

    Example:
        >>> compiled = openvino_core().compile_model("model.xml", "CPU")  # doctest: +SKIP
    """
    global _core
    with _lock:  # two threads loading models at once must still share one Core
        if _core is None:
            try:
                import openvino as ov
            except ImportError as e:
                raise ConfigError(
                    "OpenVINO is not installed: pip install 'yoloslim[openvino]'"
                ) from e
            _core = ov.Core()
        return _core
