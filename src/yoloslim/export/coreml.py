"""CoreML (mlprogram) via coremltools, from the traced TorchScript model. Extra: ``[coreml]``."""

from __future__ import annotations

from pathlib import Path

import torch

from yoloslim.errors import ExportError
from yoloslim.export.common import ExportContext, artifact_metadata

__all__ = ["export_coreml"]


def export_coreml(ctx: ExportContext, path: Path | None = None) -> Path:
    try:
        import coremltools as ct
    except ImportError as e:
        raise ExportError("coremltools is not installed: pip install 'yoloslim[coreml]'") from e
    path = path or ctx.out / f"{ctx.stem}.mlpackage"
    try:
        with torch.no_grad():
            traced = torch.jit.trace(ctx.model.eval(), ctx.example(), strict=False)
        mlmodel = ct.convert(
            traced,
            inputs=[ct.TensorType(name="images", shape=(1, 3, ctx.imgsz, ctx.imgsz))],
            outputs=[ct.TensorType(name="preds")],
            convert_to="mlprogram",
            compute_precision=ct.precision.FLOAT16 if ctx.half else ct.precision.FLOAT32,
        )
        mlmodel.user_defined_metadata.update(artifact_metadata(ctx))
        mlmodel.save(str(path))
    except Exception as e:  # noqa: BLE001
        raise ExportError(f"CoreML export to {path} failed: {type(e).__name__}: {e}") from e
    return path
