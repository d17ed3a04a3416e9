"""ONNX Runtime backend: QDQ static quantization (minmax / entropy / percentile) or dynamic.

Static: activations asymmetric uint8, weights symmetric int8 per output channel (U8S8,
what ONNX Runtime's x86 kernels are built for); the CPU provider fuses each
``DequantizeLinear -> Conv -> QuantizeLinear`` into a QLinearConv. Returning a conv to
float after calibration is a graph edit (:meth:`OnnxRuntimeQuant.revert`): its input
is taken from before the QuantizeLinear and its weight/bias from the float model.

Dynamic: ``quantize_dynamic`` turns convs into ConvInteger with ranges computed per
call; no calibration, usually slower than static INT8, measured and
reported as it is.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np

from yoloslim.compress.quant_config import QuantConfig
from yoloslim.compress.quant_scope import GraphView, Scope, graph_from_onnx
from yoloslim.errors import ExportError
from yoloslim.extras import require
from yoloslim.fileio import STAGING_PREFIX, staged
from yoloslim.sysinfo import cpu_flags

__all__ = ["OnnxRuntimeQuant", "has_vnni"]

log = logging.getLogger(__name__)


class _DropHint(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


@contextlib.contextmanager
def _no_preprocess_hint():
    """Drop ONNX Runtime's root-logger hint to run its pre-processing, without letting its
    ``logging.warning`` call configure the root logger for the rest of the process."""
    root = logging.getLogger()
    placeholder = logging.NullHandler() if not root.handlers else None
    hint = _DropHint()
    if placeholder:
        root.addHandler(placeholder)  # logging.warning() calls basicConfig() on a bare root
    root.addFilter(hint)
    try:
        yield
    finally:
        root.removeFilter(hint)
        if placeholder:
            root.removeHandler(placeholder)


def has_vnni() -> bool:
    """True when this CPU has a VNNI int8 dot product (AVX512-VNNI, AVX-VNNI or AMX)."""
    return bool(cpu_flags() & {"avx512_vnni", "avx_vnni", "amx_int8"})


def _entropy_ranges(
    src: Path, images: list[np.ndarray], input_name: str, cache: Path, bins: int
) -> None:
    """The activation ranges of KL-divergence (entropy) calibration, written to ``cache`` as
    ONNX Runtime's calibration cache: ``bins`` histogram bins (2048 by default) searched for the 128-bin
    quantization that loses least (TensorRT's entropy calibration). quantize_static passes
    no bin counts, and its entropy calibrator's defaults (128 and 128) leave one candidate
    range, the min-max one: method='entropy' made the minmax model (audit42 quant F1)."""
    import inspect

    from onnxruntime.quantization import CalibrationMethod, quantize_static
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    if "calibration_cache_path" not in inspect.signature(quantize_static).parameters:
        import onnxruntime

        raise ExportError(
            f"method='entropy' (--method entropy) needs onnxruntime >= 1.32 (this is "
            f"{onnxruntime.__version__}): upgrade it, or use minmax or percentile"
        )
    calibrator = create_calibrator(
        src,
        augmented_model_path=str(cache.with_name("augmented.onnx")),
        calibrate_method=CalibrationMethod.Entropy,
        extra_options={"num_bins": bins, "num_quantized_bins": 128, "symmetric": False},
    )
    with contextlib.redirect_stdout(io.StringIO()):
        calibrator.collect_data(_Reader(input_name, images))
        save_tensors_data(calibrator.compute_data(), cache)


class _Reader:
    """ONNX Runtime CalibrationDataReader over a list of images."""

    def __init__(self, input_name: str, images: list[np.ndarray]) -> None:
        self.input_name, self.images, self.i = input_name, images, 0

    def get_next(self):
        if self.i >= len(self.images):
            return None
        self.i += 1
        return {self.input_name: self.images[self.i - 1]}

    def rewind(self) -> None:
        self.i = 0


class OnnxRuntimeQuant:
    """Quantize an exported float ONNX for ONNX Runtime's CPU provider."""

    name = "onnxruntime"

    def __init__(self, float_onnx: Path, out: Path, config: QuantConfig) -> None:
        onnx = require("onnx", "onnx", ExportError)
        require("onnxruntime", "onnx", ExportError)
        self.out, self.config = Path(out), config
        self.float_path = Path(float_onnx)
        self.float_model = onnx.load(str(float_onnx))
        self.input_name = self.float_model.graph.input[0].name
        adv = config.advanced
        self.reduce_range = (not has_vnni()) if adv.reduce_range is None else adv.reduce_range
        self._scope_nodes: list[str] = []

    def _path(self, role: str) -> Path:
        path = self.out / role / f"model_{role}.onnx"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def save(self, model, role: str = "int8") -> Path:
        return self.write(model, self._path(role), role)

    def save_int8(self, model, role: str = "int8", *, meta: dict[str, str] | None = None) -> Path:
        return self.write(model, self._path(role), role, meta=meta)

    def write(
        self, model, path: Path, role: str = "int8", *, meta: dict[str, str] | None = None
    ) -> Path:
        """Save ``model`` at ``path`` (atomically) with the float model's metadata, ``meta``'s
        keys replacing its."""
        import onnx

        _copy_metadata(self.float_model, model, role, meta or {})
        with staged(path) as tmp:
            onnx.save(model, str(tmp))
        return path

    def float_artifact(self) -> Path:
        return self.save(copy.deepcopy(self.float_model), "float")

    def float_variant(self, kind: str):
        if kind != "fp16":
            raise ValueError(kind)  # QuantConfig rejects bf16 for this backend
        from onnxruntime.transformers.float16 import convert_float_to_float16

        model = convert_float_to_float16(copy.deepcopy(self.float_model), keep_io_types=True)
        return self.save(model, "fp16")

    def view(self) -> GraphView:
        return graph_from_onnx(self.float_model)

    # -- quantization ----------------------------------------------------------------------
    def quantize(self, images: list[np.ndarray], scope: Scope):
        self._scope_nodes = list(scope.nodes)
        return self._quantize(images, scope.nodes)

    def _quantize(self, images: list[np.ndarray], excluded: list[str]):
        import onnx
        from onnxruntime.quantization import (
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_dynamic,
            quantize_static,
        )

        cfg, adv = self.config, self.config.advanced
        # named as staged() names its folders, so that a killed run's is cleaned up later
        with tempfile.TemporaryDirectory(
            dir=self.out, prefix=STAGING_PREFIX.format("quantize")
        ) as tmp:
            dst = Path(tmp) / "q.onnx"
            # quantized from a copy in the private folder: ONNX Runtime writes its
            # shape-inferred NAME-inferred.onnx beside its input, which was the user's file
            # (a read-only folder failed naming that file; a stop left it there)
            src = Path(tmp) / "float.onnx"
            onnx.save(self.float_model, str(src))
            if cfg.mode == "dynamic":
                # ConvInteger on the CPU provider takes uint8 weights only
                with _no_preprocess_hint():
                    quantize_dynamic(
                        src,
                        dst,
                        per_channel=adv.per_channel,
                        reduce_range=self.reduce_range,
                        weight_type=QuantType.QUInt8,
                        nodes_to_exclude=list(excluded),
                    )
            else:
                method = {
                    "minmax": CalibrationMethod.MinMax,
                    "entropy": CalibrationMethod.Entropy,
                    "percentile": CalibrationMethod.Percentile,
                }[cfg.method]
                extra = {"ActivationSymmetric": False, "WeightSymmetric": True}
                if cfg.method == "percentile":
                    extra["CalibPercentile"] = float(adv.percentile)
                ranges = {}
                if cfg.method == "entropy":  # its ranges computed here, handed over as a cache
                    cache = Path(tmp) / "ranges.json"
                    _entropy_ranges(src, images, self.input_name, cache, adv.entropy_bins)
                    ranges["calibration_cache_path"] = cache
                # the calibrator prints; ORT logs a hint to run its pre-processing (our ONNX
                # is already shape-inferred and simplified by the export)
                with contextlib.redirect_stdout(io.StringIO()), _no_preprocess_hint():
                    quantize_static(
                        src,
                        dst,
                        None if ranges else _Reader(self.input_name, images),
                        **ranges,
                        quant_format=QuantFormat.QDQ,
                        per_channel=adv.per_channel,
                        reduce_range=self.reduce_range,
                        activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8,
                        nodes_to_exclude=list(excluded),
                        calibrate_method=method,
                        extra_options=extra,
                    )
            model = onnx.load(str(dst))
            _float_inputs(model, set(excluded))
            for p in Path(tmp).iterdir():  # calibration leaves augmented models beside
                if p.is_dir():
                    shutil.rmtree(p, ignore_errors=True)
        return model

    def revert(self, qmodel, conv_nodes: list[str]):
        """A copy of the QDQ ``qmodel`` with the convs ``conv_nodes`` computing in float."""
        if self.config.mode == "dynamic":
            return self._requantize_dynamic(conv_nodes)
        model = copy.deepcopy(qmodel)
        g = model.graph
        producer = {o: n for n in g.node for o in n.output}
        float_inits = {i.name: i for i in self.float_model.graph.initializer}
        # the weight and bias by the float conv's own inputs: names do not carry over (the
        # quantizer names a bias shared by several convs bias0, bias1, ... apart)
        float_convs = {n.name: n for n in self.float_model.graph.node if n.op_type == "Conv"}
        have = {i.name for i in g.initializer}
        wanted = set(conv_nodes)
        added: list = []
        for node in g.node:
            if node.name not in wanted or node.op_type != "Conv":
                continue
            node.input[0] = _float_source(node.input[0], producer, added)
            for k, orig in enumerate(float_convs[node.name].input[1:], 1):
                if orig not in float_inits:
                    continue
                # a new name: the quantizer may have given the DequantizeLinear's output the
                # original one (it does for biases), and a name is defined once
                restored = f"{orig}_float"
                if restored not in have:
                    init = copy.deepcopy(float_inits[orig])
                    init.name = restored
                    g.initializer.append(init)
                    have.add(restored)
                node.input[k] = restored
        g.node.extend(added)
        _topological(g)
        _prune_dangling(model)
        producer = {o: n for n in g.node for o in n.output}
        for node in g.node:
            if node.name in wanted and _quantized_input(node, producer):
                raise ExportError(
                    f"{node.name}: its input stays quantized after the float fallback (a "
                    "QuantizeLinear behind a layer the fallback does not rebuild)"
                )
        return model

    def _requantize_dynamic(self, conv_nodes: list[str]):
        # dynamic quantization needs no calibration: quantize again with more nodes excluded
        return self._quantize([], [*self._scope_nodes, *conv_nodes])

    def runner(self, model):
        from yoloslim.runtime.backends import ort_cpu_session

        sess = ort_cpu_session(model.SerializeToString())
        return lambda x: sess.run(None, {self.input_name: x})[0].astype(np.float32)


# ops that pass quantized values on unchanged: a conv behind one of them still reads values
# on the int8 grid when a QuantizeLinear -> DequantizeLinear pair sits in front of it
_PASS_THROUGH = frozenset(
    {"Concat", "MaxPool", "Resize", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Slice",
     "Split", "Flatten", "Identity", "Pad"}
)  # fmt: skip


def _float_source(name: str, producer: dict, added: list) -> str:
    """The tensor ``name`` without the ``QuantizeLinear -> DequantizeLinear`` pairs between
    it and the float values, also behind ops that pass values on unchanged (each copied onto
    its float inputs for this consumer, appended to ``added``: the quantized one may feed
    others)."""
    node = producer.get(name)
    if node is None:
        return name
    if node.op_type == "DequantizeLinear":
        q = producer.get(node.input[0])
        if q is not None and q.op_type == "QuantizeLinear":
            return _float_source(q.input[0], producer, added)
        return name
    if node.op_type not in _PASS_THROUGH:
        return name
    inputs = list(node.input)
    for i in range(len(inputs)) if node.op_type == "Concat" else (0,):
        inputs[i] = _float_source(inputs[i], producer, added)
    if inputs == list(node.input):
        return name
    if f"{name}_float" not in producer:
        twin = copy.deepcopy(node)
        twin.name = f"{node.name}_float"
        del twin.input[:]
        twin.input.extend(inputs)
        del twin.output[:]
        twin.output.extend(f"{o}_float" for o in node.output)
        producer.update({o: twin for o in twin.output})
        added.append(twin)
    return f"{name}_float"


def _quantized_input(conv, producer: dict) -> bool:
    """Whether a ``QuantizeLinear -> DequantizeLinear`` pair reaches ``conv``'s activation,
    directly or through ops that pass values on unchanged (:data:`_PASS_THROUGH`)."""
    todo, seen = [conv.input[0]], set()
    while todo:
        name = todo.pop()
        node = producer.get(name)
        if node is None or name in seen:
            continue
        seen.add(name)
        if node.op_type == "DequantizeLinear":
            return True
        if node.op_type in _PASS_THROUGH:
            todo.extend(node.input[:1] if node.op_type != "Concat" else node.input)
    return False


def _topological(graph) -> None:
    """Order ``graph``'s nodes so that each comes after the producers of its inputs (nodes
    appended by an edit), keeping the order they had otherwise."""
    nodes = list(graph.node)
    made = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    ordered, pending = [], nodes
    while pending:
        rest = []
        for n in pending:
            if all(i in made for i in n.input):
                ordered.append(n)
                made.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):
            raise ExportError("the quantized graph has a cycle or an input nothing makes")
        pending = rest
    del graph.node[:]
    graph.node.extend(ordered)


