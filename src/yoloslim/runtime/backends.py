"""One call interface over PyTorch checkpoints, TorchScript, ONNX Runtime and OpenVINO.

``load_backend(path)(x)`` takes float32 images in [0, 1] ``(B, 3, S, S)`` (torch or
numpy) and returns the decoded predictions ``(B, A, 4 + nc)`` as a float32 torch
tensor, whatever the runtime. Class names and input size come from the artifact's
own metadata (checkpoint dict, TorchScript ``_extra_files``, ONNX metadata_props,
OpenVINO rt_info), so an artifact needs nothing beside it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from yoloslim.errors import ConfigError, ExportError, ModelError
from yoloslim.extras import require_for
from yoloslim.fileio import did_you_mean
from yoloslim.runtime.ov_core import OV_HINTS, openvino_core, ov_word, precision_name, read_ir
from yoloslim.sysinfo import check_threads

__all__ = [
    "Backend",
    "check_artifact",
    "check_static_imgsz",
    "import_runtime",
    "load_backend",
    "names_and_imgsz",
    "SUFFIXES",
]

log = logging.getLogger(__name__)

SUFFIXES = {
    ".pt": "torch",
    ".torchscript": "torchscript",
    ".onnx": "onnxruntime",
    ".xml": "openvino",
}


class Backend:
    """A loaded artifact.

    Attributes:
        kind: "torch", "torchscript", "onnxruntime" or "openvino".
        names: class names.
        imgsz: the input size it was exported at.
        precision: what the runtime reports it computes in ("fp32", "fp16", or for OpenVINO
            its ``INFERENCE_PRECISION_HINT`` as compiled, spelled alike: "fp32", "bf16",
            "fp16"; "int8+" before it for a quantized model); for ONNX
            read from the graph on first use (it needs the ``onnx`` package, a second to
            import, which running the model does not).
        runtime_version: version of the runtime package.
        static_batch: the artifact takes batch 1 only (larger batches run image by image).
        static_imgsz: the input size an ONNX/OpenVINO graph is fixed to (None: any size,
            as for checkpoints, TorchScript and graphs with dynamic spatial axes).
        path: the artifact.
    """

    kind = "base"
    static_batch = False
    static_imgsz: int | None = None

    def __init__(
        self, path: Path, names: list[str], imgsz: int, precision: str | None, runtime_version: str
    ) -> None:
        self.path, self.names, self.imgsz, self._precision = path, names, imgsz, precision
        self.runtime_version = runtime_version
        self._stamp = _stamp(path)

    def loaded_path(self) -> Path:
        """:attr:`path` for a function that reads the file again (export, prune, train of a
        Predictor); a ModelError when the file changed since it was loaded (replaced, or
        written again by a later run): that function would act on other weights than the
        ones this backend runs."""
        if _stamp(self.path) != self._stamp:
            raise ModelError(
                f"{self.path} changed since it was loaded (replaced or written again); the "
                "Predictor runs the weights it loaded, not the file's: load the file again "
                "(ys.load) to use it as it is now"
            )
        return self.path

    @property
    def precision(self) -> str:
        if self._precision is None:
            self._precision = self._read_precision()
        return self._precision

    def _read_precision(self) -> str:
        raise NotImplementedError

    def __call__(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path}, precision={self.precision})"


def _stamp(path: Path) -> tuple[int, int, int] | None:
    """What changes when a file is replaced or written again: inode, size, modification time."""
    try:
        st = Path(path).stat()
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def check_graph_fits_metadata(
    path: Path, names: list[str], imgsz: int, inputs: Sequence, outputs: Sequence, e2e: bool
) -> None:
    """Raise :class:`ModelError` when an ONNX/OpenVINO graph's fixed input size, or the class
    scores its predictions carry (``(B, N, 4 + nc)``), are not what its metadata say:
    metadata edited, or copied from another export. Run by its size (bench: "cannot run at
    64 px" of a 96 px graph, "export again at 64") or decoded by its names, it gave errors
    that blamed the wrong thing, or nothing (audit47 bench F1). ``inputs``/``outputs``: the
    first input's and output's shapes, an int for each static axis."""
    fixed = inputs[2] if len(inputs) == 4 and isinstance(inputs[2], int) else None
    if fixed is not None and fixed != imgsz:
        raise ModelError(
            f"{path}: its metadata say imgsz {imgsz}, but its graph's input is fixed at "
            f"{fixed} px: the metadata are not this graph's (edited, or copied from another "
            "export); export the model again"
        )
    scores = outputs[2] - 4 if len(outputs) == 3 and isinstance(outputs[2], int) else None
    if not e2e and scores is not None and scores != len(names):
        raise ModelError(
            f"{path}: its metadata name {len(names)} classes, but its graph scores {scores} "
            "per box: the metadata are not this graph's (edited, or copied from another "
            "export); export the model again"
        )


def no_metadata(path: Path, missing: Sequence[str]) -> ModelError:
    """The error for an artifact without yoloslim's metadata keys ``missing``: most often a
    model another tool exported, which yoloslim cannot decode."""
    keys = " and ".join(repr(k) for k in missing)
    with contextlib.suppress(OSError):
        if Path(path).is_file() and Path(path).stat().st_size == 0:  # protobuf reads b"" fine
            return ModelError(f"{path}: is empty (0 bytes): no model; export it again")
    return ModelError(
        f"{path}: no yoloslim metadata (no {keys} key); yoloslim runs the detectors it "
        "exports: export a yoloslim checkpoint with `yoloslim export` (a model exported "
        "by another tool, such as Ultralytics, has other outputs and is not supported)"
    )


def names_and_imgsz(d: dict, path: Path) -> tuple[list[str], int]:
    """The class names and input size in an artifact's yoloslim metadata (string values, as
    stored), or a ModelError naming ``path`` when it has none."""
    missing = [k for k in ("names", "imgsz") if k not in d]
    if missing:
        raise no_metadata(path, missing)
    try:
        return json.loads(d["names"]), int(d["imgsz"])
    except ValueError as e:
        raise ModelError(f"{path}: damaged yoloslim metadata (names, imgsz: {e})") from e


class TorchBackend(Backend):
    """A checkpoint run in its deploy form (RepConv and Conv+BN folded, as every export is),
    so its latency and memory compare with the exported artifacts'; :attr:`model` is the
    checkpoint's own (training) form, for the compression stages."""

    kind = "torch"

    def __init__(self, path: Path, threads: int | None = None, device: str = "cpu") -> None:
        from yoloslim.compress.reparam import deploy_form
        from yoloslim.models.checkpoint import load_checkpoint

        if threads:
            torch.set_num_threads(threads)
        self.device = torch.device(device)
        # mapped: a last.pt's optimizer and EMA state is never read, so the memory bench
        # measures is the model's, whichever checkpoint of it is given
        model, ckpt = load_checkpoint(path, mmap=True)
        self.deploy = deploy_form(model)[0].to(self.device)
        self._model: torch.nn.Module | None = None
        names, imgsz = list(ckpt["names"]), int(ckpt["imgsz"])
        super().__init__(path, names, imgsz, "fp32", torch.__version__)

    @property
    def model(self) -> torch.nn.Module:
        """The checkpoint's model as saved (read again on first use, not kept while running;
        a ModelError when the file changed since it was loaded)."""
        if self._model is None:
            from yoloslim.models.checkpoint import load_checkpoint

            self._model = load_checkpoint(self.loaded_path())[0].to(self.device)
        return self._model

    @torch.no_grad()
    def __call__(self, x):
        return self.deploy(torch.as_tensor(x, dtype=torch.float32, device=self.device)).cpu()


