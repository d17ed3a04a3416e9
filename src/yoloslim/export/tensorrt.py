"""TensorRT engine (FP32/FP16) from the ONNX export; needs ``tensorrt`` and a CUDA device."""

from __future__ import annotations

from pathlib import Path

import torch

from yoloslim.errors import ExportError
from yoloslim.export.common import ExportContext

__all__ = ["export_engine", "tensorrt_available"]


def tensorrt_available() -> str | None:
    """None when an engine can be built here, else the reason it cannot."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "the tensorrt package is not installed (pip install 'yoloslim[tensorrt]')"
    if not torch.cuda.is_available():
        return "no CUDA device is available (TensorRT engines are built on the GPU they run on)"
    return None


def export_engine(ctx: ExportContext, path: Path | None = None) -> Path:
    reason = tensorrt_available()
    if reason:
        raise ExportError(f"cannot build a TensorRT engine: {reason}")
    import tensorrt as trt

    from yoloslim.export.onnx import export_onnx

    path = path or ctx.out / f"{ctx.stem}.engine"
    onnx_path = export_onnx(ctx, ctx.out / f".{ctx.stem}.trt-src.onnx")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    if ctx.half:
        config.set_flag(trt.BuilderFlag.FP16)
    if ctx.dynamic:
        profile = builder.create_optimization_profile()
        s = ctx.imgsz
        profile.set_shape("images", (1, 3, s, s), (8, 3, s, s), (32, 3, s, s))
        config.add_optimization_profile(profile)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise ExportError("TensorRT failed to build the engine")
    path.write_bytes(bytes(engine))
    onnx_path.unlink(missing_ok=True)
    return path
