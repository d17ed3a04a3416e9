"""Export to deployment formats, each artifact verified against PyTorch.

Formats: ``onnx``, ``openvino``, ``torchscript``, ``coreml`` (extra ``[coreml]``),
``engine`` (TensorRT; needs ``tensorrt`` and CUDA), ``triton`` (model repository).
The model is always re-parameterised first.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from torch import nn

from yoloslim.errors import ConfigError, ExportError
from yoloslim.export.common import ExportContext
from yoloslim.export.coreml import export_coreml
from yoloslim.export.onnx import export_onnx
from yoloslim.export.openvino import export_openvino
from yoloslim.export.tensorrt import export_engine
from yoloslim.export.torchscript import export_torchscript
from yoloslim.export.triton import export_triton
from yoloslim.result import Result

__all__ = ["EXPORTERS", "ExportContext", "export", "register_exporter"]

log = logging.getLogger(__name__)

EXPORTERS: dict[str, Callable[[ExportContext], Path]] = {}


def register_exporter(name: str, fn: Callable[[ExportContext], Path]) -> None:
    """Register an exporter; a duplicate name raises."""
    if name in EXPORTERS:
        raise ConfigError(f"exporter {name!r} is already registered")
    EXPORTERS[name] = fn


for _name, _fn in [
    ("onnx", export_onnx),
    ("openvino", export_openvino),
    ("torchscript", export_torchscript),
    ("coreml", export_coreml),
    ("engine", export_engine),
    ("triton", export_triton),
]:
    register_exporter(_name, _fn)

# artifacts our runtimes can execute on this machine, and so verify numerically
_VERIFIABLE = {"onnx", "openvino", "torchscript", "triton"}


def export(
    model: str | Path | nn.Module,
    out: str | Path,
    *,
    formats: Sequence[str] = ("onnx",),
    imgsz: int | None = None,
    dynamic: bool = False,
    half: bool = False,
    nms: bool = False,
    verify: bool = True,
) -> Result:
    """Export a checkpoint or Detector to ``formats`` under ``out`` and verify each artifact.

    Args:
        model: a yoloslim checkpoint path or a Detector (never modified).
        out: output folder (created); ``out/export_report.json`` is written.
        formats: any of ``EXPORTERS``.
        imgsz: input size (default: the checkpoint's).
        dynamic: dynamic batch axis (ONNX, OpenVINO, TensorRT).
        half: FP16 weights (OpenVINO, CoreML, TensorRT).
        nms: also write ``model_e2e.onnx`` with NonMaxSuppression in the graph (ONNX only,
            static batch 1), giving ``(num_dets, boxes, scores, classes)``.
        verify: run each artifact in its runtime and compare with PyTorch (mismatch -> ExportError).

    Returns:
        Result: ``model`` is the re-parameterised torch model, ``artifacts`` maps format -> path,
        ``report`` holds the per-format verification.

    Example:
        >>> res = export("runs/nano/best.pt", "out/", formats=["onnx", "openvino"])
    """
    from yoloslim.compress.reparam import reparameterize
    from yoloslim.export.verify import verify_artifact
    from yoloslim.models.checkpoint import load_checkpoint

    unknown = [f for f in formats if f not in EXPORTERS]
    if unknown or not formats:
        raise ConfigError(f"unknown export format(s) {unknown}; choose from {sorted(EXPORTERS)}")
    if nms and ("onnx" not in formats or dynamic):
        raise ConfigError("nms=True needs the onnx format and a static batch (no dynamic=True)")
    if isinstance(model, nn.Module):
        net, ck_imgsz, names = model, None, list(getattr(model, "names", []))
    else:
        net, ckpt = load_checkpoint(model)
        ck_imgsz, names = ckpt["imgsz"], list(ckpt["names"])
    imgsz = imgsz or ck_imgsz or 320
    if imgsz % 32:
        raise ConfigError(f"imgsz={imgsz} must be a multiple of 32")
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ExportError(f"cannot create the output folder {out}: {e}") from e
    if not os.access(out, os.W_OK):
        raise ExportError(f"the output folder {out} is not writable")
    fused = reparameterize(net, measure=False, example_input=_example(imgsz)).model
    ctx = ExportContext(
        fused,
        names,
        imgsz,
        out,
        dynamic=dynamic,
        half=half,
        strides=tuple(getattr(net, "strides", (8, 16, 32))),
    )
    report: dict = {"imgsz": imgsz, "dynamic": dynamic, "half": half, "formats": {}}
    artifacts: dict[str, Path] = {}
    for fmt in formats:
        path = EXPORTERS[fmt](ctx)
        artifacts[fmt] = path
        entry: dict = {"path": str(path)}
        if verify and fmt in _VERIFIABLE:
            target = path.parent / "1" / "model.onnx" if fmt == "triton" else path
            entry.update(verify_artifact(target, fused, imgsz, half=half and fmt != "onnx"))
        elif verify:
            entry["verified"] = f"not runnable on this machine ({fmt})"
        report["formats"][fmt] = entry
        log.info("exported %s -> %s", fmt, path)
        if fmt == "onnx" and nms:
            from yoloslim.export.nms import append_nms, verify_nms

            e2e = append_nms(path, out / f"{ctx.stem}_e2e.onnx")
            artifacts["onnx_nms"] = e2e
            report["formats"]["onnx_nms"] = {
                "path": str(e2e),
                **(verify_nms(e2e, path) if verify else {}),
            }
    (out / "export_report.json").write_text(json.dumps(report, indent=2) + "\n")
    return Result(fused, report, artifacts)


def _example(imgsz: int):
    import torch

    return torch.rand(1, 3, imgsz, imgsz, generator=torch.Generator().manual_seed(0))
