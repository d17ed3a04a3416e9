"""OpenVINO IR (.xml + .bin) via ``openvino.convert_model``, FP32 or FP16 weights."""

from __future__ import annotations

from pathlib import Path

from yoloslim.errors import ExportError
from yoloslim.export.common import ExportContext, artifact_metadata

__all__ = ["export_openvino"]


def export_openvino(ctx: ExportContext, path: Path | None = None) -> Path:
    """Convert the model (through ONNX) to IR; ``ctx.half`` compresses weights to FP16."""
    try:
        import openvino as ov
    except ImportError as e:
        raise ExportError("openvino is not installed: pip install 'yoloslim[openvino]'") from e
    from yoloslim.export.onnx import export_onnx

    suffix = "_fp16" if ctx.half else ""
    path = path or ctx.out / f"{ctx.stem}{suffix}_openvino" / f"{ctx.stem}.xml"
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx_path = export_onnx(ctx, ctx.out / f".{ctx.stem}.ov-src.onnx")
    try:
        ov_model = ov.convert_model(str(onnx_path))
        if not ctx.dynamic:
            ov_model.reshape([1, 3, ctx.imgsz, ctx.imgsz])
        for k, v in artifact_metadata(ctx).items():
            ov_model.set_rt_info(v, ["yoloslim", k])
        ov.save_model(ov_model, str(path), compress_to_fp16=ctx.half)
    except Exception as e:  # noqa: BLE001
        raise ExportError(f"OpenVINO conversion to {path} failed: {type(e).__name__}: {e}") from e
    finally:
        onnx_path.unlink(missing_ok=True)
    return path
