"""Parameters and FLOPs counted from exported graphs (ONNX, OpenVINO IR).

Counted ops: convolutions and matrix multiplications (``MACs = output elements x
input channels per group x kernel area``, or x the reduced dimension of a product);
element-wise ops are ignored, as torch's flop counter ignores them too, so torch and
graph counts compare.

Parameters are the weights and biases of those ops (and of any batch norm left in the
graph), traced back through casts, reshapes and dequantization to the stored tensor, so a
quantized graph counts the same as the float graph it came from (its INT8 weights, not
the scales and zero points). Other constants -- anchor grids, strides, the DFL
projection -- are not parameters of the model and are not counted; an export of a model
reports the parameter count of its deploy form at every input size (less any bias of
zeros, which the exporter drops: an untrained model's folded biases).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from yoloslim.errors import ConfigError
from yoloslim.runtime.ov_core import read_ir

log = logging.getLogger(__name__)

__all__ = [
    "onnx_static_imgsz",
    "onnx_stats",
    "openvino_static_imgsz",
    "openvino_stats",
    "torchscript_stats",
]

_QDQ = ("QuantizeLinear", "DequantizeLinear")
# op type -> index of its weight input (the one whose shape sets the MACs per output element)
_WEIGHT_INPUT = {
    "Conv": 1,
    "ConvInteger": 1,
    "QLinearConv": 3,
    "MatMul": 1,
    "Gemm": 1,
    "MatMulInteger": 1,
    "QLinearMatMul": 3,
}
# op type -> the inputs that hold its parameters (weight, bias)
_PARAM_INPUTS = {
    "Conv": (1, 2),
    "ConvTranspose": (1, 2),
    "Gemm": (0, 1, 2),
    "MatMul": (0, 1),
    "ConvInteger": (1,),
    "MatMulInteger": (0, 1),
    "QLinearConv": (3, 8),
    "QLinearMatMul": (0, 3),
    "BatchNormalization": (1, 2),
}
_CONVS = ("Conv", "ConvInteger", "QLinearConv")
# what may stand between a stored weight and the op that uses it
_ONNX_PASS = (*_QDQ, "Identity", "Cast", "Reshape", "Transpose")


def _onnx_weights(producers: dict, inits: dict, name: str) -> str | None:
    """The initializer a weight or bias input comes from, through Q/DQ, casts and reshapes
    (a DequantizeLinear's data input, never its scale or zero point)."""
    for _ in range(6):
        if name in inits:
            return name
        node = producers.get(name)
        if node is None or node.op_type not in _ONNX_PASS:
            return None
        name = node.input[0]
    return None


def _onnx_params(graph, producers: dict, inits: dict[str, list[int]]) -> int:
    """The weights and biases of the parameterised ops (convolutions, matrix products and
    their bias ``Add``, batch norms), stored in float or, quantized, as integers: what the
    torch model's parameters became. Graph constants (anchor grids, strides, the DFL
    projection, Q/DQ scales) are not parameters and not counted. A tensor is counted at each
    op that uses it: exporters store equal constants once (two fresh biases, say), where
    the model had two parameters. ``producers`` maps a tensor to the node that makes it,
    ``inits`` an initializer to its shape."""
    found: list[str] = []

    def take(name: str) -> None:
        src = _onnx_weights(producers, inits, name)
        if src is not None:
            found.append(src)

    for node in graph.node:
        for idx in _PARAM_INPUTS.get(node.op_type, ()):
            if idx < len(node.input) and node.input[idx]:
                take(node.input[idx])
        if node.op_type == "Add" and any(_biased(producers, i) for i in node.input):
            for i in node.input:
                take(i)
    return sum(math.prod(inits[n]) for n in found)


def _biased(producers: dict, name: str) -> bool:
    """Whether ``name`` is a product whose bias the next ``Add`` holds: a Linear exported as
    MatMul + Add, or a dynamically quantized conv or matrix product, whose integer result
    is cast and rescaled before its bias is added (``ConvInteger -> Cast -> Mul -> Add``)."""
    node = producers.get(name)
    if node is not None and node.op_type in ("MatMul", "MatMulInteger"):
        return True
    if node is None or node.op_type != "Mul":
        return False
    casts = [producers.get(i) for i in node.input]
    return any(
        c is not None
        and c.op_type == "Cast"
        and getattr(producers.get(c.input[0]), "op_type", None) in ("ConvInteger", "MatMulInteger")
        for c in casts
    )


def _reduction(op_type: str, w: list[int], node) -> int:
    """Multiply-adds per output element of a conv or matrix product with weight shape ``w``."""
    if op_type in _CONVS:
        return math.prod(w[1:])
    if op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return w[1] if trans_b else w[0]
    return w[-2] if len(w) >= 2 else w[0]  # MatMul: (..., K, N)


def onnx_stats(path: str | Path, imgsz: int) -> dict:
    """``{"params", "gmacs", "gflops"}`` of an ONNX model (float or quantized) at batch 1 and
    ``imgsz``.

    Raises:
        ConfigError: the graph was exported at a static size other than ``imgsz``.
    """
    import onnx
    from onnx import shape_inference

    model = onnx.load(str(path))
    _check_static(path, _onnx_input_height(model.graph), imgsz)
    inits = {i.name: list(i.dims) for i in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    params = _onnx_params(model.graph, producers, inits)

    def weight_shape(name: str) -> list[int] | None:
        # a weight behind DequantizeLinear (QDQ) has the shape of the initializer it dequantizes
        src = _onnx_weights(producers, inits, name)
        return inits[src] if src is not None else None

    graph_in = model.graph.input[0]
    for d, v in zip(graph_in.type.tensor_type.shape.dim, (1, 3, imgsz, imgsz), strict=False):
        d.ClearField("dim_param")
        d.dim_value = v
    # onnxruntime's FP16 converter appends the input's Cast after the nodes that read it, and
    # inference takes the nodes in their order: every conv's shape was unknown, 0 GFLOPs
    _sort_nodes(model.graph)
    inferred = shape_inference.infer_shapes(model)
    shapes = {
        vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim]
        for vi in list(inferred.graph.value_info) + list(inferred.graph.output)
    }
    macs = 0
    uncounted = []
    for node in inferred.graph.node:
        idx = _WEIGHT_INPUT.get(node.op_type)
        if idx is None or len(node.input) <= idx:
            continue
        w = weight_shape(node.input[idx])
        if not w:
            continue
        out = shapes.get(node.output[0])
        if out and not out[0] and all(out[1:]):
            out = [1, *out[1:]]  # a batch axis left symbolic: counted at batch 1
        if not out or not all(out):
            uncounted.append(node.name or node.op_type)
            continue
        macs += math.prod(out) * _reduction(node.op_type, w, node)
    if uncounted:  # a FLOPs figure that leaves layers out says so
        log.warning(
            "%s: FLOPs leave out %d layer(s) whose output shape could not be inferred (%s)",
            path,
            len(uncounted),
            ", ".join(uncounted[:3]) + (", ..." if len(uncounted) > 3 else ""),
        )
    return {"params": int(params), "gmacs": macs / 1e9, "gflops": 2 * macs / 1e9}


def _sort_nodes(graph) -> None:
    """Put ``graph``'s nodes in topological order (in place; a sorted graph stays as it is)."""
    known = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(i in known for i in n.input)]
        if not ready:  # a cycle or an input from nowhere: leave the rest as they were
            ordered += pending
            break
        for n in ready:
            known.update(n.output)
        ordered += ready
        done = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in done]
    if [id(n) for n in ordered] != [id(n) for n in graph.node]:
        copies = [type(n)() for n in ordered]
        for c, n in zip(copies, ordered, strict=True):
            c.CopyFrom(n)
        del graph.node[:]
        graph.node.extend(copies)


