"""Parameters and FLOPs counted from exported graphs (ONNX, OpenVINO IR).

Counted ops: convolutions and matrix multiplications (``MACs = output elements x
input channels per group x kernel area``); element-wise ops are ignored, as torch's
flop counter ignores them too, so torch and graph counts compare.
"""

from __future__ import annotations

import math
from pathlib import Path

from yoloslim.runtime.ov_core import openvino_core

__all__ = ["onnx_stats", "openvino_stats"]


def onnx_stats(path: str | Path, imgsz: int) -> dict:
    """``{"params", "gmacs", "gflops"}`` of an ONNX model at batch 1 and ``imgsz``."""
    import onnx
    from onnx import numpy_helper, shape_inference

    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    params = sum(
        math.prod(i.dims) for i in model.graph.initializer if i.data_type in (1, 10, 11, 16)
    )
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
        if node.op_type == "Conv" and node.input[1] in inits:
            w = numpy_helper.to_array(inits[node.input[1]])
            out = shapes.get(node.output[0])
            if out and all(out):
                macs += math.prod(out) * math.prod(w.shape[1:])
        elif node.op_type in ("MatMul", "Gemm") and node.input[1] in inits:
            w = inits[node.input[1]].dims
            out = shapes.get(node.output[0])
            if out and all(out):
                macs += math.prod(out) * w[0]
    return {"params": int(params), "gmacs": macs / 1e9, "gflops": 2 * macs / 1e9}


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
