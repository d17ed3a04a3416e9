"""OpenVINO IR (.xml + .bin) via ``openvino.convert_model``, FP32 or FP16 weights.

The IR is converted from the same ONNX graph the ``onnx`` format writes, so the
two artifacts compute the same thing. ``half`` stores the weights in FP16
(``compress_to_fp16``); what the CPU plugin *computes* in is a separate choice
(``INFERENCE_PRECISION_HINT``, bf16 by default on AMX/AVX512-BF16 CPUs), which
verification reads back and reports.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from yoloslim.errors import ExportError
from yoloslim.export.common import ExportContext, artifact_metadata
from yoloslim.extras import require
from yoloslim.fileio import make_folder
from yoloslim.runtime.ov_core import no_telemetry, save_ir

__all__ = ["export_openvino", "openvino_path"]


def openvino_path(ctx: ExportContext) -> Path:
    """Where :func:`export_openvino` writes: ``out/{stem}[_fp16]_openvino/{stem}.xml``."""
    suffix = "_fp16" if ctx.half else ""
    return ctx.out / f"{ctx.stem}{suffix}_openvino" / f"{ctx.stem}.xml"


def export_openvino(ctx: ExportContext) -> Path:
    """Write ``out/{stem}[_fp16]_openvino/{stem}.xml`` (+ ``.bin``) and return the .xml path.

    Metadata goes to the IR's rt_info under ``yoloslim/<key>``.
    """
    no_telemetry()
    ov = require("openvino", "openvino", ExportError)
    from yoloslim.export.onnx import onnx_file

    path = openvino_path(ctx)
    made = not path.parent.exists()
    make_folder(path.parent)  # a file in the way is named, not "[Errno 17] File exists"
    try:
        src = onnx_file(ctx, dynamic=ctx.dynamic)
        try:
            ov_model = ov.convert_model(str(src))
            for k, v in artifact_metadata(ctx).items():
                ov_model.set_rt_info(v, ["yoloslim", k])
            ov_model.set_rt_info(ctx.weights, ["yoloslim", "weights"])
        except Exception as e:  # noqa: BLE001 - OpenVINO raises its own runtime errors
            raise ExportError(
                f"OpenVINO conversion to {path} failed: {type(e).__name__}: {e}"
            ) from e
        return save_ir(ov, ov_model, path, fp16=ctx.half, check=ctx.check)
    except BaseException:
        if made:  # no empty folder named like an artifact is left (nothing was written)
            with contextlib.suppress(OSError):
                path.parent.rmdir()
        raise
