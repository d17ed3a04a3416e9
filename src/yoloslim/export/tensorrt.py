"""TensorRT engine (FP32, or FP16 with ``half`` on TensorRT 10.x) from the ONNX export.

Untested on a GPU in this repository's CI (no CUDA there): the build and run calls
follow the TensorRT 10/11 name-based tensor API (``set_input_shape``,
``set_tensor_address``, ``execute_async_v3``).

An engine is built for, and only runs on, the GPU model and TensorRT version it was
built with, so both the ``tensorrt`` package and a CUDA device are required; without
them export raises an :class:`ExportError` that says which is missing. The engine
format holds no free-form metadata, so ``{stem}.engine.json`` beside it carries
the same keys as the other artifacts' metadata.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from yoloslim.errors import ExportError
from yoloslim.export.common import ExportContext, artifact_metadata, path_size_mb
from yoloslim.fileio import staged

__all__ = ["engine_path", "export_engine", "tensorrt_available", "verify_engine"]

# optimisation profile of a dynamic-batch engine: (min, opt, max) batch
DYNAMIC_BATCH = (1, 8, 32)


def tensorrt_available() -> str | None:
    """None when an engine can be built here, else what is missing (package, device or both)."""
    from yoloslim.extras import installed

    missing = []
    packages = ("tensorrt", "onnx", "onnxscript", "onnxslim")  # an engine is built from ONNX
    absent = [m for m in packages if not installed(m)]
    if absent:
        missing.append(f"{', '.join(absent)} (pip install 'yoloslim[tensorrt]')")
    if not torch.cuda.is_available():
        missing.append("a CUDA device (engines are built on the GPU they run on)")
    return f"TensorRT needs {' and '.join(missing)}, not found here" if missing else None


def engine_path(ctx: ExportContext) -> Path:
    """Where :func:`export_engine` writes: ``out/{stem}.engine``."""
    return ctx.out / f"{ctx.stem}.engine"


def export_engine(ctx: ExportContext) -> Path:
    """Build ``out/{stem}.engine`` (and its ``.engine.json`` metadata) and return its path."""
    reason = tensorrt_available()
    if reason:
        raise ExportError(f"cannot build a TensorRT engine: {reason}")
    import tensorrt as trt

    from yoloslim.export.onnx import onnx_file

    path = engine_path(ctx)
    src = onnx_file(ctx, dynamic=ctx.dynamic)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(src.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"{path}: TensorRT could not parse the ONNX export {src}: {errors}")
    config = builder.create_builder_config()
    if ctx.half:
        if not hasattr(trt.BuilderFlag, "FP16"):
            # TensorRT 11 builds strongly typed networks only: FP16 has to be in the ONNX itself
            raise ExportError(
                f"TensorRT {trt.__version__} removed the FP16 builder flag (strong typing only); "
                "FP16 engines need TensorRT 10.x here; export without half for an FP32 engine"
            )
        config.set_flag(trt.BuilderFlag.FP16)
    elif hasattr(trt.BuilderFlag, "TF32"):
        # an FP32 engine computes in FP32: TensorRT's default TF32 convolutions keep 10
        # mantissa bits, as FP16 does, which the FP32 check (and a user asking for FP32)
        # does not expect; --half is the fast engine
        config.clear_flag(trt.BuilderFlag.TF32)
    if ctx.dynamic:
        profile = builder.create_optimization_profile()
        s = ctx.imgsz
        profile.set_shape("images", *[(b, 3, s, s) for b in DYNAMIC_BATCH])
        config.add_optimization_profile(profile)
    try:
        engine = builder.build_serialized_network(network, config)
    except Exception as e:  # noqa: BLE001 - TensorRT raises its own runtime errors
        raise ExportError(f"{path}: TensorRT failed to build the engine: {e}") from e
    if engine is None:
        raise ExportError(f"{path}: TensorRT failed to build the engine (see its log above)")
    # strings, as README says of every metadata value: FP16 as the other formats say it
    # (audit44 export F4: "half" was a JSON boolean)
    meta = {
        **artifact_metadata(ctx),
        "tensorrt_version": trt.__version__,
        "weights": ctx.weights,
    }
    # the engine and its metadata move into place together, once the engine passed its check
    with staged(path, (".engine.json",), check=ctx.check) as tmp:
        tmp.write_bytes(bytes(engine))
        tmp.with_suffix(".engine.json").write_text(json.dumps(meta, indent=2) + "\n")
    return path


@torch.no_grad()
def run_engine(path: Path, x: torch.Tensor) -> torch.Tensor:
    """Run a serialized engine on a batch (TensorRT 10 tensor-address API); returns CPU output."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    engine = trt.Runtime(logger).deserialize_cuda_engine(Path(path).read_bytes())
    if engine is None:
        raise ExportError(f"{path}: TensorRT could not deserialize the engine")
    context = engine.create_execution_context()
    inp = x.to("cuda", torch.float32).contiguous()
    if not context.set_input_shape("images", tuple(inp.shape)):
        low, high = DYNAMIC_BATCH[0], DYNAMIC_BATCH[-1]
        raise ExportError(
            f"{path}: the engine does not take an input of shape {tuple(inp.shape)} (a "
            f"--dynamic engine takes batches {low}-{high} at its export size; a static one, "
            "batch 1)"
        )
    out = torch.empty(tuple(context.get_tensor_shape("preds")), device="cuda")
    context.set_tensor_address("images", inp.data_ptr())
    context.set_tensor_address("preds", out.data_ptr())
    stream = torch.cuda.current_stream()
    if not context.execute_async_v3(stream.cuda_stream):
        raise ExportError(f"{path}: TensorRT execution failed")
    stream.synchronize()
    return out.cpu()


def verify_engine(path: Path, ctx: ExportContext) -> dict:
    """Run the engine on the probe images and compare with the PyTorch model."""
    import tensorrt as trt

    from yoloslim.export.verify import FP32, HALF, compare, probe_images

    x = probe_images(ctx.imgsz, batch=2)
    if ctx.dynamic:
        out = run_engine(path, x)
    else:
        out = torch.cat([run_engine(path, x[i : i + 1]) for i in range(len(x))])
    with torch.no_grad():
        ref = ctx.model.eval()(x)
    tol = HALF if ctx.half else FP32
    report = {
        "path": str(path),
        "runtime": "tensorrt",
        "runtime_version": trt.__version__,
        "precision": ctx.weights,
        "size_mb": path_size_mb(path),
        "device": torch.cuda.get_device_name(),
        **compare(out, ref, tol),
    }
    if not report["passed"]:
        raise ExportError(
            f"{path}: TensorRT output differs from PyTorch beyond {tol.name}: {report}"
        )
    return report