class TorchScriptBackend(Backend):
    kind = "torchscript"

    def __init__(self, path: Path, threads: int | None = None, device: str = "cpu") -> None:
        if threads:
            torch.set_num_threads(threads)
        self.device = torch.device(device)
        extra = {"config.json": ""}
        with warnings.catch_warnings():  # torch.jit is deprecated, and still what mobile runs
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(path), map_location=self.device, _extra_files=extra)
            # MKLDNN-prepacked convs cannot be saved, so this runs at load time (export/torchscript.py)
            self.module = (
                torch.jit.optimize_for_inference(module) if self.device.type == "cpu" else module
            )
        names, imgsz = names_and_imgsz(json.loads(extra["config.json"] or "{}"), path)
        super().__init__(path, names, imgsz, "fp32", torch.__version__)

    @torch.no_grad()
    def __call__(self, x):
        return self.module(torch.as_tensor(x, dtype=torch.float32, device=self.device)).cpu()


def ort_options(threads: int | None = None):
    """ONNX Runtime session options as yoloslim runs every session: intra-op threads not
    spinning (a spinning pool slows down the other runtimes in the same process), and
    ``threads`` of them if given."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        so.intra_op_num_threads = threads
    return so


def ort_cpu_session(model: str | bytes, threads: int | None = None):
    """An ONNX Runtime CPU session of ``model`` (a path or serialized bytes), with
    :func:`ort_options`."""
    import onnxruntime as ort

    return ort.InferenceSession(model, ort_options(threads), providers=["CPUExecutionProvider"])


class OnnxRuntimeBackend(Backend):
    kind = "onnxruntime"

    def __init__(self, path: Path, threads: int | None = None, device: str = "cpu") -> None:
        import onnxruntime as ort

        so = ort_options(threads)
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise ConfigError(
                    f"device={device!r}: this onnxruntime has no CUDA provider "
                    f"(available: {ort.get_available_providers()})"
                )
            index = device.split(":", 1)[1] if ":" in device else "0"  # cuda:1 ran on GPU 0
            if not index.isdigit():
                raise ConfigError(f"device={device!r}: expected cuda or cuda:N (a GPU's number)")
            index = int(index)
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": index}))
        self.session = ort.InferenceSession(str(path), so, providers=providers)
        if device.startswith("cuda") and self.session.get_providers()[0] != "CUDAExecutionProvider":
            log.warning(
                "%s: device=%r asked, but onnxruntime runs it on %s (the CUDA provider did not "
                "start: its CUDA/cuDNN libraries?)",
                path,
                device,
                self.session.get_providers()[0],
            )
        outputs = [o.name for o in self.session.get_outputs()]
        self.end_to_end = onnx_end_to_end(outputs)  # detections, not preds
        meta = self.session.get_modelmeta().custom_metadata_map
        names, imgsz = names_and_imgsz(meta, path)
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.dtype = np.float16 if "float16" in inp.type else np.float32
        super().__init__(path, names, imgsz, None, ort.__version__)
        self.static_batch = isinstance(inp.shape[0], int)
        if len(inp.shape) == 4 and isinstance(inp.shape[2], int):
            self.static_imgsz = inp.shape[2]
        out_shape = self.session.get_outputs()[0].shape
        check_graph_fits_metadata(path, names, imgsz, inp.shape, out_shape, self.end_to_end)

    def _read_precision(self) -> str:
        import platform

        import onnx

        stored = onnx_precision(onnx.load(str(self.path), load_external_data=False).graph)
        on_cpu = self.session.get_providers()[0] == "CPUExecutionProvider"
        if stored == "fp16" and on_cpu and platform.machine().lower() in ("x86_64", "amd64"):
            # the x86 CPU provider has no FP16 convolution: it casts the weights to FP32 as
            # the session loads (what the model computes in, as precision says elsewhere)
            return "fp32 (fp16 weights)"
        return stored

    def __call__(self, x):
        arr = np.ascontiguousarray(torch.as_tensor(x).numpy().astype(self.dtype, copy=False))
        if self.static_batch and arr.shape[0] != 1:
            return torch.cat([self(arr[i : i + 1]) for i in range(arr.shape[0])])
        out = self.session.run(None, {self.input_name: arr})[0]
        return torch.from_numpy(out.astype(np.float32))


# the ops of a quantized ONNX graph: static (QDQ, QOperator) or dynamic
QUANT_OPS = frozenset(
    {
        "QuantizeLinear",
        "DequantizeLinear",
        "DynamicQuantizeLinear",
        "QLinearConv",
        "QLinearMatMul",
        "ConvInteger",
        "MatMulInteger",
    }
)


def quantized_ops(graph) -> list[str]:
    """The quantization ops in an ONNX graph, sorted (empty for a float model)."""
    return sorted({n.op_type for n in graph.node if n.op_type in QUANT_OPS})


def onnx_precision(graph) -> str:
    """An ONNX graph's precision: fp16 when its weights or its input are float16, int8+ when
    it holds QDQ pairs or integer ops (static or dynamic quantization); fp32 otherwise."""
    import onnx

    f16 = onnx.TensorProto.FLOAT16
    fp16 = graph.input[0].type.tensor_type.elem_type == f16 or any(
        t.data_type == f16 for t in graph.initializer
    )
    base = "fp16" if fp16 else "fp32"
    return f"int8+{base}" if quantized_ops(graph) else base


class OpenVINOBackend(Backend):
    """An IR compiled for a device. Beside :class:`Backend`'s attributes, ``compiled_hint``:
    the ``INFERENCE_PRECISION_HINT`` it was compiled with, in OpenVINO's word (``f32``,
    ``bf16``, ``f16``; None where a virtual device does not say), which ``precision``
    spells as the other runtimes do (``fp32``, ``bf16``, ``fp16``)."""

    kind = "openvino"

    def __init__(
        self, path: Path, threads: int | None = None, hint: str | None = None, device: str = "CPU"
    ) -> None:
        import openvino as ov

        core = openvino_core()
        model = read_ir(path)
        from yoloslim.export.common import openvino_metadata

        names, imgsz = names_and_imgsz(openvino_metadata(model), path)
        config = {}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        if hint:
            config["INFERENCE_PRECISION_HINT"] = hint
        self.end_to_end = ir_end_to_end(model)
        self.compiled = core.compile_model(model, device, config)
        # what the plugin really computes in: bf16 for "FP32" IR on AMX CPUs (README, Tolerances)
        try:
            computed_in = self.compiled.get_property("INFERENCE_PRECISION_HINT")
        except RuntimeError:  # AUTO, MULTI, HETERO: a virtual device does not say
            computed_in = None
        precision = precision_name(
            computed_in,
            quantized=any(op.get_type_name() == "FakeQuantize" for op in model.get_ops()),
        )
        computed = precision.removeprefix("int8+")  # a quantized model's float part
        # the hint as compiled, in OpenVINO's own words (f32, bf16, f16)
        self.compiled_hint = None if computed_in is None else ov_word(computed_in)
        if hint and computed not in (precision_name(hint), "unknown"):
            # e.g. f16 on a CPU without FP16 arithmetic: the plugin falls back to bf16
            log.warning(
                "%s: OpenVINO's %s plugin computes in %s here, not the %s asked for (it has "
                "no %s arithmetic on this machine)",
                path,
                device,
                computed,
                hint,
                hint,
            )
        super().__init__(path, names, imgsz, precision, ov.get_version())
        self.request = self.compiled.create_infer_request()
        # one request, so one call at a time: threads sharing a Predictor got OpenVINO's
        # "Infer Request is busy" (the other runtimes take concurrent calls)
        self._lock = threading.Lock()
        shape = model.inputs[0].get_partial_shape()
        self.static_batch = not shape[0].is_dynamic
        if len(shape) == 4 and shape[2].is_static:
            self.static_imgsz = shape[2].get_length()
        inp, out = (ov_shape(v.get_partial_shape()) for v in (model.inputs[0], model.outputs[0]))
        check_graph_fits_metadata(path, names, imgsz, inp, out, self.end_to_end)

    def __call__(self, x):
        arr = np.ascontiguousarray(torch.as_tensor(x, dtype=torch.float32).numpy())
        if self.static_batch and arr.shape[0] != 1:
            return torch.cat([self(arr[i : i + 1]) for i in range(arr.shape[0])])
        with self._lock:
            out = self.request.infer({0: arr})
            return torch.from_numpy(np.array(out[self.compiled.output(0)], dtype=np.float32))


def _check_ov_device(device: str, ov_device: str) -> None:
    """Raise :class:`ConfigError` for a device OpenVINO does not see here (``GPU`` matches
    ``GPU.0``; AUTO, MULTI, HETERO and BATCH choose among the others themselves)."""
    if ov_device.partition(":")[0] in ("AUTO", "MULTI", "HETERO", "BATCH"):
        return
    seen = openvino_core().available_devices
    if ov_device in seen or any(d.partition(".")[0] == ov_device for d in seen):
        return
    hint = "; cuda is for .pt, .torchscript and .onnx" if ov_device.startswith("CUDA") else ""
    raise ConfigError(f"device={device!r}: OpenVINO sees only {', '.join(seen)} here{hint}")


# what the CPU plugin may be asked to compute an IR in (INFERENCE_PRECISION_HINT)
OV_PRECISIONS = ("f32", "bf16", "f16")

# the first output of an ``export --nms`` graph (yoloslim.export.nms): it returns detections
E2E_FIRST_OUTPUT = "num_dets"


def check_ov_precision(
    value: str | None, model: str, openvino: bool, arg: str = "ov_precision"
) -> None:
    """Raise :class:`ConfigError` for an ``ov_precision`` (``--ov-precision``; ``arg``: the
    argument's name in the API) that is not one of :data:`OV_PRECISIONS` (or fp32, fp16), or
    given for ``model`` that is not an OpenVINO IR."""
    if value is None:
        return
    if value not in OV_PRECISIONS and value not in OV_HINTS:
        raise ConfigError(
            f"{arg}={value!r} (--ov-precision): expected one of {list(OV_PRECISIONS)} "
            "(or fp32, fp16, as the precision columns spell them)"
        )
    if not openvino:
        raise ConfigError(
            f"ov_precision={value!r} (--ov-precision) applies to OpenVINO IR (.xml), not {model}"
        )


def ov_shape(shape) -> list[int | str]:
    """An OpenVINO partial shape as a list: an int for each static axis, else its text."""
    return [d.get_length() if d.is_static else str(d) for d in shape]


def check_static_imgsz(backend: Backend, imgsz: int | None) -> None:
    """Raise :class:`ConfigError` when ``imgsz`` is not the size ``backend``'s graph is fixed
    to (an ONNX/OpenVINO export: ``--dynamic`` frees the batch axis only)."""
    fixed = backend.static_imgsz
    if imgsz is not None and fixed is not None and fixed != imgsz:
        raise ConfigError(
            f"{backend.path}: exported with a static {fixed} px input, cannot run at "
            f"imgsz={imgsz}; leave imgsz unset or export again at {imgsz}"
        )


def refuse_end_to_end(backend: Backend, what: str) -> None:
    """Raise when ``backend`` runs a graph with NMS inside (``export --nms``): it returns
    detections, not the raw predictions that ``what`` post-processes itself."""
    if getattr(backend, "end_to_end", False):
        raise ModelError(
            f"{backend.path}: has NMS in its graph (outputs num_dets, boxes, scores, classes) "
            f"and is for deployment; {what} takes the model without it (model.onnx beside it)"
        )


def onnx_end_to_end(output_names: Sequence[str]) -> bool:
    """Whether an ONNX graph with these outputs is an ``export --nms`` graph."""
    return list(output_names)[:1] == [E2E_FIRST_OUTPUT]


def ir_end_to_end(model) -> bool:
    """Whether an OpenVINO model is an ``export --nms`` graph converted to IR (it keeps its
    output names; a port may carry several)."""
    return bool(model.outputs) and E2E_FIRST_OUTPUT in model.outputs[0].get_names()


def is_end_to_end(path: str | Path) -> bool:
    """Whether an ONNX file, or an OpenVINO IR converted from one, is an ``export --nms``
    graph (its first output ``num_dets``)."""
    if Path(path).suffix.lower() == ".xml":
        return ir_end_to_end(read_ir(path))
    if Path(path).suffix.lower() != ".onnx":
        return False
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return onnx_end_to_end([o.name for o in graph.output])


# what a run or export folder holds that runs (a folder given as an artifact names the first)
_IN_A_FOLDER = (
    "best.pt",
    "pruned.pt",
    "model.onnx",
    "model.xml",
    "model_openvino/model.xml",
    "model_fp16_openvino/model.xml",
    "model.torchscript",
    # a quantize run's folder: the INT8 artifact of either backend
    "int8_openvino/model.xml",
    "int8/model_int8.onnx",
)


def check_artifact(path: str | Path, *, coreml: bool = False) -> Path:
    """The path (``~`` expanded), once its suffix is a known artifact type and the file exists.

    A Triton model (its ``config.pbtxt`` or its folder, as ``export`` writes them) stands for
    the ONNX it serves, ``1/model.onnx``. ``coreml``: the caller reads a CoreML
    ``.mlpackage`` itself (``info``), so the error for an unknown type names that kind too.
    """
    if not isinstance(path, (str, os.PathLike)):  # a Detector: a TypeError in Path()
        raise ModelError(
            f"artifact={type(path).__name__}: expected an artifact file's path (a Detector "
            "needs no loading: ys.validate, ys.export and ys.prune take it as it is)"
        )
    p = Path(path).expanduser()
    if p.name == "config.pbtxt" or (p.is_dir() and (p / "config.pbtxt").is_file()):
        p = (p.parent if p.name == "config.pbtxt" else p) / "1" / "model.onnx"
    if p.suffix.lower() == ".mlpackage" and p.exists():
        raise ModelError(
            f"{p}: a CoreML package runs on Apple devices only; `yoloslim info` describes it, "
            f"and this takes one of {sorted(SUFFIXES)}"
        )
    if p.is_dir():
        # also one named like an artifact: export --out exp/my.onnx makes the folder
        # exp/my.onnx/, which holds model.onnx
        # a Triton repository: its model's config
        # (names in p: a glob's paths, joined to a relative p again, named no file: audit47
        # conc F6)
        configs = [q.relative_to(p) for q in sorted(p.glob("*/config.pbtxt"))]
        hint = did_you_mean(p, [*_IN_A_FOLDER, *configs])
        if not hint and (p / "1" / "model.onnx").is_file():  # a Triton model's folder
            hint = f"; a Triton model folder without its config.pbtxt (its ONNX: {p / '1' / 'model.onnx'})"
        raise ModelError(f"{p}: is a folder, not an artifact{hint}")
    if not p.suffix and not p.exists():  # "unknown artifact type ''" for a mistyped name
        hint = did_you_mean(p.parent, [p.name + s for s in sorted(SUFFIXES)])  # best -> best.pt
        raise ModelError(f"{p}: no such file{hint}")
    if p.suffix.lower() not in (*SUFFIXES, ".mlpackage"):
        xml = p.with_suffix(".xml")
        hint = f"; did you mean {xml}?" if p.suffix.lower() == ".bin" and xml.is_file() else ""
        raise ModelError(
            f"{p}: unknown artifact type {p.suffix!r}; expected one of {sorted(SUFFIXES)}"
            f"{', a CoreML .mlpackage' if coreml else ''} or a Triton model's config.pbtxt"
            f"{hint}"
        )
    if not p.is_file():
        raise ModelError(f"{p}: artifact does not exist")
    return p


def import_runtime(path: str | Path) -> None:
    """Import the library that runs ``path`` (by its suffix), so that a later memory reading
    counts the model and not the library; an unknown suffix or a missing library is left
    to :func:`load_backend` to report."""
    kind = SUFFIXES.get(Path(path).suffix.lower())
    with contextlib.suppress(ImportError):
        if kind == "onnxruntime":
            import onnxruntime  # noqa: F401
        elif kind == "openvino":
            from yoloslim.runtime.ov_core import no_telemetry

            no_telemetry()  # before openvino's own import starts it (~/intel/openvino_ga_cid)
            import openvino  # noqa: F401


def _auto_device(kind: str) -> str:
    """``--device auto`` for a torch, TorchScript or ONNX Runtime artifact: ``cuda`` where
    that runtime can run on a GPU here, ``cpu`` otherwise (as train's ``auto``)."""
    if kind != "onnxruntime":
        return "cuda" if torch.cuda.is_available() else "cpu"
    import onnxruntime as ort

    cuda = "CUDAExecutionProvider" in ort.get_available_providers() and torch.cuda.is_available()
    return "cuda" if cuda else "cpu"


def load_backend(
    path: str | Path,
    *,
    threads: int | None = None,
    device: str = "cpu",
    hint: str | None = None,
) -> Backend:
    """Open an artifact by its suffix: ``.pt``, ``.torchscript``, ``.onnx`` or ``.xml``.

    Args:
        path: the artifact.
        threads: intra-op threads for the runtime (default: the runtime's choice). For
            ``.pt`` and ``.torchscript`` this calls ``torch.set_num_threads``, which is
            process-wide: every later torch call in the process uses it too. ONNX Runtime
            and OpenVINO set it for this artifact's session only.
        device: "cpu" (every runtime), "cuda[:N]" (torch, TorchScript, ONNX Runtime with
            its CUDA provider), "auto" (cuda where that runtime has a GPU here, else cpu;
            for ``.xml`` OpenVINO's AUTO plugin) or an OpenVINO device name ("GPU", "NPU")
            for ``.xml``.
        hint: OpenVINO ``INFERENCE_PRECISION_HINT`` (e.g. "f32"); default lets the plugin choose.

    Returns:
        A :class:`Backend`; calling it returns ``(B, A, 4 + nc)`` float32 on the CPU.

    Raises:
        ModelError: unknown suffix, missing file, or a file the runtime cannot load.
        ExportError: the runtime for that suffix is not installed.
        ConfigError: a device the runtime cannot use.

    Example:
        >>> backend = load_backend("out/model.onnx", threads=2)
        >>> preds = backend(torch.rand(1, 3, backend.imgsz, backend.imgsz))
    """
    check_threads(threads, "threads")
    p = check_artifact(path)
    kind = SUFFIXES[p.suffix.lower()]
    check_ov_precision(hint, p.name, kind == "openvino")
    hint = OV_HINTS.get(hint, hint) if hint else hint
    dev = device.lower()
    if dev == "auto" and kind != "openvino":  # OpenVINO's own AUTO plugin picks for an .xml
        dev = device = _auto_device(kind)
    if kind == "openvino":
        ov_device = "CPU" if dev == "cpu" else device.upper()
    elif dev != "cpu" and not dev.startswith("cuda"):
        raise ConfigError(f"device={device!r}: expected 'cpu' or 'cuda[:N]' for a {kind} artifact")
    elif dev.startswith("cuda") and kind != "onnxruntime" and not torch.cuda.is_available():
        raise ConfigError(f"device={device!r}: torch sees no CUDA device")
    runtime = {"onnxruntime": ("onnxruntime", "onnx"), "openvino": ("openvino", "openvino")}
    if kind in runtime:
        require_for(p, *runtime[kind], "running it")
    if kind == "openvino":
        _check_ov_device(device, ov_device)
    try:
        if kind == "torch":
            backend: Backend = TorchBackend(p, threads, dev)
        elif kind == "torchscript":
            backend = TorchScriptBackend(p, threads, dev)
        elif kind == "onnxruntime":
            backend = OnnxRuntimeBackend(p, threads, dev)
        else:
            backend = OpenVINOBackend(p, threads, hint, ov_device)
    except ModelError as e:
        if str(p) in str(e):
            raise
        raise ModelError(f"{p}: {e}") from e  # a fold refused deep in the model (review2 F5)
    except (ExportError, ConfigError):
        raise
    except ImportError as e:
        raise ExportError(f"{p}: the runtime for {kind} is not installed ({e})") from e
    except Exception as e:  # noqa: BLE001 - runtimes raise their own types on bad files
        raise ModelError(f"{p}: cannot load as {kind}: {type(e).__name__}: {e}") from e
    if not log.isEnabledFor(logging.INFO):  # precision may read the whole file
        return backend
    say_loaded(
        p,
        kind,
        backend.runtime_version,
        device,
        backend.precision,
        backend.imgsz,
        backend.static_batch,
    )
    return backend


def say_loaded(
    path: Path | str,
    kind: str,
    version: str,
    device: object,
    precision: object,
    imgsz: int,
    static_batch: bool = False,
) -> None:
    """Log (INFO, ``-v``) a model loaded: its file, runtime, device, precision and size."""
    log.info(
        "%s: %s %s on %s, computing in %s, %d px%s",
        path,
        kind,
        version,
        device,
        precision,
        imgsz,
        ", batch 1 (a larger batch runs image by image)" if static_batch else "",
    )
