"""OpenVINO backend: NNCF post-training quantization of the IR, float fallback by graph edit.

NNCF inserts FakeQuantize on each quantized op's activation input and weight; the
CPU plugin then runs that op in INT8 and folds neighbouring scales into it. Returning
a conv to float after calibration needs no new calibration: its input is rewired
past the activation FakeQuantize and its weight replaced by the float weight
(:meth:`OpenVINOQuant.revert`). What the accuracy-aware loop measures is therefore
exactly the artifact it ships.
"""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

import numpy as np

from yoloslim.compress.quant_config import QuantConfig
from yoloslim.compress.quant_scope import GraphView, Scope, graph_from_openvino
from yoloslim.errors import ExportError
from yoloslim.extras import require
from yoloslim.progress import quieted
from yoloslim.runtime.ov_core import no_telemetry, openvino_core, save_ir

__all__ = ["OpenVINOQuant"]

log = logging.getLogger(__name__)


def _ov():
    no_telemetry()
    return require("openvino", "openvino", ExportError)


class OpenVINOQuant:
    """Quantize an exported float ONNX for OpenVINO's CPU plugin with NNCF.

    Args:
        float_onnx: the float model (yoloslim ONNX with metadata).
        out: output folder.
        config: the quantize settings.
    """

    name = "openvino"

    def __init__(self, float_onnx: Path, out: Path, config: QuantConfig) -> None:
        self.ov = _ov()
        self.core = openvino_core()
        self.out, self.config = Path(out), config
        self.float_model = self._convert(float_onnx)

    def _convert(self, onnx_path: Path):
        from yoloslim.export.common import onnx_metadata

        meta = onnx_metadata(onnx_path)
        model = self.ov.convert_model(str(onnx_path))
        for k, v in meta.items():
            model.set_rt_info(v, ["yoloslim", k])
        return model

    # -- artifacts -------------------------------------------------------------------------
    def save(self, model, role: str, *, fp16: bool = False) -> Path:
        """Write ``out/{role}_openvino/model.xml`` (+ .bin) and return the .xml."""
        path = self.out / f"{role}_openvino" / "model.xml"
        model.set_rt_info(role, ["yoloslim", "quantization"])
        return save_ir(self.ov, model, path, fp16=fp16)

    def float_artifact(self) -> Path:
        return self.save(self.float_model.clone(), "float")

    def float_variant(self, kind: str) -> Path:
        """fp16: FP16 weights. bf16: an IR whose rt_info asks the CPU plugin for bf16 compute
        (``runtime_options/INFERENCE_PRECISION_HINT``); without AVX512-BF16/AMX the plugin
        stays f32, which the report's ``precision`` shows."""
        model = self.float_model.clone()
        if kind == "bf16":
            model.set_rt_info("bf16", ["runtime_options", "INFERENCE_PRECISION_HINT"])
        return self.save(model, kind, fp16=(kind == "fp16"))

    def view(self) -> GraphView:
        return graph_from_openvino(self.float_model)

    # -- quantization ----------------------------------------------------------------------
    def quantize(self, images: list[np.ndarray], scope: Scope):
        no_telemetry()
        import nncf
        from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
        from nncf.quantization.range_estimator import (
            AggregatorType,
            RangeEstimatorParameters,
            StatisticsCollectorParameters,
            StatisticsType,
        )

        adv = self.config.advanced
        params = AdvancedQuantizationParameters()
        if self.config.method == "percentile":
            # NNCF's MEAN_QUANTILE set, at our percentile: its fixed outlier share (1e-4, the
            # 99.99th) would leave advanced.percentile without effect
            def quantile() -> StatisticsCollectorParameters:
                return StatisticsCollectorParameters(
                    statistics_type=StatisticsType.QUANTILE,
                    aggregator_type=AggregatorType.MEAN,
                    quantile_outlier_prob=1 - adv.percentile / 100,
                )

            params.activations_range_estimator_params = RangeEstimatorParameters(
                min=quantile(), max=quantile()
            )
        preset = nncf.QuantizationPreset(adv.preset)
        # NNCF draws its own progress bars and logs each step at INFO
        with contextlib.redirect_stdout(io.StringIO()), quieted("nncf", logging.WARNING):
            return nncf.quantize(
                self.float_model.clone(),
                nncf.Dataset(images),
                preset=preset,
                subset_size=len(images),
                ignored_scope=nncf.IgnoredScope(names=list(scope.nodes), validate=False),
                advanced_parameters=params,
            )

    def revert(self, qmodel, conv_nodes: list[str]):
        """A copy of ``qmodel`` with the convs ``conv_nodes`` computing in float again."""
        ov = self.ov
        model = qmodel.clone()
        weights = {
            op.get_friendly_name(): op.input_value(1)
            for op in self.float_model.get_ordered_ops()
            if op.get_friendly_name() in set(conv_nodes)
        }
        by_name = {op.get_friendly_name(): op for op in model.get_ordered_ops()}
        for name in conv_nodes:
            conv = by_name.get(name)
            if conv is None:
                continue
            src = conv.input_value(0)
            if src.get_node().get_type_name() == "FakeQuantize":
                conv.input(0).replace_source_output(src.get_node().input_value(0))
            w = weights[name].get_node()
            data = _constant_data(w)
            if data is not None:
                const = ov.opset13.constant(data.astype(np.float32))
                conv.input(1).replace_source_output(const.output(0))
        model.validate_nodes_and_infer_types()
        return model

    def runner(self, model):
        """A callable ``x (1,3,S,S) float32 -> preds`` for a model in memory."""
        compiled = self.core.compile_model(model, "CPU")
        request = compiled.create_infer_request()
        return lambda x: np.array(request.infer({0: x})[compiled.output(0)], dtype=np.float32)

    def save_int8(self, model, role: str = "int8") -> Path:
        return self.write(model, self.out / f"{role}_openvino" / "model.xml", role)

    def write(self, model, path: Path, role: str = "int8") -> Path:
        """Save ``model`` at ``path`` with the float model's yoloslim metadata."""
        from yoloslim.export.common import openvino_metadata

        for k, value in openvino_metadata(self.float_model).items():  # every key export wrote
            model.set_rt_info(value, ["yoloslim", k])
        model.set_rt_info(role, ["yoloslim", "quantization"])
        return save_ir(self.ov, model, path)


def _constant_data(node) -> np.ndarray | None:
    """The float data behind a (possibly Convert-wrapped) weight Constant."""
    for _ in range(3):
        if node.get_type_name() == "Constant":
            return np.asarray(node.get_data())
        if node.get_type_name() != "Convert":
            return None
        node = node.input_value(0).get_node()
    return None