def _float_inputs(model, nodes: set[str]) -> None:
    """Feed ``nodes`` their float tensors: bypass ``QuantizeLinear -> DequantizeLinear`` pairs.

    ONNX Runtime's QDQ quantizer also quantizes the *outputs* of quantized convs, so the
    head's DFL logits would reach the excluded decode through an 8-bit round trip; the
    decode must see them in float.
    """
    producer = {o: n for n in model.graph.node for o in n.output}
    added: list = []
    for node in model.graph.node:
        if node.name not in nodes:
            continue
        for k, name in enumerate(node.input):
            node.input[k] = _float_source(name, producer, added)
    model.graph.node.extend(added)
    _topological(model.graph)
    _prune_dangling(model)


def _prune_dangling(model) -> None:
    """Drop nodes (and initializers) nothing reads any more."""
    g = model.graph
    outputs = {o.name for o in g.output}
    while True:
        used = {i for n in g.node for i in n.input} | outputs
        dead = [n for n in g.node if not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            g.node.remove(n)
    used = {i for n in g.node for i in n.input}
    for init in [i for i in g.initializer if i.name not in used]:
        g.initializer.remove(init)


def _copy_metadata(src, dst, role: str, extra: dict[str, str]) -> None:
    meta = {p.key: p.value for p in src.metadata_props}
    meta["quantization"] = role
    meta.update(extra)
    del dst.metadata_props[:]
    for k, v in meta.items():
        e = dst.metadata_props.add()
        e.key, e.value = k, v
