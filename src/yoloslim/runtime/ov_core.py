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

import re
import threading
from pathlib import Path
from xml.etree import ElementTree

from yoloslim.errors import ConfigError, ModelError

__all__ = [
    "OV_HINTS",
    "default_precision",
    "no_telemetry",
    "openvino_core",
    "ov_word",
    "precision_name",
    "read_ir",
    "respelled",
    "save_ir",
]

_lock = threading.Lock()
_core = None


def no_telemetry() -> None:
    """Decline OpenVINO's and NNCF's usage telemetry for this process (yoloslim never uses
    the network). Without a consent file they send it by default: a conversion or an NNCF
    call posts to Google Analytics from a forked child, which has been seen to hang the
    command's exit on a stuck DNS lookup. Call before ``convert_model`` or ``import nncf``.

    ``openvino_telemetry`` asks its ``OptInChecker`` each time a tool (re)initialises it, and
    has no setting for this short of writing the user's consent file or pretending to be a
    CI job, so the checker is made to decline; a telemetry object made before (by an earlier
    ``import nncf``) is switched off as well.
    """
    try:
        from openvino_telemetry import Telemetry
        from openvino_telemetry.utils import opt_in_checker
    except ImportError:  # not installed: nothing is sent
        return
    checker = opt_in_checker.OptInChecker
    if getattr(checker, "_yoloslim_declined", False):
        return
    declined = opt_in_checker.ConsentCheckResult.DECLINED

    def check(self, enable_opt_in_dialog=True, disable_in_ci=False):
        return declined

    checker.check = check
    checker._yoloslim_declined = True
    existing = getattr(Telemetry, "_SingletonMetaClass__single_instance", None)
    if existing is not None:
        existing.consent = False


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
            no_telemetry()
            try:
                import openvino as ov
            except ImportError as e:
                raise ConfigError(
                    "OpenVINO is not installed: pip install 'yoloslim[openvino]'"
                ) from e
            _core = ov.Core()
        return _core


def save_ir(ov, model, path: str | Path, *, fp16: bool = False, check=None) -> Path:
    """Write ``model`` as the IR ``path`` (.xml + .bin), both whole or neither
    (:func:`~yoloslim.fileio.staged`; ``check``, an export's verification, runs on the
    staged pair before either moves). OpenVINO's own error for a write that fails names no
    file ("basic_ios::clear: iostream error" on a full disk): this one names the IR and the
    space left on its disk.

    Raises:
        ExportError: OpenVINO could not write it.
    """
    import shutil

    from yoloslim.errors import ExportError
    from yoloslim.fileio import staged

    path = Path(path)
    with staged(path, (".bin",), check=check) as tmp:
        try:
            ov.save_model(model, str(tmp), compress_to_fp16=fp16)
        except RuntimeError as e:
            free = shutil.disk_usage(path.parent).free / 2**20
            raise ExportError(
                f"{path}: OpenVINO could not write the IR ({str(e).strip() or type(e).__name__}"
                f"); {free:.1f} MiB free on its disk"
            ) from e
    return path


# OpenVINO's element type names, spelled as every other runtime's row is (fp32, not f32)
_OV_NAMES = {"f32": "fp32", "f16": "fp16"}
# and back: the precision columns' spelling taken for an OpenVINO hint (--ov-precision fp32)
OV_HINTS = {ours: theirs for theirs, ours in _OV_NAMES.items()}


def ov_word(value) -> str:
    """An OpenVINO property's value in OpenVINO's own word (``Type.bf16`` is ``bf16``)."""
    return value.to_string() if hasattr(value, "to_string") else str(value)


def respelled(text: str) -> str:
    """``text`` with an OpenVINO precision in a record of an earlier version (``f32``,
    ``int8+f16``, a row named ``pruned (OV f32)``) spelled as :func:`precision_name` now
    does (``fp32``, ``int8+fp16``), so that a record from before still matches."""
    return re.sub(r"(?<![\w])(f32|f16)(?![\w])", lambda m: _OV_NAMES[m.group(1)], text)


def precision_name(hint, quantized: bool = False) -> str:
    """How yoloslim names what OpenVINO computes in: an ``INFERENCE_PRECISION_HINT`` value
    spelled as for the other runtimes (``f32`` is ``fp32``, ``f16`` is ``fp16``, ``bf16``
    stays), or for a quantized model ``int8+`` and the precision of the rest (its box decode,
    say); ``unknown`` where the device does not say (AUTO, MULTI, HETERO)."""
    name = "unknown" if hint is None else ov_word(hint)
    name = _OV_NAMES.get(name.lower(), name)
    return f"int8+{name}" if quantized else name


def default_precision() -> str:
    """What the CPU plugin computes an FP32 IR in unless asked otherwise (``f32``, or
    ``bf16`` on AVX512-BF16/AMX CPUs)."""
    return precision_name(openvino_core().get_property("CPU", "INFERENCE_PRECISION_HINT"))


def _root_tag(path: Path) -> str:
    """The name of an XML file's root element, read a block at a time until it appears.

    A pull parser, not ``next(iterparse(...))``: that leaves a half-read generator for the
    garbage collector to close, and a Ctrl-C or SIGTERM that lands in that clean-up is
    printed as "Exception ignored" and lost (the command ran on to the end).
    """
    parser = ElementTree.XMLPullParser(events=("start",))
    with open(path, "rb") as f:
        while block := f.read(1 << 16):
            parser.feed(block)
            for _, element in parser.read_events():
                return element.tag
        parser.close()  # raises ParseError on an empty or unfinished document
    raise ElementTree.ParseError("no root element")


def read_ir(path: str | Path):
    """``openvino_core().read_model`` of an OpenVINO IR (``.xml`` + ``.bin``), checked first so
    that a wrong file is one line naming it: OpenVINO otherwise tries every frontend on it
    (TensorFlow's prints parse errors to stderr) and raises a page of C++ context.

    Raises:
        ModelError: ``path`` is no IR (its root element is not ``<net>``), its ``.bin`` is
            missing, or OpenVINO cannot read it.
    """
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"{p}: no such file")
    try:
        root = _root_tag(p)
    except ElementTree.ParseError as e:
        raise ModelError(f"{p}: not an OpenVINO IR (not XML: {e})") from e
    if root != "net":
        raise ModelError(f"{p}: not an OpenVINO IR (its root element is <{root}>, not <net>)")
    if not p.with_suffix(".bin").is_file():
        raise ModelError(f"{p}: its weights {p.with_suffix('.bin').name} are not beside it")
    try:
        return openvino_core().read_model(str(p))
    except RuntimeError as e:
        # the C++ call chain ("Exception from src/...") first, then what went wrong
        lines = [x.strip() for x in str(e).splitlines() if x.strip()]
        why = next(
            (x for x in lines if not x.startswith("Exception from")), lines[0] if lines else ""
        )
        raise ModelError(f"{p}: not a readable OpenVINO IR ({why})") from e
