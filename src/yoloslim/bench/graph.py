"""Parameters and FLOPs counted from exported graphs (ONNX, OpenVINO IR).

Counted ops: convolutions and matrix multiplications (``MACs = output elements x
input channels per group x kernel area``); element-wise ops are ignored, as torch's
flop counter ignores them too, so torch and graph counts compare.

Quantized ONNX graphs count the same as the float graph they came from: in QDQ form a
weight is an INT8 initializer that reaches its Conv through ``DequantizeLinear``, so
parameters are the float initializers plus the integer tensors a ``DequantizeLinear``
reads (weights and INT32 biases), not the scales and zero points; ``ConvInteger`` /
``MatMulInteger`` (dynamic quantization) and ``QLinearConv`` / ``QLinearMatMul`` read
their integer weights directly.
"""

from __future__ import annotations

import math
from pathlib import Path

from yoloslim.runtime.ov_core import openvino_core

__all__ = ["onnx_static_imgsz", "onnx_stats", "openvino_static_imgsz", "openvino_stats"]

_FLOAT_TYPES = (1, 10, 11, 16)  # FLOAT, FLOAT16, DOUBLE, BFLOAT16
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
_CONVS = ("Conv", "ConvInteger", "QLinearConv")
_FLOAT_OPS = ("Conv", "MatMul", "Gemm")


def _onnx_params(graph) -> int:
    """Float initializers that are not Q/DQ scales, plus the integer tensors that a
    DequantizeLinear or an integer conv/matmul reads as its data or weight input."""
    scale_or_zp, int_weights = set(), set()
    for node in graph.node:
        if node.op_type in _QDQ:
            scale_or_zp.update(node.input[1:])
            if node.op_type == "DequantizeLinear":
                int_weights.add(node.input[0])
        elif node.op_type in _WEIGHT_INPUT and node.op_type not in _FLOAT_OPS:
            int_weights.add(node.input[_WEIGHT_INPUT[node.op_type]])
    return sum(
        math.prod(init.dims)
        for init in graph.initializer
        if init.name not in scale_or_zp
        and (init.data_type in _FLOAT_TYPES or init.name in int_weights)
    )


def onnx_stats(path: str | Path, imgsz: int) -> dict:
    """``{"params", "gmacs", "gflops"}`` of an ONNX model (float or quantized) at batch 1 and
    ``imgsz``."""
    import onnx
    from onnx import shape_inference

    model = onnx.load(str(path))
    inits = {i.name: list(i.dims) for i in model.graph.initializer}
    params = _onnx_params(model.graph)
    # a weight behind DequantizeLinear (QDQ) has the shape of the initializer it dequantizes
    producers = {o: n for n in model.graph.node for o in n.output}

    def weight_shape(name: str) -> list[int] | None:
        for _ in range(4):  # DequantizeLinear, possibly after a QuantizeLinear of a float weight
            if name in inits:
                return inits[name]
            node = producers.get(name)
            if node is None or node.op_type not in (*_QDQ, "Identity", "Cast"):
                return None
            name = node.input[0]
        return None

    graph_in = model.graph.input[0]
    for d, v in zip(graph_in.type.tensor_type.shape.dim, (1, 3, imgsz, imgsz), strict=False):
        d.ClearField("dim_param")
        d.dim_value = v
    inferred = shape_inference.infer_shapes(model)
    shapes = {
        vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim]
        for vi in list(inferred.graph.value_info) + list(inferred.graph.output)
    }
    macs = 0
    for node in inferred.graph.node:
        idx = _WEIGHT_INPUT.get(node.op_type)
        if idx is None or len(node.input) <= idx:
            continue
        w = weight_shape(node.input[idx])
        out = shapes.get(node.output[0])
        if not w or not out or not all(out):
            continue
        if node.op_type in _CONVS:
            macs += math.prod(out) * math.prod(w[1:])
        else:
            macs += math.prod(out) * w[0]
    return {"params": int(params), "gmacs": macs / 1e9, "gflops": 2 * macs / 1e9}


def onnx_static_imgsz(path: str | Path) -> int | None:
    """The fixed input height of an ONNX graph (None when its spatial axes are dynamic)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    dims = graph.input[0].type.tensor_type.shape.dim
    return dims[2].dim_value if len(dims) == 4 and dims[2].HasField("dim_value") else None


def openvino_static_imgsz(path: str | Path) -> int | None:
    """The fixed input height of an OpenVINO IR (None when its spatial axes are dynamic)."""
    shape = openvino_core().read_model(str(path)).inputs[0].get_partial_shape()
    return shape[2].get_length() if len(shape) == 4 and shape[2].is_static else None


def _is_weight_type(et) -> bool:
    """Float constants, and the low-bit integer weights of a quantized IR (not shape tensors)."""
    return et.is_real() or et.get_type_name() in ("i8", "u8", "i4", "u4")


def openvino_stats(path: str | Path, imgsz: int) -> dict:
    """``{"params", "gmacs", "gflops"}`` of an OpenVINO IR at batch 1 and ``imgsz``."""
    model = openvino_core().read_model(str(path))
    if model.inputs[0].get_partial_shape().is_dynamic:
        model.reshape([1, 3, imgsz, imgsz])
    params, macs = 0, 0
    for op in model.get_ordered_ops():
        t = op.get_type_name()
        if t == "Constant" and _is_weight_type(op.get_output_element_type(0)):
            params += (
                math.prod(op.get_output_shape(0)) if op.get_output_partial_shape(0).is_static else 0
            )
        elif t in ("Convolution", "GroupConvolution"):
            w = list(op.input_value(1).get_partial_shape().to_shape())
            out = list(op.get_output_shape(0))
            per_out = math.prod(w[2:]) if t == "GroupConvolution" else math.prod(w[1:])
            macs += math.prod(out) * per_out
    return {"params": int(params), "gmacs": macs / 1e9, "gflops": 2 * macs / 1e9}
