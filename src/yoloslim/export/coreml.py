"""CoreML (mlprogram) via coremltools, from a ``torch.export`` program. Extra: ``[coreml]``.

coremltools' TorchScript frontend fails on the traced decode (the anchor grid's
``aten::Int`` casts of traced sizes: "only 0-dimensional arrays can be converted
to Python scalars", coremltools 9.0), so the model goes through
``torch.export`` at a static input size, where the anchor grid is a constant.
coremltools runs predictions only on macOS; on other systems verification loads
the saved package's spec back and checks the input and output names, shapes and
types, and the metadata, and the report says ``passed: null`` (nothing was run). On
macOS it also compares predictions with PyTorch (``passed: true``).
"""

from __future__ import annotations

import contextlib
import io
import logging
import platform
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from yoloslim.errors import ExportError, YoloslimError
from yoloslim.export.common import ExportContext, artifact_metadata, path_size_mb
from yoloslim.fileio import staged
from yoloslim.progress import quieted

__all__ = ["coreml_path", "export_coreml", "verify_coreml"]

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _hushed() -> Iterator[None]:
    """coremltools' import warnings ("Torch version ... has not been tested", "Failed to load
    _MLModelProxy" off macOS) and its converter's tqdm bars, written to stderr whatever the
    caller wants, go to yoloslim's log at DEBUG instead (``-v`` does not show them either:
    they say nothing about the artifact, which verification checks)."""
    buf = io.StringIO()
    try:
        with (
            contextlib.redirect_stderr(buf),
            quieted("coremltools", logging.ERROR),
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        if buf.getvalue().strip():
            log.debug("coremltools wrote: %s", buf.getvalue().strip())


def _coremltools():
    try:
        with _hushed():
            import coremltools as ct
    except ImportError as e:
        raise ExportError(
            "CoreML export needs coremltools, which is not installed: pip install 'yoloslim[coreml]'"
        ) from e
    return ct


def read_spec(path: str | Path):
    """The ``Model`` protobuf of a ``.mlpackage`` (its manifest's root model) or ``.mlmodel``,
    read without writing anything: coremltools' ``load_spec`` rewrites a package's
    ``Manifest.json`` as it opens it, and ``info`` must leave an artifact as it found it."""
    import json

    _coremltools()  # its protobuf module, with its messages; the missing extra said as always
    from coremltools.proto import Model_pb2

    path = Path(path)
    if path.is_dir():
        manifest = json.loads((path / "Manifest.json").read_text())
        root = manifest["itemInfoEntries"][manifest["rootModelIdentifier"]]
        path = path / "Data" / root["path"]
    spec = Model_pb2.Model()
    spec.ParseFromString(path.read_bytes())
    return spec


def coreml_path(ctx: ExportContext) -> Path:
    """Where :func:`export_coreml` writes: ``out/{stem}.mlpackage``."""
    return ctx.out / f"{ctx.stem}.mlpackage"


def export_coreml(ctx: ExportContext) -> Path:
    """Write ``out/{stem}.mlpackage`` (FP16 compute precision with ``half``) and return it."""
    ct = _coremltools()
    path = coreml_path(ctx)
    size = (1, 3, ctx.imgsz, ctx.imgsz)
    try:
        with torch.no_grad(), _hushed():
            program = torch.export.export(ctx.model.eval(), (ctx.example(),))
            program = program.run_decompositions({})
            mlmodel = ct.convert(
                program,
                inputs=[ct.TensorType(name="images", shape=size, dtype=np.float32)],
                outputs=[ct.TensorType(name="preds", dtype=np.float32)],
                convert_to="mlprogram",
                compute_precision=ct.precision.FLOAT16 if ctx.half else ct.precision.FLOAT32,
            )
        mlmodel.user_defined_metadata.update(artifact_metadata(ctx))
        mlmodel.user_defined_metadata["weights"] = ctx.weights  # for info
        mlmodel.short_description = f"yoloslim detector, {len(ctx.names)} classes, {ctx.imgsz} px"
        with staged(path, check=ctx.check) as tmp:
            mlmodel.save(str(tmp))
            # coremltools' torch.export path leaves a debug map in the package, listed in no
            # manifest and used by no runtime (113 KiB of damo-nano's size)
            (tmp / "executorch_debug_handle_mapping.json").unlink(missing_ok=True)
    except YoloslimError:  # a folder in the way, a failed check: they name the file
        raise
    except Exception as e:  # noqa: BLE001 - the converter raises many types
        raise ExportError(f"CoreML export to {path} failed: {type(e).__name__}: {e}") from e
    return path


def _no_predictions() -> str | None:
    """Why coremltools cannot run a model here, or None when it can: off macOS, or on a Mac
    whose coremltools has no native runtime (a Python without its binary wheel), where
    ``predict`` raises a bare Exception that read as a failed export."""
    if platform.system() != "Darwin":
        return "coremltools cannot run predictions off macOS"
    try:
        import coremltools.libcoremlpython  # noqa: F401 - the runtime predict needs
    except ImportError as e:
        return f"coremltools could not load its runtime here ({e})"
    return None


def verify_coreml(path: Path, ctx: ExportContext) -> dict:
    """Check the saved package's interface (all systems) and predictions (macOS only)."""
    ct = _coremltools()
    desc = read_spec(path).description
    want_out = [1, sum((ctx.imgsz // s) ** 2 for s in ctx.strides), 4 + len(ctx.names)]
    got = {
        "inputs": {i.name: list(i.type.multiArrayType.shape) for i in desc.input},
        "outputs": {o.name: list(o.type.multiArrayType.shape) for o in desc.output},
    }
    expected = {"inputs": {"images": [1, 3, ctx.imgsz, ctx.imgsz]}, "outputs": {"preds": want_out}}
    meta = dict(desc.metadata.userDefined)
    problems = [f"{k}: {got[k]} != {expected[k]}" for k in expected if got[k] != expected[k]]
    if meta.get("names") != artifact_metadata(ctx)["names"]:
        problems.append("metadata 'names' missing or wrong")
    if problems:
        raise ExportError(f"{path}: CoreML interface check failed: {'; '.join(problems)}")
    report: dict = {
        "path": str(path),
        "runtime": "coremltools",
        "runtime_version": ct.__version__,
        "precision": ctx.weights,
        "size_mb": path_size_mb(path),
        "interface": got,
    }
    why = _no_predictions()
    if why is not None:
        # neither failed nor verified: no output was compared (readers of ``passed`` treat
        # True as verified, False as failed; null is neither)
        report["passed"] = None
        report["verified"] = f"interface only: names, shapes and metadata ({why}; passed: null)"
        return report
    from yoloslim.export.verify import FP32, HALF, compare, probe_images

    x = probe_images(ctx.imgsz, batch=1)
    model = ct.models.MLModel(str(path), compute_units=ct.ComputeUnit.CPU_ONLY)
    out = torch.from_numpy(np.asarray(model.predict({"images": x.numpy()})["preds"]))
    with torch.no_grad():
        report.update(compare(out.float(), ctx.model.eval()(x), HALF if ctx.half else FP32))
    if not report["passed"]:
        raise ExportError(f"{path}: CoreML output differs from PyTorch ({report})")
    return report
