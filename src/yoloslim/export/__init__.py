"""Export to deployment formats, each artifact verified against PyTorch.

One module per backend behind one interface (:class:`Exporter`: ``export`` and
``verify``), registered here explicitly:

=============  ==============================================  =========================
format         artifact                                        verified in
=============  ==============================================  =========================
onnx           ``model.onnx`` (+ ``model_e2e.onnx`` with nms)   ONNX Runtime (+ OpenVINO)
openvino       ``model[_fp16]_openvino/model.xml`` + ``.bin``  OpenVINO CPU plugin
torchscript    ``model.torchscript``                           torch.jit
coreml         ``model.mlpackage`` (extra ``[coreml]``)        coremltools (spec on Linux)
engine         ``model.engine`` (tensorrt + CUDA)              TensorRT
triton         ``triton/model/{1/model.onnx,config.pbtxt}``    config parsed + ONNX Runtime
=============  ==============================================  =========================
"""

from __future__ import annotations

from yoloslim.export.api import export
from yoloslim.export.common import ExportContext
from yoloslim.export.coreml import coreml_path, export_coreml, verify_coreml
from yoloslim.export.onnx import export_onnx, onnx_path
from yoloslim.export.openvino import export_openvino, openvino_path
from yoloslim.export.registry import EXPORTERS, Exporter, missing_packages, register_exporter
from yoloslim.export.tensorrt import engine_path, export_engine, tensorrt_available, verify_engine
from yoloslim.export.torchscript import export_torchscript, torchscript_path
from yoloslim.export.triton import export_triton, triton_path, verify_triton
from yoloslim.export.verify import verify_runtime

__all__ = ["EXPORTERS", "ExportContext", "Exporter", "export", "register_exporter"]


def _verify_half(path, ctx):
    return verify_runtime(path, ctx, half=ctx.half)


_ONNX = ("onnx", "onnxscript", "onnxslim", "onnxruntime")
register_exporter(
    Exporter(
        "onnx",
        export_onnx,
        verify_runtime,
        unavailable=missing_packages(*_ONNX, extra="onnx"),
        target=onnx_path,
    )
)
register_exporter(
    Exporter(
        "openvino",
        export_openvino,
        _verify_half,
        honours_half=True,
        unavailable=missing_packages(*_ONNX[:3], "openvino", extra="openvino"),
        target=openvino_path,
    )
)
register_exporter(
    Exporter("torchscript", export_torchscript, verify_runtime, target=torchscript_path)
)
register_exporter(
    Exporter(
        "coreml",
        export_coreml,
        verify_coreml,
        honours_half=True,
        static_batch=True,
        unavailable=missing_packages("coremltools", extra="coreml"),
        target=coreml_path,
    )
)
register_exporter(
    Exporter(
        "engine",
        export_engine,
        verify_engine,
        honours_half=True,
        unavailable=tensorrt_available,
        target=engine_path,
    )
)
register_exporter(
    Exporter(
        "triton",
        export_triton,
        verify_triton,
        unavailable=missing_packages(*_ONNX, extra="onnx"),
        target=triton_path,
    )
)