def _check_static(path: str | Path, static: int | None, imgsz: int) -> None:
    if static is not None and static != imgsz:
        raise ConfigError(
            f"{path} was exported at a static {static} px; its FLOPs at imgsz={imgsz} cannot "
            "be counted"
        )


def onnx_static_imgsz(path: str | Path) -> int | None:
    """The fixed input height of an ONNX graph (None when its spatial axes are dynamic)."""
    import onnx

    return _onnx_input_height(onnx.load(str(path), load_external_data=False).graph)


def _onnx_input_height(graph) -> int | None:
    dims = graph.input[0].type.tensor_type.shape.dim
    return dims[2].dim_value if len(dims) == 4 and dims[2].HasField("dim_value") else None


def openvino_static_imgsz(path: str | Path) -> int | None:
    """The fixed input height of an OpenVINO IR (None when its spatial axes are dynamic)."""
    return _ov_input_height(read_ir(path))


def _ov_input_height(model) -> int | None:
    shape = model.inputs[0].get_partial_shape()
    return shape[2].get_length() if len(shape) == 4 and shape[2].is_static else None


# what may stand between a stored weight and the op that uses it in an IR: a precision
# conversion, an INT8 weight's dequantization (zero point, scale) or a reshape
_OV_PASS = (
    "Convert",
    "Subtract",
    "Multiply",
    "FakeQuantize",
    "Reshape",
    "Transpose",
    "Squeeze",
    "Unsqueeze",
)
_OV_CONVS = ("Convolution", "GroupConvolution")
_OV_PRODUCTS = (*_OV_CONVS, "MatMul")  # the ops whose output an Add of a constant biases


