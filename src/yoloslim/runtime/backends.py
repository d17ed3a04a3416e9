"""One call interface over PyTorch checkpoints, TorchScript, ONNX Runtime and OpenVINO.

``load_backend(path)(x)`` takes float32 images in [0, 1] ``(B, 3, S, S)`` and returns
the decoded predictions ``(B, A, 4 + nc)`` as a torch tensor, whatever the runtime.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from yoloslim.errors import ExportError, ModelError

__all__ = ["Backend", "check_artifact", "load_backend", "SUFFIXES"]

SUFFIXES = {
    ".pt": "torch",
    ".torchscript": "torchscript",
    ".onnx": "onnxruntime",
    ".xml": "openvino",
}


class Backend:
    """A loaded artifact. Attributes: ``kind``, ``names``, ``imgsz``, ``precision``, ``path``."""

    kind = "base"

    def __init__(self, path: Path, names: list[str], imgsz: int, precision: str) -> None:
        self.path, self.names, self.imgsz, self.precision = path, names, imgsz, precision

    def __call__(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path}, precision={self.precision})"


def _meta(d: dict) -> tuple[list[str], int]:
    try:
        return json.loads(d["names"]), int(d["imgsz"])
    except (KeyError, ValueError) as e:
        raise ModelError(
            f"artifact metadata lacks names/imgsz ({e}); was it exported by yoloslim?"
        ) from e


class TorchBackend(Backend):
    kind = "torch"

    def __init__(self, path: Path, threads: int | None = None) -> None:
        from yoloslim.models.checkpoint import load_checkpoint

        if threads:
            torch.set_num_threads(threads)
        self.model, ckpt = load_checkpoint(path)
        super().__init__(path, list(ckpt["names"]), int(ckpt["imgsz"]), "fp32")

    @torch.no_grad()
    def __call__(self, x):
        return self.model(torch.as_tensor(x, dtype=torch.float32))


class TorchScriptBackend(Backend):
    kind = "torchscript"

    def __init__(self, path: Path, threads: int | None = None) -> None:
        if threads:
            torch.set_num_threads(threads)
        extra = {"config.json": ""}
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        self.module = torch.jit.optimize_for_inference(module)
        names, imgsz = _meta(json.loads(extra["config.json"] or "{}"))
        super().__init__(path, names, imgsz, "fp32")

    @torch.no_grad()
    def __call__(self, x):
        return self.module(torch.as_tensor(x, dtype=torch.float32))


class OnnxRuntimeBackend(Backend):
    kind = "onnxruntime"

    def __init__(self, path: Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        # spinning thread pools slow down other runtimes in the same process (FIELD_NOTES.md)
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            so.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        names, imgsz = _meta(meta)
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        precision = "fp16" if "float16" in inp.type else "fp32"
        super().__init__(path, names, imgsz, precision)
        self.dtype = np.float16 if precision == "fp16" else np.float32
        self.static_batch = isinstance(inp.shape[0], int)

    def __call__(self, x):
        arr = np.ascontiguousarray(torch.as_tensor(x).numpy().astype(self.dtype, copy=False))
        if self.static_batch and arr.shape[0] != 1:
            return torch.cat([self(arr[i : i + 1]) for i in range(arr.shape[0])])
        out = self.session.run(None, {self.input_name: arr})[0]
        return torch.from_numpy(out.astype(np.float32))


class OpenVINOBackend(Backend):
    kind = "openvino"

    def __init__(self, path: Path, threads: int | None = None, hint: str | None = None) -> None:
        import openvino as ov

        core = ov.Core()
        model = core.read_model(str(path))
        names, imgsz = _meta(
            {
                k: model.get_rt_info(["yoloslim", k]).astype(str)
                for k in ("names", "imgsz")
                if model.has_rt_info(["yoloslim", k])
            }
        )
        config = {}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        if hint:
            config["INFERENCE_PRECISION_HINT"] = hint
        self.compiled = core.compile_model(model, "CPU", config)
        hint_value = self.compiled.get_property("INFERENCE_PRECISION_HINT")
        precision = hint_value.to_string() if hasattr(hint_value, "to_string") else str(hint_value)
        super().__init__(path, names, imgsz, precision)
        self.request = self.compiled.create_infer_request()
        self.static_batch = not model.inputs[0].get_partial_shape()[0].is_dynamic

    def __call__(self, x):
        arr = np.ascontiguousarray(torch.as_tensor(x, dtype=torch.float32).numpy())
        if self.static_batch and arr.shape[0] != 1:
            return torch.cat([self(arr[i : i + 1]) for i in range(arr.shape[0])])
        out = self.request.infer({0: arr})
        return torch.from_numpy(np.array(out[self.compiled.output(0)], dtype=np.float32))


def check_artifact(path: str | Path) -> Path:
    """The path, once its suffix is a known artifact type and the file exists."""
    p = Path(path)
    if p.suffix not in SUFFIXES:
        raise ModelError(
            f"{p}: unknown artifact type {p.suffix!r}; expected one of {sorted(SUFFIXES)}"
        )
    if not p.is_file():
        raise ModelError(f"{p}: artifact does not exist")
    return p


def load_backend(
    path: str | Path, *, threads: int | None = None, hint: str | None = None
) -> Backend:
    """Open an artifact by its suffix: ``.pt``, ``.torchscript``, ``.onnx`` or ``.xml``.

    Args:
        path: the artifact.
        threads: intra-op threads for the runtime (default: the runtime's choice).
        hint: OpenVINO ``INFERENCE_PRECISION_HINT`` (e.g. "f32"); default lets the plugin choose.
    """
    p = check_artifact(path)
    kind = SUFFIXES[p.suffix]
    try:
        if kind == "torch":
            return TorchBackend(p, threads)
        if kind == "torchscript":
            return TorchScriptBackend(p, threads)
        if kind == "onnxruntime":
            return OnnxRuntimeBackend(p, threads)
        return OpenVINOBackend(p, threads, hint)
    except (ModelError, ExportError):
        raise
    except ImportError as e:
        raise ExportError(f"{p}: the runtime for {kind} is not installed ({e})") from e
    except Exception as e:  # noqa: BLE001 - runtimes raise their own types on bad files
        raise ModelError(f"{p}: cannot load as {kind}: {type(e).__name__}: {e}") from e


def default_threads() -> int:
    return (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    )
