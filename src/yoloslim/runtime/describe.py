"""``describe()``: what a checkpoint or an exported artifact is, read from the file alone.

No data and no runtime: the model's classes, input size, precision, graph interface and the
steps that made it (``history``) come from the checkpoint dict or the artifact's metadata. A
checkpoint's FLOPs are counted with one forward pass of its rebuilt model on a blank input.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

from yoloslim.configs import DEFAULT_IMGSZ
from yoloslim.errors import ModelError
from yoloslim.runtime.backends import (
    SUFFIXES,
    check_artifact,
    check_graph_fits_metadata,
    ir_end_to_end,
    names_and_imgsz,
    onnx_end_to_end,
    onnx_precision,
    ov_shape,
    quantized_ops,
)
from yoloslim.torch_state import keeps_caller_state

__all__ = ["describe"]

# metadata keys whose values are JSON (the rest are plain text)
_JSON_KEYS = (
    "strides",
    "preprocess",
    "history",
    "nms_conf",
    "nms_iou",
    "nms_max_det",
    "nms_multi_label",
)


# the package that reads each kind of artifact, and the extra that installs it
_READER = {"onnxruntime": ("onnx", "onnx"), "openvino": ("openvino", "openvino")}


@keeps_caller_state
def describe(path: str | Path) -> dict[str, Any]:
    """Read what a checkpoint or exported artifact is, without data or its runtime.

    Args:
        path: a yoloslim checkpoint (``.pt``), an exported or quantized artifact
            (``.onnx``, OpenVINO ``.xml``, ``.torchscript``, a CoreML ``.mlpackage``: read
            with coremltools, which runs it on Apple devices only), or a Triton model
            (``config.pbtxt`` or its folder).

    Returns:
        ``{"path", "kind", "runtime", "size_mb", "names", "nc", "imgsz", "history", ...}``.
        A checkpoint adds ``arch``, ``params``, ``params_deploy``, ``gflops`` (deploy
        form, at ``imgsz``), ``epoch``, ``map``, ``map50``, ``data``, ``training``
        (``{"epochs_done", "epochs", "command"}`` for a ``last.pt``: how many epochs it has
        trained of how many, and the command that made it, ``train`` or ``distill``, whose
        ``--resume`` continues it; else None) and ``resumable`` (``training`` while epochs
        remain, else None). An artifact adds
        ``inputs`` and ``outputs`` (``[{name, shape, dtype}]``, a dynamic axis as its name;
        None for TorchScript, which declares no shapes),
        ``precision`` (``fp32``, ``fp16``, ``int8+fp32``...), ``end_to_end`` (an
        ``export --nms`` graph, with ``nms``: its settings), ``quantization`` (the role
        quantize gave it, or None) and ``metadata`` (the rest of what export stored). A
        Triton model (``kind`` "triton") adds ``triton``: its config's path, name,
        platform, ``max_batch_size`` and instances. An architecture file (``kind`` "arch",
        an ``arch.yaml`` from ``yoloslim nas``; untrained, so ``names`` is empty) adds
        ``arch``, ``params``, ``params_deploy``, ``gflops``, ``stages`` (the backbone's,
        as in the file), ``score`` (the search's, from the file's header; None without one,
        or when ``edited``), ``edited`` (whether the file differs from what its search
        wrote, by the digest in the ``nas_report.json`` beside it; without that report, a
        copy, whether the header's GFLOPs differ from the file's; None without a header) and
        ``header_gflops`` (the GFLOPs that header gives); ``imgsz`` is the search's size
        from that header, else 320.

    Raises:
        ModelError: the file is missing, of an unknown kind, or not readable as one.
        ExportError: the library that reads its format is not installed.

    Example:
        >>> info = describe("runs/prune/export/model.onnx")  # a pruned model's export
        >>> info["imgsz"], info["precision"], [h["stage"] for h in info["history"]]
        (320, 'fp32', ['train', 'prune'])
    """
    from yoloslim.configs import check_path
    from yoloslim.extras import require_for
    from yoloslim.runtime.predictor import Predictor

    if isinstance(path, Predictor):  # it stands for the file it runs
        path = path.backend.path
    check_path(path, "path", "a file's path (or a Predictor)")
    given = Path(path).expanduser()
    if given.suffix.lower() in (".yaml", ".yml"):
        return _arch_file(given)
    if given.suffix.lower() == ".mlpackage" and given.is_dir():
        from yoloslim.export.common import path_size_mb

        require_for(given, "coremltools", "coreml", "reading a CoreML package")
        return {**_coreml(given), "size_mb": path_size_mb(given)}
    p = check_artifact(given, coreml=True)
    kind = SUFFIXES[p.suffix.lower()]
    if kind in _READER:
        require_for(p, *_READER[kind], "reading it")
    if kind == "torch":
        info = _checkpoint(p)
    elif kind == "onnxruntime":
        info = _onnx(p)
    elif kind == "openvino":
        info = _openvino(p)
    else:
        info = _torchscript(p)
    from yoloslim.export.common import path_size_mb

    info["size_mb"] = path_size_mb(p)
    if p != given:  # a Triton model: the ONNX it serves, and its config
        info.update(kind="triton", triton=_triton(given))
        config = Path(info["triton"]["config"])
        info["size_mb"] = path_size_mb(config)  # the model as export sized it: config and 1/
    return info


def _metadata(raw: dict[str, str], p: Path) -> dict[str, Any]:
    """The yoloslim part of an artifact's metadata, JSON values decoded; a ModelError when
    it has none (not exported by yoloslim)."""
    names, imgsz = names_and_imgsz(raw, p)  # the check every runtime backend makes
    meta: dict[str, Any] = {}
    for k, v in raw.items():
        if k in ("names", "imgsz", "nc"):
            continue
        try:
            meta[k] = json.loads(v) if k in _JSON_KEYS else v
        except ValueError:
            meta[k] = v
    extra = {k: meta.pop(k) for k in ("history", "quantization") if k in meta}
    return {
        "names": names,
        "nc": len(names),
        "imgsz": imgsz,
        "history": extra.get("history", []),
        "quantization": extra.get("quantization"),
        "metadata": meta,
    }


def _arch_file(p: Path) -> dict[str, Any]:
    """An ``arch.yaml``: its profile at the size its search ran at (the header ``nas``
    writes says it), else at 320 px."""
    import yaml

    from yoloslim.bench.flops import model_profile
    from yoloslim.export.common import path_size_mb
    from yoloslim.models import build_model, load_arch_yaml
    from yoloslim.models.arch import edited_since_search, search_header

    if not p.is_file():
        raise ModelError(f"{p}: arch file does not exist")
    try:
        arch = load_arch_yaml(p)  # its errors name the file and the line
    except ModelError:
        try:  # read again only to say what else the file is
            head = yaml.safe_load(p.read_text(errors="replace"))
        except yaml.YAMLError:
            head = None
        if isinstance(head, dict) and not {"backbone", "arch"} & set(head):  # a data.yaml
            raise ModelError(
                f"{p}: not an architecture file (no backbone); info describes checkpoints, "
                "exported artifacts and the arch.yaml files nas writes"
            ) from None
        raise
    found = search_header(p)
    imgsz = found.imgsz if found else DEFAULT_IMGSZ
    edited = edited_since_search(p) if found else None
    header_gflops = _number(found.gflops) if found and found.gflops else None
    try:
        net = build_model(arch)
    except ModelError as e:  # its 'layers' record, which load_arch_yaml cannot check
        raise ModelError(f"{p}: {e}") from e
    profile = model_profile(net, imgsz=imgsz)
    if edited is None and header_gflops is not None:
        # no report beside it (a copy): a header whose GFLOPs are not the file's scored
        # another network (it was shown as this file's score)
        edited = not math.isclose(header_gflops, profile["gflops"], rel_tol=1e-3)
    return {
        "path": str(p),
        "kind": "arch",
        "runtime": "none (untrained)",
        "arch": arch.get("name"),
        "names": [],
        "nc": arch["nc"],
        "imgsz": imgsz,
        "params": profile["params"],
        "params_deploy": profile["params_deploy"],
        "gflops": _gflops(profile["gflops"]),
        "stages": arch["backbone"]["stages"],
        # the search's score is of the file as it wrote it
        "score": _number(found.score) if found and not edited else None,
        "edited": edited,
        "header_gflops": header_gflops,
        "history": [],
        "size_mb": path_size_mb(p),
    }


def _gflops(x: float) -> float:
    """4 decimals, or 6 significant digits under 1 (4 decimals hid small models: 0.0188 and
    0.0192 showed as one; audit52 info F3)."""
    return round(x, 4) if x >= 1 else float(f"{x:.6g}")


def _number(text: str) -> float | None:
    """A finite number, else None (JSON has no NaN or infinity)."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _checkpoint(p: Path) -> dict[str, Any]:
    from yoloslim.bench.flops import model_profile
    from yoloslim.models.checkpoint import load_checkpoint

    model, ck = load_checkpoint(p)
    meta = ck.get("meta") or {}
    state = ck.get("train_state")
    imgsz = int(ck["imgsz"])
    profile = model_profile(model, imgsz=imgsz)
    epochs = (state or {}).get("config", {}).get("epochs")
    return {
        "path": str(p),
        "kind": "checkpoint",
        "runtime": "torch",
        "format": ck.get("format"),
        # a registered model's name is an arch too (read_checkpoint takes it: audit44 models F5)
        "arch": arch if isinstance(arch := ck.get("arch"), str) else (arch or {}).get("name"),
        "names": list(ck["names"]),
        "nc": len(ck["names"]),
        "imgsz": imgsz,
        "params": profile["params"],
        "params_deploy": profile["params_deploy"],
        "gflops": _gflops(profile["gflops"]),
        "epoch": meta.get("epoch"),
        # meta is free-form: a value that is no number is not shown as an mAP (it was a
        # traceback in info: audit44 models F5)
        "map": _real(meta.get("map")),
        "map50": _real(meta.get("map50")),
        "data": meta.get("data"),
        "history": meta.get("history", []),
        **_training(state, epochs),
    }


