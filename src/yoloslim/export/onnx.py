"""ONNX export (torch.export-based exporter, opset 18), simplified with onnxslim.

We use the ``dynamo=True`` exporter deliberately: it is torch 2.13's default and
the TorchScript-based one is deprecated. Dynamic batch is declared with
``torch.export.Dim``; export's check runs it at batch 2 (the test suite also at 1 and 3). The exporter takes seconds
even for a small model, so within one ``export()`` call the ONNX is written once
per batch mode and shared by the formats converted from it (OpenVINO, Triton,
TensorRT) through ``ExportContext.scratch``.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import warnings
from pathlib import Path

import torch

from yoloslim.errors import ExportError
from yoloslim.export.common import ExportContext, artifact_metadata
from yoloslim.extras import require
from yoloslim.fileio import staged
from yoloslim.progress import quieted

__all__ = ["export_onnx", "onnx_file", "onnx_path", "torch_onnx", "OPSET"]

log = logging.getLogger(__name__)
OPSET = 18

# the largest batch a dynamic-batch export declares (Triton's max_batch_size stays under it)
DYNAMIC_BATCH_MAX = 256


def torch_onnx(
    model: torch.nn.Module,
    x: torch.Tensor,
    path: Path,
    *,
    output_names: list[str] | None = None,
    dynamic_shapes=None,
) -> None:
    """``torch.onnx.export`` as yoloslim calls it: the torch.export-based exporter at
    :data:`OPSET`, input "images", one self-contained file, and quiet (no per-step
    progress lines, no warnings about the torchvision ops yoloslim does not use)."""
    registration = "torch.onnx._internal.exporter._registration"
    with warnings.catch_warnings(), quieted(registration, logging.ERROR):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (x,),
            path,
            input_names=["images"],
            output_names=output_names,
            opset_version=OPSET,
            dynamo=True,
            dynamic_shapes=dynamic_shapes,
            external_data=False,
            verbose=False,
        )


def onnx_path(ctx: ExportContext) -> Path:
    """Where :func:`export_onnx` writes: ``ctx.out / f"{ctx.stem}.onnx"``."""
    return ctx.out / f"{ctx.stem}.onnx"


def export_onnx(ctx: ExportContext) -> Path:
    """Write :func:`onnx_path` (input "images", output "preds") and return it."""
    path = onnx_path(ctx)
    with staged(path, check=ctx.check) as tmp:
        shutil.copyfile(onnx_file(ctx, dynamic=ctx.dynamic), tmp)
    return path


def onnx_file(ctx: ExportContext, *, dynamic: bool) -> Path:
    """The ONNX of ``ctx.model`` with a static or dynamic batch, exported once per ``export()`` call."""
    key = f"onnx-dynamic={dynamic}"
    if key not in ctx.scratch:
        path = ctx.scratch_path(f"{ctx.stem}.{'dynamic' if dynamic else 'static'}.onnx")
        ctx.scratch[key] = path
        write_onnx(dataclasses.replace(ctx, dynamic=dynamic), path)
    return ctx.scratch[key]


def write_onnx(ctx: ExportContext, path: Path) -> Path:
    """Export, simplify with onnxslim, add metadata, check and write ``path`` (atomically)."""
    onnx = require("onnx", "onnx", ExportError)
    onnxslim = require("onnxslim", "onnx", ExportError)
    model = ctx.model.float().eval()
    x = ctx.example()
    batch = torch.export.Dim("batch", min=1, max=DYNAMIC_BATCH_MAX)
    dynamic_shapes = ({0: batch},) if ctx.dynamic else None
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        torch_onnx(model, x, tmp, output_names=["preds"], dynamic_shapes=dynamic_shapes)
        proto = onnx.load(tmp)
        proto = onnxslim.slim(proto)
        for k, v in artifact_metadata(ctx).items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = k, v
        onnx.checker.check_model(proto)
        onnx.save(proto, tmp)
        tmp.replace(path)
    except ExportError:
        raise
    except Exception as e:  # noqa: BLE001 - exporter failures come in many types
        raise ExportError(f"ONNX export to {path} failed: {type(e).__name__}: {e}") from e
    finally:
        tmp.unlink(missing_ok=True)
    return path