def _ov_weight(output) -> Any | None:
    """The Constant op an input comes from, following each pass-through op's data input."""
    node = output.get_node()
    for _ in range(8):
        t = node.get_type_name()
        if t == "Constant":
            return node
        if t not in _OV_PASS:
            return None
        node = node.input_value(0).get_node()
    return None


def openvino_stats(path: str | Path, imgsz: int) -> dict:
    """``{"params", "gmacs", "gflops"}`` of an OpenVINO IR at batch 1 and ``imgsz``.

    Parameters are the weights of the convolutions and matrix products and the constant
    added to their outputs (the bias), as stored (f32, f16 or INT8); graph constants such as
    anchor grids and quantization ranges are not counted.

    Raises:
        ConfigError: the IR was exported at a static size other than ``imgsz``.
    """
    model = read_ir(path)
    if model.inputs[0].get_partial_shape().is_dynamic:
        model.reshape([1, 3, imgsz, imgsz])
    else:
        _check_static(path, _ov_input_height(model), imgsz)
    weights: list[Any] = []  # counted at each use, as the ONNX count is
    macs = 0

    def take(output) -> None:
        const = _ov_weight(output)
        if const is not None:
            weights.append(const)

    for op in model.get_ordered_ops():
        t = op.get_type_name()
        if t in _OV_CONVS:
            take(op.input_value(1))
            w = list(op.input_value(1).get_partial_shape().to_shape())
            out = list(op.get_output_shape(0))
            macs += math.prod(out) * (
                math.prod(w[2:]) if t == "GroupConvolution" else math.prod(w[1:])
            )
        elif t == "MatMul":
            a, b = op.input_value(0), op.input_value(1)
            for side in (a, b):
                take(side)
            w = list(b.get_partial_shape().to_shape())
            trans_b = bool(op.get_attributes().get("transpose_b", False))
            k = (w[-1] if trans_b else w[-2]) if len(w) >= 2 else w[0]
            macs += math.prod(op.get_output_shape(0)) * k
        elif t == "Add":
            feeds = [op.input_value(i).get_node().get_type_name() for i in range(2)]
            if any(f in _OV_PRODUCTS for f in feeds):
                for i, f in enumerate(feeds):
                    if f not in _OV_PRODUCTS:
                        take(op.input_value(i))
    params = sum(math.prod(c.get_output_shape(0)) for c in weights)
    return {"params": int(params), "gmacs": macs / 1e9, "gflops": 2 * macs / 1e9}


_TS_PARAM_OPS = ("aten::_convolution", "aten::conv2d", "aten::linear", "aten::addmm")


def torchscript_stats(path: str | Path, imgsz: int) -> dict:
    """``{"params", "gmacs", "gflops"}`` of a TorchScript module at batch 1 and ``imgsz``.

    FLOPs from torch's flop counter over one forward pass (the ops a scripted module runs
    go through the same dispatcher); parameters are the module's own or, in a frozen
    module, the constant weights and biases its convolutions and linear layers read.
    """
    import warnings

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with warnings.catch_warnings():  # torch.jit is deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        module = torch.jit.load(str(path), map_location="cpu").eval()
    params = sum(p.numel() for p in module.parameters())
    if not params:
        for node in module.inlined_graph.nodes():
            if node.kind() not in _TS_PARAM_OPS:
                continue
            for value in list(node.inputs())[1:3]:  # weight, bias
                src = value.node()
                if src.kind() == "prim::Constant" and value.type().kind() == "TensorType":
                    params += src.t("value").numel()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(torch.zeros(1, 3, imgsz, imgsz))
    flops = counter.get_total_flops()
    return {"params": int(params), "gmacs": flops / 2e9, "gflops": flops / 1e9}