def _real(v: object) -> float | None:
    """``v`` where it is a finite real number (not a bool: a value of a checkpoint's
    free-form meta), else None."""
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    return v if ok else None


def _onnx(p: Path) -> dict[str, Any]:
    from yoloslim.export.common import onnx_metadata
    from yoloslim.extras import require

    onnx = require("onnx", "onnx")
    try:
        proto = onnx.load(str(p), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - protobuf raises several kinds
        raise ModelError(f"{p}: not a readable ONNX file ({type(e).__name__}: {e})") from e
    graph = proto.graph
    meta = _metadata(onnx_metadata(proto), p)

    def value_info(v) -> dict[str, Any]:
        t = v.type.tensor_type
        shape = [d.dim_value or d.dim_param or "?" for d in t.shape.dim]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name if t.elem_type else "?"
        return {"name": v.name, "shape": shape, "dtype": dtype}

    inputs = [value_info(v) for v in graph.input]
    quant = quantized_ops(graph)
    end_to_end = onnx_end_to_end([o.name for o in graph.output])
    in_shape = inputs[0]["shape"] if inputs else []
    out_shape = value_info(graph.output[0])["shape"] if graph.output else []
    check_graph_fits_metadata(p, meta["names"], meta["imgsz"], in_shape, out_shape, end_to_end)
    return {
        "path": str(p),
        "kind": "onnx",
        "runtime": "onnxruntime",
        **meta,
        "opset": max(
            (o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=None
        ),
        "inputs": inputs,
        "outputs": [value_info(v) for v in graph.output],
        "precision": onnx_precision(graph),
        "quantized_ops": quant,
        "end_to_end": end_to_end,
        "nms": _nms_settings(meta["metadata"]) if end_to_end else None,
    }


_OV_DTYPES = {
    "f64": "float64", "f32": "float32", "f16": "float16",
    "i64": "int64", "i32": "int32", "i16": "int16", "i8": "int8",
    "u64": "uint64", "u32": "uint32", "u16": "uint16", "u8": "uint8", "boolean": "bool",
}  # fmt: skip


def _ov_dtype(t) -> str:
    """An OpenVINO element type by numpy's name, as an ONNX's is said (``f32`` was
    ``float32`` there: audit52 info F4); its own name for a type numpy has not (``bf16``,
    ``u4``, ``nf4``: numpy's stand-ins, float16 and uint8, misnamed them: review F8)."""
    name = t.get_type_name()
    return _OV_DTYPES.get(name, name)


def _openvino(p: Path) -> dict[str, Any]:
    from yoloslim.export.common import openvino_metadata
    from yoloslim.runtime.ov_core import precision_name, read_ir

    model = read_ir(p)
    meta = _metadata(openvino_metadata(model), p)

    def port(v) -> dict[str, Any]:
        return {
            "name": v.get_any_name(),
            "shape": ov_shape(v.get_partial_shape()),
            "dtype": _ov_dtype(v.get_element_type()),
        }

    ops = [op.get_type_name() for op in model.get_ops()]
    weights = meta["metadata"].pop("weights", None)  # fp16 when exported with --half
    fp16 = weights == "fp16" or any(
        op.get_type_name() == "Constant" and op.get_element_type().get_type_name() == "f16"
        for op in model.get_ops()
    )
    base = "fp16" if fp16 else "fp32"
    hint = None
    if model.has_rt_info(["runtime_options", "INFERENCE_PRECISION_HINT"]):
        hint = model.get_rt_info(["runtime_options", "INFERENCE_PRECISION_HINT"]).astype(str)
    int8 = "FakeQuantize" in ops
    end_to_end = ir_end_to_end(model)
    shapes = [ov_shape(v.get_partial_shape()) for v in (model.inputs[0], model.outputs[0])]
    check_graph_fits_metadata(p, meta["names"], meta["imgsz"], *shapes, end_to_end)
    return {
        "path": str(p),
        "kind": "openvino",
        "runtime": "openvino",
        **meta,
        "inputs": [port(v) for v in model.inputs],
        "outputs": [port(v) for v in model.outputs],
        "precision": precision_name(base, quantized=int8),
        "fake_quantize_ops": ops.count("FakeQuantize"),
        "precision_hint": hint,  # what the IR asks the CPU plugin to compute in, if anything
        "end_to_end": end_to_end,
        "nms": _nms_settings(meta["metadata"]) if end_to_end else None,
    }


def _torchscript(p: Path) -> dict[str, Any]:
    import torch

    extra = {"config.json": ""}
    try:
        with warnings.catch_warnings():  # torch.jit is deprecated
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.jit.load(str(p), map_location="cpu", _extra_files=extra)
        raw = json.loads(extra["config.json"] or "{}")
    except (RuntimeError, ValueError) as e:
        raise ModelError(f"{p}: not a readable yoloslim TorchScript file ({e})") from e
    meta = _metadata(raw, p)
    return {
        "path": str(p),
        "kind": "torchscript",
        "runtime": "torchscript",
        **meta,
        "inputs": None,  # a traced module declares no shapes; it takes what export traced
        "outputs": None,
        "precision": "fp32",
        "end_to_end": False,
        "nms": None,
    }


def _coreml(p: Path) -> dict[str, Any]:
    """A CoreML package, from its spec (coremltools reads it on any system; only macOS runs
    it)."""
    from yoloslim.errors import ExportError
    from yoloslim.export.coreml import read_spec

    try:
        desc = read_spec(p).description
    except ExportError:  # coremltools is not installed: said as such
        raise
    except Exception as e:  # noqa: BLE001 - a bad manifest or protobuf raises many types
        raise ModelError(f"{p}: not a readable CoreML package ({type(e).__name__}: {e})") from e
    meta = _metadata(dict(desc.metadata.userDefined), p)
    weights = meta["metadata"].pop("weights", None)  # recorded by export since it has been

    def ports(features) -> list[dict[str, Any]]:
        return [
            {"name": f.name, "shape": list(f.type.multiArrayType.shape), "dtype": "float32"}
            for f in features
        ]

    return {
        "path": str(p),
        "kind": "coreml",
        "runtime": "Core ML, Apple devices only",
        **meta,
        "inputs": ports(desc.input),
        "outputs": ports(desc.output),
        "precision": weights or "fp32 or fp16 (not recorded)",
        "end_to_end": False,
        "nms": None,
    }


def _triton(given: Path) -> dict[str, Any]:
    from yoloslim.export.triton import parse_config_pbtxt

    config = given if given.name == "config.pbtxt" else given / "config.pbtxt"
    try:
        cfg = parse_config_pbtxt(config.read_text())
    except (IndexError, OSError, UnicodeDecodeError) as e:
        raise ModelError(f"{config}: not a readable Triton config ({type(e).__name__})") from e
    missing = [k for k in ("name", "platform") if not cfg.get(k)]
    if missing:  # empty, or text of another kind: described as name None before
        raise ModelError(
            f"{config}: not a readable Triton config (no {' or '.join(missing)}; yoloslim's "
            "export writes both)"
        )
    return {
        "config": str(config),
        "name": cfg.get("name"),
        "platform": cfg.get("platform"),
        "max_batch_size": cfg.get("max_batch_size"),
        "instance_group": cfg.get("instance_group"),
    }


def _nms_settings(meta: dict[str, Any]) -> dict[str, Any]:
    return {k: meta.pop(f"nms_{k}", None) for k in ("conf", "iou", "max_det", "multi_label")}


def _training(state: dict | None, epochs: int | None) -> dict:
    """``training`` (a ``last.pt``: epochs done of how many, the command that made it and its
    process count) and ``resumable`` (the same while epochs remain, else None)."""
    if not state:
        return {"training": None, "resumable": None}
    # a distillation's last.pt holds its hook's state (the teacher, the align modules)
    command = "distill" if "hook" in state else "train"
    done = {
        "epochs_done": state["epoch"] + 1,
        "epochs": epochs,
        "command": command,
        # torchrun's process count (1: one process; None: a last.pt from before it was
        # recorded): the same count continues it exactly
        "processes": state.get("world"),
        # of them on one node (None: all on one, or a last.pt from before it was recorded)
        "per_node": state.get("per_node"),
    }
    return {
        "training": done,
        # a last epoch whose validation a stop or an error cut short is validated on resume
        "resumable": done
        if epochs is None or done["epochs_done"] < epochs or state.get("val_pending")
        else None,
    }
