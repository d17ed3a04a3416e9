"""INT8 quantization: artifacts load and decode alike, the ignored scope stays float,
accuracy-aware mode stops within budget, calibration takes the requested images, bad input fails clearly."""

from __future__ import annotations

import json
import os
import platform
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import yaml

import yoloslim as ys
from yoloslim.compress.quant_accuracy import accuracy_aware
from yoloslim.compress.quant_config import AdvancedQuantConfig, QuantConfig
from yoloslim.compress.quant_scope import graph_from_onnx, resolve_scope
from yoloslim.errors import ConfigError, DataError, ExportError, ModelError
from yoloslim.models.testing import randomize_bn
from yoloslim.runtime.backends import load_backend
from yoloslim.runtime.ov_core import openvino_core

# entropy over 512 bins, not 2048: a test's entropy calibration took 2 minutes
FAST = AdvancedQuantConfig(
    latency=False, perf_counters=False, sensitivity_images=2, entropy_bins=512
)


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[Path, Path]:
    """(data.yaml with 12 train / 4 val images, a damo-nano ONNX exported at 64 px)."""
    root = tmp_path_factory.mktemp("quant")
    data = ys.synthesize(root / "synth", images=16, imgsz=96, classes=2, seed=3, val_fraction=0.25)
    torch.manual_seed(0)
    # BN statistics as training leaves them: the folded convs get biases (a fresh model's are
    # zeros, which the exporter drops, and a bias is what revert() once got wrong)
    model = randomize_bn(ys.build_model("damo-nano", nc=2, names=["a", "b"]), seed=0)
    res = ys.export(model, root / "export", formats=["onnx"], imgsz=64, verify=False)
    return data, Path(res.artifacts["onnx"])


def _decode_nodes(onnx_path: Path) -> list[str]:
    return resolve_scope(graph_from_onnx(onnx.load(str(onnx_path))), ["decode"]).nodes


# -- configuration and data errors ----------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"backend": "tflite"}, "backend='tflite'"),
        ({"method": "kl"}, "method='kl'"),
        ({"max_drop": -0.1}, "max_drop=-0.1"),
        ({"calib": 0}, "calib=0"),
        ({"method": "entropy"}, "entropy"),  # NNCF has no entropy calibrator
        ({"mode": "dynamic"}, "mode='dynamic'"),  # OpenVINO: no dynamic conv quantization
        # dynamic calibrates on nothing: a method or image count was silently unused
        ({"mode": "dynamic", "backend": "onnxruntime", "method": "entropy"}, "method='entropy'"),
        ({"mode": "dynamic", "backend": "onnxruntime", "calib": 50}, "calib=50: mode='dynamic'"),
        ({"float_variants": ["int4"]}, "int4"),
        ({"ignored_scope": ["head[("]}, "head[("),
        ({"imgsz": 100}, "imgsz=100"),
        # YAML strings where true/false or a number goes: the truthy 'false' turned them on
        ({"advanced": {"per_channel": "false"}}, "advanced.per_channel='false' must be true or"),
        ({"advanced": {"latency": "no"}}, "advanced.latency='no' must be true or false"),
        ({"advanced": {"reduce_range": 1}}, "advanced.reduce_range=1 must be true or false"),
        ({"advanced": {"sensitivity_images": "32"}}, "sensitivity_images='32' must be an integer"),
        ({"advanced": {"max_steps": 2.5}}, "advanced.max_steps=2.5 must be an integer"),
        ({"advanced": {"percentile": "99.9"}}, "advanced.percentile='99.9' must be a number"),
        ({"max_drop": "0.5"}, "max_drop='0.5' must be a number"),
        ({"advanced": 3}, "advanced: expected a mapping, got int"),
        ({"advanced": {"seed": -3}}, "advanced.seed=-3: must be in [0, 2**32)"),
        ({"max_drop": float("inf")}, "max_drop=inf: must be a finite number"),  # JSON's Infinity
        ({"ignored_scope": [""]}, "pattern '' is empty, and would match every layer"),
        ({"ignored_scope": None}, "ignored_scope=None: must be a list of strings"),
        ({"ignored_scope": [1, 2]}, "ignored_scope=[1, 2]: must be a list of strings"),
        ({"float_variants": None}, "float_variants=None: must be a list of strings"),
        # NNCF's presets: ONNX Runtime recorded one it never applied
        (
            {"backend": "onnxruntime", "advanced": {"preset": "performance"}},
            "advanced.preset='performance' is NNCF's",
        ),
    ],
)
def test_bad_config_raises(kwargs, needle):
    with pytest.raises(ConfigError, match=None) as e:
        QuantConfig(**kwargs)
    assert needle in str(e.value)


@pytest.mark.parametrize(
    ("advanced", "needle"),
    [
        ({"per_channel": False}, "advanced.per_channel=False is ONNX Runtime's"),
        ({"reduce_range": True}, "advanced.reduce_range=True is ONNX Runtime's"),
    ],
)
def test_onnxruntime_knobs_with_openvino_are_refused_when_it_runs(advanced, needle, tmp_path):
    # audit30 configs M1: recorded, never applied; review2 M1: refused when a quantization
    # runs, not when read, so a compress run that began with one still loads its recipe
    cfg = QuantConfig(advanced=advanced)  # reads
    QuantConfig(backend="onnxruntime", advanced=advanced).refuse_unused()  # its own: fine
    with pytest.raises(ConfigError, match=None) as e:
        ys.quantize(tmp_path / "none.onnx", tmp_path / "d.yaml", config=cfg, out=tmp_path / "q")
    assert needle in str(e.value) and not (tmp_path / "q").exists()


def test_numpy_numbers_are_taken_as_pythons():
    cfg = QuantConfig(max_drop=np.float32(0.5), calib=np.int64(5))
    assert cfg.max_drop == 0.5 and type(cfg.max_drop) is float and type(cfg.calib) is int
    assert json.dumps(cfg.to_dict())


def test_from_dict_rejects_unknown_keys_and_round_trips():
    with pytest.raises(ConfigError, match="max_dorp"):
        QuantConfig.from_dict({"max_dorp": 0.5})
    with pytest.raises(ConfigError, match="presett"):
        QuantConfig.from_dict({"advanced": {"presett": "mixed"}})
    cfg = QuantConfig.from_dict(
        {
            "backend": "openvino",
            "method": "percentile",
            "ignored_scope": ["decode", "stem"],
            "advanced": {"preset": "performance"},
        }
    )
    assert cfg.ignored_scope == ("decode", "stem") and cfg.advanced.preset == "performance"
    assert QuantConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert QuantConfig(ignored_scope="decode").ignored_scope == ("decode",)  # one pattern


def test_empty_calibration_set_names_file_and_split(setup, tmp_path):
    data, onnx_path = setup
    cfg = yaml.safe_load(data.read_text())
    (tmp_path / "empty").mkdir()
    cfg.update(path=str(data.parent), train=str(tmp_path / "empty"))
    bad = tmp_path / "empty.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    with pytest.raises(DataError) as e:
        ys.quantize(onnx_path, bad, config=QuantConfig(advanced=FAST), out=tmp_path / "q")
    assert "empty.yaml" in str(e.value) and "train" in str(e.value)
    # found before the export: an earlier run's export/ stays as it was, a new folder is not
    # made (the export replaced the one and was left in the other)
    model = ys.build_model("damo-nano", nc=2, names=["a", "b"])
    cfg = QuantConfig(imgsz=64, advanced=FAST)
    earlier = tmp_path / "earlier" / "export"
    earlier.mkdir(parents=True)
    (earlier / "model.onnx").write_bytes(onnx_path.read_bytes())
    for out in (tmp_path / "earlier", tmp_path / "new"):
        with pytest.raises(DataError, match="train"):
            ys.quantize(model, bad, config=cfg, out=out)
    assert (earlier / "model.onnx").read_bytes() == onnx_path.read_bytes()
    assert sorted(p.name for p in earlier.iterdir()) == ["model.onnx"]
    assert not (tmp_path / "new").exists()


def test_unmatched_scope_pattern_raises(setup, tmp_path):
    data, onnx_path = setup
    cfg = QuantConfig(
        backend="onnxruntime", ignored_scope=["decode", "no_such_layer"], advanced=FAST
    )
    with pytest.raises(ConfigError, match="no_such_layer"):
        ys.quantize(onnx_path, data, config=cfg, out=tmp_path / "q")
    assert not (tmp_path / "q").exists()  # nothing left of a refused call
    # a model exported for it first: its ONNX (6 MB for damo-nano) was left in q2/export/
    model = ys.build_model("damo-nano", nc=2, names=["a", "b"])
    cfg = QuantConfig(
        backend="onnxruntime", ignored_scope=["no_such_layer"], imgsz=64, advanced=FAST
    )
    with pytest.raises(ConfigError, match="no_such_layer"):
        ys.quantize(model, data, config=cfg, out=tmp_path / "q2")
    assert not (tmp_path / "q2").exists()


def test_the_command_lines_none_in_a_config_says_how_to_quantize_everything():
    # --ignore none is a word of the command line; a recipe's ignored_scope: [none] is a regex
    from yoloslim.compress.quant_scope import GraphView

    view = GraphView({"conv": "Conv"}, {"conv": []}, {"conv": "head.cls_preds.0"})
    with pytest.raises(ConfigError, match=r"'none' matches no node.*give ignored_scope: \[\]$"):
        resolve_scope(view, ["none"])
    with pytest.raises(ConfigError, match=r"'nothing' matches no node .*\]\)$"):
        resolve_scope(view, ["nothing"])


# -- OpenVINO (NNCF) ------------------------------------------------------------------------
def test_openvino_and_onnx_find_the_same_decode_not_the_head_convs_biases(setup, tmp_path):
    # OpenVINO splits a conv with a bias into NAME/WithoutBiases and an Add named NAME: those
    # Adds were listed under decode (27 nodes against ONNX's 21), as if head convs stayed float
    from yoloslim.compress.quant_openvino import OpenVINOQuant

    _, onnx_path = setup
    view = OpenVINOQuant(onnx_path, tmp_path / "ov", QuantConfig(calib=2)).view()
    ov_decode = resolve_scope(view, ["decode"]).nodes
    assert view.biases and not set(view.biases) & set(ov_decode)
    assert all(f"{b}/WithoutBiases" in view.types for b in view.biases)  # named after the conv
    assert len(ov_decode) == len(_decode_nodes(onnx_path))
    assert {view.types[n] for n in ov_decode} >= {"Softmax", "Sigmoid", "Concat"}


def test_openvino_int8_loads_decodes_keeps_decode_float(setup, tmp_path, monkeypatch):
    from yoloslim.compress import quant_openvino

    data, onnx_path = setup
    seen = []
    real = quant_openvino.OpenVINOQuant.quantize
    monkeypatch.setattr(
        quant_openvino.OpenVINOQuant,
        "quantize",
        lambda self, images, scope: seen.append(len(images)) or real(self, images, scope),
    )
    adv = AdvancedQuantConfig(latency=False, perf_counters=True)
    res = ys.quantize(onnx_path, data, config=QuantConfig(calib=5, advanced=adv), out=tmp_path)
    assert seen == [5] and res.report["calibration"]["images"] == 5  # 5 of the 12 train images
    assert Path(res.model).suffix == ".xml" and set(res.artifacts) == {"float", "int8"}
    x = torch.rand(1, 3, 64, 64)
    f, q = load_backend(res.artifacts["float"]), load_backend(res.model)
    yf, yq = f(x), q(x)
    assert yq.shape == yf.shape == (1, 84, 4 + 2) and q.names == ["a", "b"]
    assert q.precision.startswith("int8+") and not f.precision.startswith("int8")
    assert ys.describe(res.model)["precision"] == "int8+fp32"
    assert ys.describe(res.artifacts["float"])["precision"] == "fp32"
    # the INT8 model's history: the float model's, then this quantize step
    upstream = ys.describe(res.artifacts["float"])["history"]
    assert ys.describe(res.model)["history"] == [
        *upstream,
        {
            "stage": "quantize",
            "out": str(tmp_path.absolute()),
            "backend": "openvino",
            "mode": "static",
            "method": res.report["method"],
            "calib": 5,
            "float_layers": len(res.report["layers_in_float"]["scope"]),
        },
    ]
    assert yq[..., 4:].min() >= 0 and yq[..., 4:].max() <= 1
    # the ignored scope really stays float: no FakeQuantize feeds any decode node
    model = openvino_core().read_model(str(res.model))
    # the float model's metadata travels along, every key of it (a deployment reads these)
    meta = model.get_rt_info(["yoloslim"]).astype(dict)
    assert {"names", "imgsz", "preprocess", "input", "output", "quantization"} <= set(meta)
    # the weights key export's IRs carry (audit47 conc F4): int8 here, fp32 in the float IR
    float_meta = openvino_core().read_model(str(res.artifacts["float"])).get_rt_info(["yoloslim"])
    assert (meta["weights"], float_meta.astype(dict)["weights"]) == ("int8", "fp32")
    assert not [p.name for p in Path(tmp_path).rglob(".*")]  # no staging folder left
    decode = set(res.report["ignored_scope"]["nodes"])
    assert {"Softmax", "ReduceSum", "Sigmoid"} <= {
        op.get_type_name() for op in model.get_ordered_ops() if op.get_friendly_name() in decode
    }
    fq_fed = {
        op.get_friendly_name()
        for op in model.get_ordered_ops()
        if any(
            op.input_value(i).get_node().get_type_name() == "FakeQuantize"
            for i in range(op.get_input_size())
        )
    }
    assert fq_fed and not fq_fed & decode
    perf = res.report["perf"]["int8"]
    assert perf["convs"]["int8"] > 0 and perf["conv_ms"]["int8"] > 0
    assert not any(
        k.startswith(("Softmax/", "ReduceSum/")) and "I8" in k for k in perf["by_kernel"]
    )
    assert res.report["perf"]["int8"]["precision"] == q.precision  # as the runtime names it
    assert res.report["perf"]["float"]["precision"] == f.precision
    # the float reference is the model's own accuracy: f32, whatever the plugin's default
    assert res.report["float"]["map_precision"] == "fp32"
    assert res.report["int8"]["map_precision"] == q.precision
    assert (
        res.report["float"]["map"]
        == ys.validate(res.artifacts["float"], data, ov_precision="f32")["map"]
    )
    saved = json.loads((tmp_path / "quant_report.json").read_text())
    assert saved["int8"]["path"] == str(res.model) and (tmp_path / "quant_report.md").is_file()
    md = (tmp_path / "quant_report.md").read_text()
    assert "scope nodes (decode)" in md
    # on an AVX512-BF16/AMX CPU the plugin computes the unquantized layers in bf16: said
    assert ("unquantized layers computed in bf16" in md) == ("bf16" in q.precision)


def test_openvino_percentile_sets_the_activation_ranges(setup, tmp_path):
    # NNCF's preset quantile set has a fixed outlier share: advanced.percentile did nothing
    from yoloslim.compress.quant_data import load_images
    from yoloslim.compress.quant_openvino import OpenVINOQuant

    data, onnx_path = setup
    images = load_images(data, "train", 4, 64)

    def widths(**kw) -> np.ndarray:
        cfg = QuantConfig.from_dict({"calib": 4, **kw})
        be = OpenVINOQuant(onnx_path, tmp_path, cfg)
        q = be.quantize(images, resolve_scope(be.view(), cfg.ignored_scope))
        fqs = [
            op
            for op in q.get_ordered_ops()
            if op.get_type_name() == "FakeQuantize"
            and op.input_value(0).get_node().get_type_name() != "Constant"  # activations
        ]
        return np.array(
            [
                float(np.max(op.input_value(2).get_node().get_data()))
                - float(np.min(op.input_value(1).get_node().get_data()))
                for op in fqs
            ]
        )

    p90 = widths(method="percentile", advanced={"percentile": 90.0})
    p99 = widths(method="percentile", advanced={"percentile": 99.999})
    assert len(p90) == len(p99) > 0
    assert (p90 <= p99 + 1e-6).all() and (p90 < p99 - 1e-6).any()


# -- ONNX Runtime (QDQ) ---------------------------------------------------------------------
def _qdq_fed(model) -> set[str]:
    producer = {o: n for n in model.graph.node for o in n.output}
    return {
        n.name
        for n in model.graph.node
        if any(
            producer.get(i) is not None and producer[i].op_type == "DequantizeLinear"
            for i in n.input
        )
    }


def test_onnxruntime_static_scope_pattern_and_variants(setup, tmp_path, caplog):
    data, onnx_path = setup
    cfg = QuantConfig(
        backend="onnxruntime",
        calib=4,
        method="entropy",
        ignored_scope=["decode", r"head\.cls_preds"],
        float_variants=["fp16"],
        advanced=FAST,
    )
    with caplog.at_level("WARNING"):
        res = ys.quantize(onnx_path, data, config=cfg, out=tmp_path)
    assert (
        set(res.artifacts) == {"float", "int8", "fp16"} and res.report["calibration"]["images"] == 4
    )
    assert "calibrating on 4 training images; fewer than 32" in caplog.text
    assert "pre-processing" not in caplog.text  # ONNX Runtime's hint is dropped
    assert r"scope nodes (decode, head\.cls_preds)" in (tmp_path / "quant_report.md").read_text()
    # what it computes in: the x86 CPU provider casts FP16 weights to FP32 as it loads
    x86 = platform.machine().lower() in ("x86_64", "amd64")
    runs = "fp32 (fp16 weights)" if x86 else "fp16"
    for role, precision, computed in (("int8", "int8+fp32", "int8+fp32"), ("fp16", "fp16", runs)):
        backend = load_backend(res.artifacts[role])
        assert backend(torch.rand(1, 3, 64, 64)).shape == (1, 84, 6)
        assert backend.precision == computed
        described = ys.describe(res.artifacts[role])  # read from the file, as info shows it
        assert (described["precision"], described["quantization"]) == (precision, role)
    step = ys.describe(res.model)["history"][-1]
    assert step == {
        "stage": "quantize",
        "out": str(tmp_path.absolute()),
        "backend": "onnxruntime",
        "mode": "static",
        "method": "entropy",
        "calib": 4,
        "float_layers": 3,  # the three head.cls_preds convs
    }
    assert "quantize" not in [h["stage"] for h in ys.describe(res.artifacts["fp16"])["history"]]
    from yoloslim.cli.info_cmd import _step  # as `info` shows it

    assert _step(step) == (
        "quantize (backend onnxruntime, mode static, method entropy, calibration images 4, "
        "convolutions in float 3)"
    )
    q = onnx.load(str(res.model))
    fed = _qdq_fed(q)
    assert any(n.op_type == "Conv" and n.name in fed for n in q.graph.node)  # something is INT8
    assert not fed & set(_decode_nodes(onnx_path))
    cls_convs = set(res.report["ignored_scope"]["nodes"]) - set(_decode_nodes(onnx_path))
    assert len(cls_convs) == 3 and not cls_convs & fed
    assert sorted(res.report["layers_in_float"]["scope"]) == [
        f"head.cls_preds.{i}" for i in range(3)
    ]


def test_entropy_calibration_is_not_the_minmax_one(setup, tmp_path):
    # audit42 quant F1: ONNX Runtime's entropy calibrator, with quantize_static's default bin
    # counts (128 and 128), has one candidate range, the min-max one: the same model
    data, onnx_path = setup

    def scales(method):
        cfg = QuantConfig(backend="onnxruntime", calib=4, method=method, advanced=FAST)
        q = onnx.load(str(ys.quantize(onnx_path, data, config=cfg, out=tmp_path / method).model))
        init = {i.name: onnx.numpy_helper.to_array(i) for i in q.graph.initializer}
        found = {}
        for n in q.graph.node:  # activations: QuantizeLinear of a tensor that is no weight
            if n.op_type == "QuantizeLinear" and n.input[0] not in init:
                found[n.input[0]] = float(init[n.input[1]])
        return found

    minmax, entropy = scales("minmax"), scales("entropy")
    assert set(minmax) == set(entropy) and minmax
    differ = [t for t in minmax if abs(minmax[t] - entropy[t]) > 1e-6 * minmax[t]]
    assert len(differ) >= 5  # 11 of 220 at 512 bins (more than a quarter at 2048)
    # KL clips the range it searches from the min-max one (asymmetric: a range may also
    # shift, so compared within a little of it)
    assert all(entropy[t] <= minmax[t] * 1.01 for t in minmax)


def test_onnxruntime_dynamic_uses_convinteger(setup, tmp_path, caplog):
    data, onnx_path = setup
    cfg = QuantConfig(backend="onnxruntime", mode="dynamic", max_drop=0.0, advanced=FAST)
    with caplog.at_level("WARNING", logger="yoloslim"):
        res = ys.quantize(onnx_path, data, config=cfg, out=tmp_path)
    # an untrained model: a budget held to mAP 0 is said to mean nothing (audit25 quant L2)
    assert "scores mAP50-95 0 on the val split: max_drop=0 (quantize --max-drop" in caplog.text
    ops = {n.op_type for n in onnx.load(str(res.model)).graph.node}
    assert "ConvInteger" in ops and res.report["calibration"]["images"] == 0
    step = ys.describe(res.model)["history"][-1]
    assert (step["stage"], step["mode"], step["method"], step["calib"]) == (
        "quantize",
        "dynamic",
        None,
        None,
    )
    # its conv biases sit in an Add after ConvInteger -> Cast -> Mul: still parameters
    from yoloslim.bench.graph import onnx_stats

    assert onnx_stats(res.model, 64) == onnx_stats(onnx_path, 64)
    # an INT8 model is not quantized again (ONNX Runtime wrote an invalid graph, NNCF a
    # larger, worse one that it called INT8)
    for backend in ("onnxruntime", "openvino"):
        with pytest.raises(ModelError, match=r"already quantized \(ConvInteger"):
            ys.quantize(res.model, data, config=QuantConfig(backend=backend), out=tmp_path / "q")
    assert not (tmp_path / "q").exists()
    # the float model this run wrote, quantized into the same folder, would be overwritten
    float_onnx = Path(res.report["float"]["path"])
    before = float_onnx.read_bytes()
    with pytest.raises(ConfigError, match=r"model=.*this run writes .*give another out"):
        ys.quantize(float_onnx, data, config=cfg, out=tmp_path)
    assert float_onnx.read_bytes() == before
    # untrained: 0 mAP, within budget at once, so no ranking ran and no image was read for
    # one (audit25 quant L1: "the ranking runs on the N val images there are" was said anyway)
    assert res.report["accuracy_aware"]["sensitivity_images"] is None
    steps = res.report["accuracy_aware"]["steps"]
    assert len(steps) == 1 and steps[0]["map"] == round(res.report["int8"]["map"], 5)
    assert load_backend(res.model)(torch.rand(1, 3, 64, 64)).shape == (1, 84, 6)


def test_revert_returns_a_conv_to_float(setup, tmp_path):
    from yoloslim.compress.quant_data import load_images
    from yoloslim.compress.quant_onnx import OnnxRuntimeQuant

    data, onnx_path = setup
    cfg = QuantConfig(backend="onnxruntime", calib=2)
    be = OnnxRuntimeQuant(onnx_path, tmp_path, cfg)
    scope = resolve_scope(be.view(), cfg.ignored_scope)
    images = load_images(data, "train", 2, 64)
    q = be.quantize(images, scope)
    conv = next(n.name for n in q.graph.node if n.op_type == "Conv" and n.name in _qdq_fed(q))
    assert len(next(n for n in q.graph.node if n.name == conv).input) == 3  # it has a bias
    r = be.revert(q, [conv])
    assert conv not in _qdq_fed(r) and conv in _qdq_fed(q)
    out = be.runner(r)(images[0])
    assert out.shape == (1, 84, 6) and np.isfinite(out).all()


def test_a_conv_returned_to_float_reads_float_values_with_float_weight_and_bias(setup, tmp_path):
    # the fallback once bypassed only a quantizer right in front of a conv: the 19 convs fed by
    # a Concat (quantizers on its inputs) kept reading int8 values, and OpenVINO kept the
    # biases NNCF's bias correction had changed, while the report called them float
    import openvino as ov

    from yoloslim.compress.quant_data import load_images
    from yoloslim.compress.quant_onnx import OnnxRuntimeQuant, _quantized_input
    from yoloslim.compress.quant_openvino import OpenVINOQuant, _constant_data
    from yoloslim.compress.quant_openvino import _quantized_input as ov_quantized_input

    data, onnx_path = setup
    images = load_images(data, "train", 2, 64)
    # OpenVINO
    be = OpenVINOQuant(onnx_path, tmp_path / "ov", QuantConfig(calib=2))
    scope = resolve_scope(be.view(), ["decode"])
    q = be.quantize(images, scope)
    convs = [op for op in q.get_ordered_ops() if op.get_type_name() == "Convolution"]
    behind_concat = [c for c in convs if c.input_value(0).get_node().get_type_name() == "Concat"]
    assert behind_concat and all(ov_quantized_input(c) for c in behind_concat)
    names = [c.get_friendly_name() for c in convs]
    r = be.revert(q, names)
    float_ops = {op.get_friendly_name(): op for op in be.float_model.get_ordered_ops()}
    for conv in (op for op in r.get_ordered_ops() if op.get_friendly_name() in names):
        assert not ov_quantized_input(conv), conv.get_friendly_name()
        for k in (0, 1):  # the conv's weight, then its bias Add's constant
            node = conv if k == 0 else next(iter(conv.output(0).get_target_inputs())).get_node()
            was = float_ops[node.get_friendly_name()]
            i = 1 if k == 0 or _constant_data(node.input_value(1).get_node()) is not None else 0
            np.testing.assert_array_equal(
                _constant_data(node.input_value(i).get_node()).astype(np.float32),
                _constant_data(was.input_value(i).get_node()).astype(np.float32),
            )
            # named as in the float IR, not Constant_N (audit50 quant F2)
            got = node.input_value(i).get_node().get_friendly_name()
            assert got == was.input_value(i).get_node().get_friendly_name(), got
    # every conv in float: the reverted IR computes what the float IR does (at f32)
    core = openvino_core()
    f32 = {"INFERENCE_PRECISION_HINT": ov.Type.f32}
    run_r = core.compile_model(r, "CPU", f32)
    run_f = core.compile_model(be.float_model, "CPU", f32)
    np.testing.assert_allclose(run_r(images[0])[0], run_f(images[0])[0], atol=1e-3, rtol=1e-4)
    # ONNX Runtime
    (tmp_path / "ort").mkdir()
    be = OnnxRuntimeQuant(onnx_path, tmp_path / "ort", QuantConfig(backend="onnxruntime", calib=2))
    q = be.quantize(images, resolve_scope(be.view(), ["decode"]))
    names = [n.name for n in q.graph.node if n.op_type == "Conv"]
    producer = {o: n for n in q.graph.node for o in n.output}
    assert any(
        producer[n.input[0]].op_type == "DequantizeLinear" for n in q.graph.node if n.name in names
    )
    r = be.revert(q, names)
    producer = {o: n for n in r.graph.node for o in n.output}
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in r.graph.initializer}
    floats = {i.name: onnx.numpy_helper.to_array(i) for i in be.float_model.graph.initializer}
    float_convs = {n.name: n for n in be.float_model.graph.node if n.op_type == "Conv"}
    for conv in (n for n in r.graph.node if n.name in names):
        assert not _quantized_input(conv, producer), conv.name
        for mine, was in zip(conv.input[1:], float_convs[conv.name].input[1:], strict=True):
            np.testing.assert_array_equal(inits[mine], floats[was])
    assert be.runner(r)(images[0]).shape == (1, 84, 6)
    # one conv behind a Concat returned alone: it reads float values, the others do not
    producer = {o: n for n in q.graph.node for o in n.output}

    def behind_concat(n) -> bool:
        dq = producer.get(n.input[0])
        quant = producer.get(dq.input[0]) if dq is not None else None
        made = producer.get(quant.input[0]) if quant is not None else None
        return made is not None and made.op_type == "Concat"

    one = next(n.name for n in q.graph.node if n.op_type == "Conv" and behind_concat(n))
    r = be.revert(q, [one])
    producer = {o: n for n in r.graph.node for o in n.output}
    quantized = {
        n.name for n in r.graph.node if n.op_type == "Conv" and _quantized_input(n, producer)
    }
    assert one not in quantized and len(quantized) == len(names) - 1
    out = be.runner(r)(images[0])
    assert out.shape == (1, 84, 6) and np.isfinite(out).all()


# -- accuracy-aware policy ------------------------------------------------------------------
class _StubBackend:
    """Layer k in float lowers the output error by gains[k]; mAP rises with each kept layer."""

    def __init__(self, gains: dict[str, float]) -> None:
        self.gains = gains

    def revert(self, model, nodes):
        return {"float": list(nodes)}

    def runner(self, model):
        err = 1.0 - sum(self.gains[n] for n in model.get("float", []))
        return lambda x: np.concatenate([np.full((1, 4, 4), err), np.ones((1, 4, 2))], -1)


GAINS = {"a": 0.1, "b": 0.5, "c": 0.3, "d": 0.05}
REF = np.concatenate([np.zeros((1, 4, 4)), np.ones((1, 4, 2))], -1)


def _loop(maps: dict, float_map: float, max_steps: int = 10, key=len):
    """The accuracy-aware loop on the stub; ``maps``: ``key`` of the layers in float (their
    number, or with ``key=frozenset`` which they are) -> mAP."""
    calls = []

    def evaluate(model, tag):
        calls.append(tag)
        return {"map": maps[key(model.get("float", []))], "map50": 0.5}

    model, info = accuracy_aware(
        _StubBackend(GAINS),
        {},
        candidates={k: f"layer.{k}" for k in GAINS},
        evaluate=evaluate,
        float_map=float_map,
        max_drop=1.0,
        inputs=lambda: ([np.zeros(1)], REF),
        imgsz=64,
        max_steps=max_steps,
    )
    return model, info, calls


def test_accuracy_aware_stops_as_soon_as_within_budget():
    model, info, calls = _loop({0: 0.30, 1: 0.33, 2: 0.345, 3: 0.36, 4: 0.37}, 0.35, 10)
    assert info["met"] and calls == ["step0", "step1", "step2"]  # step 3 never evaluated
    assert info["kept_float"] == ["layer.b", "layer.c"]  # most sensitive first
    assert model == {"float": ["b", "c"]}
    assert [s["drop_points"] for s in info["steps"]] == [5.0, 2.0, 0.5]
    # already within budget: no sensitivity pass, no step
    _, info = accuracy_aware(
        _StubBackend(GAINS),
        {},
        candidates={"a": "layer.a"},
        evaluate=lambda m, t: {"map": 0.35, "map50": 0.5},
        float_map=0.35,
        max_drop=0.0,
        inputs=lambda: pytest.fail("the ranking's images were read, and no ranking runs"),
        imgsz=64,
        max_steps=10,
    )
    assert info["met"] and len(info["steps"]) == 1 and info["sensitivity"] == []
    assert info["chosen_step"] == 0 and info["kept_float"] == []


def test_accuracy_aware_out_of_steps_keeps_the_best_step_and_warns(caplog):
    from yoloslim.compress.quantize import budget_warning

    with caplog.at_level("WARNING"):  # never within 1 point of 0.40
        model, info, calls = _loop({0: 0.30, 1: 0.33, 2: 0.34, 3: 0.335}, 0.40, 3)
    assert not info["met"] and info["chosen_step"] == 2
    assert calls == ["step0", "step1", "step2", "step3", "chosen2"]  # the caller's last eval
    assert model == {"float": ["b", "c"]} and info["kept_float"] == ["layer.b", "layer.c"]
    assert "budget not met" in caplog.text
    report = {"accuracy_aware": info, "map_drop_points": 6.0}
    assert "was not met: 6.0 points lost after 3" in budget_warning(report)
    assert budget_warning({"accuracy_aware": {"met": True}}) is None


def test_accuracy_aware_met_returns_layers_that_did_not_help_to_int8():
    # b (the most sensitive by the ranking) changes nothing; c meets the budget
    maps = {frozenset(): 0.30, frozenset("b"): 0.30, frozenset("bc"): 0.345}
    model, info, calls = _loop({**maps, frozenset("c"): 0.342}, 0.35, key=frozenset)
    assert info["met"] and calls == ["step0", "step1", "step2", "trimmed"]
    assert model == {"float": ["c"]} and info["kept_float"] == ["layer.c"]
    assert info["trimmed"] == {
        "returned_to_int8": ["layer.b"],
        "map": 0.342,
        "map50": 0.5,
        "drop_points": 0.8,
    }
    # without b the budget no longer holds: the chosen step stays, evaluated last again
    model, info, calls = _loop({**maps, frozenset("c"): 0.33}, 0.35, key=frozenset)
    assert info["met"] and calls == ["step0", "step1", "step2", "trimmed", "step2"]
    assert model == {"float": ["b", "c"]} and "trimmed" not in info


def test_accuracy_aware_met_is_the_loops_own_test_not_the_rounded_steps():
    # 0.3399996 shows as 0.34 in the steps (5 decimals): exactly 1 point under 0.35, within
    # the budget; unrounded it is 1.00004 points, not within it, and the loop went on
    model, info, calls = _loop({0: 0.30, 1: 0.3399996, 2: 0.3399997}, 0.35, 2)
    assert calls[:3] == ["step0", "step1", "step2"]
    assert [s["map"] for s in info["steps"]] == [0.3, 0.34, 0.34]
    assert not info["met"] and info["chosen_step"] == 2  # the best unrounded mAP


def test_accuracy_aware_not_met_returns_layers_that_did_not_help_to_int8():
    from yoloslim.compress.quantize import budget_warning

    # out of steps, budget missed: b changed nothing, c and a raised the mAP; the best step
    # (3) kept b too, for nothing
    maps = {frozenset(): 0.30, frozenset("b"): 0.30, frozenset("bc"): 0.32, frozenset("bca"): 0.33}
    _, info, calls = _loop({**maps, frozenset("ca"): 0.33}, 0.40, 3, key=frozenset)
    assert not info["met"] and info["chosen_step"] == 3
    assert calls == ["step0", "step1", "step2", "step3", "trimmed"]
    assert info["kept_float"] == ["layer.c", "layer.a"]
    assert info["trimmed"]["returned_to_int8"] == ["layer.b"]
    # without b the mAP falls below the best step's: b stays, the chosen model evaluated last
    model, info, calls = _loop({**maps, frozenset("ca"): 0.325}, 0.40, 3, key=frozenset)
    assert calls[-2:] == ["trimmed", "chosen3"] and "trimmed" not in info
    assert model == {"float": ["b", "c", "a"]}
    _, info, _ = _loop({**maps, frozenset("ca"): 0.33}, 0.40, 3, key=frozenset)
    said = budget_warning({"accuracy_aware": info, "map_drop_points": 7.0})
    assert "kept the layers of step 3 (the best one) that raised the mAP" in said


def test_accuracy_aware_a_trimmed_model_within_the_budget_no_step_met_is_met(caplog):
    # audit50 quant F1: out of steps, the best step (3) missed the budget, but without b it
    # lost under 1 point: it was written and reported "not met"
    maps = {frozenset(): 0.30, frozenset("b"): 0.30, frozenset("bc"): 0.32, frozenset("bca"): 0.33}
    with caplog.at_level("WARNING"):
        model, info, calls = _loop({**maps, frozenset("ca"): 0.395}, 0.40, 3, key=frozenset)
    assert calls[-1] == "trimmed" and model == {"float": ["c", "a"]}
    assert info["met"] and info["trimmed"]["drop_points"] == 0.5 and not caplog.text
    from yoloslim.compress.quantize import budget_warning

    assert budget_warning({"accuracy_aware": info, "map_drop_points": 0.5}) is None


def test_accuracy_aware_without_steps_ranks_nothing(caplog):
    with caplog.at_level("WARNING"):
        model, info, calls = _loop({frozenset(): 0.30}, 0.35, max_steps=0, key=frozenset)
    assert calls == ["step0"] and not info["met"] and info["sensitivity"] == []
    assert model == {} and info["kept_float"] == [] and "max_steps is 0" in caplog.text


def test_onnxruntime_quantizes_a_private_copy_not_the_users_file(setup, tmp_path, monkeypatch):
    # ONNX Runtime writes NAME-inferred.onnx beside the model it is given: beside the user's
    # ONNX, a read-only folder failed naming a file they never had, and a stop left it there
    import onnxruntime.quantization as ortq

    data, onnx_path = setup
    given = []
    real = ortq.quantize_static

    def spy(model_input, *args, **kwargs):
        given.append(Path(model_input))
        return real(model_input, *args, **kwargs)

    monkeypatch.setattr(ortq, "quantize_static", spy)
    before = sorted(p.name for p in onnx_path.parent.iterdir())
    out = tmp_path / "q"
    cfg = QuantConfig(backend="onnxruntime", calib=2, advanced=FAST)
    ys.quantize(onnx_path, data, config=cfg, out=out)
    assert given and all(out in p.parents and p != onnx_path for p in given)
    assert sorted(p.name for p in onnx_path.parent.iterdir()) == before


def test_an_onnx_in_the_runs_own_export_folder_is_quantized_again(setup, tmp_path):
    # an earlier run's export/model.onnx: refused as if this run would write export/, which
    # a run given an ONNX never does
    data, onnx_path = setup
    out = tmp_path / "q"
    (out / "export").mkdir(parents=True)
    given = out / "export" / "model.onnx"
    given.write_bytes(onnx_path.read_bytes())
    cfg = QuantConfig(backend="onnxruntime", calib=2, advanced=FAST)
    res = ys.quantize(given, data, config=cfg, out=out)
    assert res.artifacts["int8"].is_file() and given.read_bytes() == onnx_path.read_bytes()


# -- CLI ------------------------------------------------------------------------------------
def test_cli_quantize_and_bad_backend(setup, tmp_path, capsys):
    from yoloslim.cli.main import main

    data, onnx_path = setup
    args = ["quantize", "--model", str(onnx_path), "--data", str(data), "--out", str(tmp_path)]
    assert main([*args, "--backend", "onnxruntime", "--calib", "2", "--no-latency"]) == 0
    assert json.loads((tmp_path / "quant_report.json").read_text())["backend"] == "onnxruntime"
    assert main([*args, "--backend", "tensorflow"]) == 2
    assert main([*args, "--max-drop", "-1"]) == 2
    capsys.readouterr()
    # an advanced setting given as an option is said as the option
    assert main([*args, "--preset", "fast"]) == 2
    assert "error: ConfigError: --preset 'fast': choose from" in capsys.readouterr().err
    assert main([*args, "--ignore", "none", "--ignore", "decode"]) == 2
    assert "--ignore none quantizes everything; it cannot go with" in capsys.readouterr().err
    assert main([*args, "--float-variants", "fp8,fp16"]) == 2  # said as float_variants=[...]
    assert "--float-variants fp8,fp16: unknown fp8; give fp16 or bf16" in capsys.readouterr().err


def test_the_sensitivity_error_uses_the_models_own_strides(caplog):
    from yoloslim.compress.quant_accuracy import discrepancy

    # strides (16, 32) at 64 px: 16 + 4 anchors; one confident anchor of each level, boxes
    # off by 16 px: one stride at level 16, half a stride at level 32
    ref = np.zeros((1, 20, 5), np.float32)
    ref[0, [0, 19], 4] = 1.0
    out = ref.copy()
    out[0, [0, 19], :4] += 16.0
    assert discrepancy(ref, out, 64, strides=(16, 32)) == pytest.approx((1.0 + 0.5) / 2)
    # anchors that fit no level of the given strides: the smallest stride, and a warning
    assert discrepancy(ref, out, 64, strides=(8, 16, 32)) == pytest.approx(2.0)
    assert "are not those of strides [8, 16, 32]" in caplog.text


def test_a_quantize_refused_by_the_folder_lock_writes_nothing_there(setup, tmp_path):
    """The float ONNX is exported under the lock: a second quantize into a folder another run
    writes into must not replace that run's export/model.onnx before it is refused."""
    from yoloslim.fileio import folder_lock

    data, _ = setup
    model = ys.build_model("damo-nano", nc=2, names=["a", "b"])
    out = tmp_path / "q"
    refused = pytest.raises(
        ConfigError, match=r"another yoloslim run is writing .* so this quantize cannot"
    )
    with folder_lock(out, "quantize"), refused:
        ys.quantize(model, data, config=QuantConfig(imgsz=64, advanced=FAST), out=out)
    assert list(out.iterdir()) == []


def test_an_export_folder_another_run_writes_into_is_not_moved_aside(setup, tmp_path):
    """quantize sets an earlier out/export aside before it exports; an export writing into that
    folder at the time had it taken from under it, its files mixed into quantize's (audit47
    conc F1): the move is made under the folder's lock, so this quantize is refused."""
    from yoloslim.fileio import folder_lock

    data, _ = setup
    model = ys.build_model("damo-nano", nc=2, names=["a", "b"])
    out = tmp_path / "q"
    (out / "export").mkdir(parents=True)
    (out / "export" / "model.onnx").write_text("another export's")
    refused = pytest.raises(
        ConfigError, match=r"q/export: another yoloslim run is writing .* so this quantize cannot"
    )
    with folder_lock(out / "export", "export"), refused:
        ys.quantize(model, data, config=QuantConfig(imgsz=64, advanced=FAST), out=out)
    assert [p.name for p in out.iterdir()] == ["export"]
    assert (out / "export" / "model.onnx").read_text() == "another export's"
    (out / "export" / "model.onnx").rename(out / "export" / "being_written.onnx")
    # nobody writing there: what no quantize writes in export/ is not removed with it either
    # (audit47 conc F8: another export's model.torchscript went without a word)
    refused = pytest.raises(
        ConfigError, match=r"q/export holds being_written.onnx, which no quantize writes there"
    )
    with refused:
        ys.quantize(model, data, config=QuantConfig(imgsz=64, advanced=FAST), out=out)
    assert (out / "export" / "being_written.onnx").read_text() == "another export's"
    shutil.rmtree(out / "export")
    (out / "export").write_text("a file")  # named as a file in --out's folder
    with pytest.raises(ConfigError, match=r"q/export is a file, and this run writes its float"):
        ys.quantize(model, data, config=QuantConfig(imgsz=64, advanced=FAST), out=out)
    assert (out / "export").read_text() == "a file"


def test_a_float_export_that_fails_its_check_names_no_record_quantize_removes(
    setup, tmp_path, monkeypatch
):
    """export's error cites export/export_report.json; quantize removes that folder (and the
    out it made) when its float export fails, so its error names the failure alone (audit47
    quant F1: it sent the user to a record that was not there)."""
    from yoloslim.export import verify

    data, _ = setup
    model = ys.build_model("damo-nano", nc=2, names=["a", "b"])
    never = verify.Tolerance(-1.0, 0.0, -1.0, -1.0, "none")  # no output can pass
    monkeypatch.setattr(verify, "FP32", never)
    out = tmp_path / "q"
    with pytest.raises(ExportError, match=r"the float ONNX to quantize did not pass") as e:
        ys.quantize(model, data, config=QuantConfig(imgsz=64, advanced=FAST), out=out)
    assert "onnx:" in str(e.value) and "export_report.json" not in str(e.value)
    assert not out.exists()


def test_a_stopped_quantize_leaves_no_earlier_report_beside_its_new_files(
    setup, tmp_path, monkeypatch, caplog
):
    # the earlier run's quant_report.json stayed beside this run's new export/ and float IR
    from yoloslim.compress import quantize as qmod

    data, onnx_path = setup
    out = tmp_path / "q"
    out.mkdir()
    for name in ("quant_report.md", "quant_config.json"):
        (out / name).write_text("an earlier run's")
    # the earlier run's INT8 model, which its report lists
    (out / "int8_openvino").mkdir()
    (out / "int8_openvino" / "model.xml").write_text("<net/>")
    os.utime(out / "int8_openvino" / "model.xml", (1e9, 1e9))
    listed = json.dumps({"int8": {"path": "q/int8_openvino/model.xml"}})
    (out / "quant_report.json").write_text(listed)

    def stopped(*a, **kw):
        raise KeyboardInterrupt

    # stopped before this run wrote a file the report lists: the report still describes them
    monkeypatch.setattr(qmod, "_backend", stopped)
    with pytest.raises(KeyboardInterrupt):
        ys.quantize(onnx_path, data, config=QuantConfig(imgsz=64, advanced=FAST), out=out)
    assert (out / "quant_report.json").read_text() == listed
    monkeypatch.undo()
    # stopped as the float model is written: the report that described the earlier one is gone
    from yoloslim.compress.quant_openvino import OpenVINOQuant

    monkeypatch.setattr(OpenVINOQuant, "float_artifact", stopped)
    with caplog.at_level("WARNING", logger="yoloslim"), pytest.raises(KeyboardInterrupt):
        ys.quantize(onnx_path, data, config=QuantConfig(imgsz=64, advanced=FAST), out=out)
    assert not (out / "quant_report.json").exists() and not (out / "quant_report.md").exists()
    # and the earlier INT8 model left there without a report is named (audit25 quant L4)
    said = " ".join(caplog.text.split())
    assert "stopped: an earlier quantize's artifacts stay in" in said
    assert str(out / "int8_openvino" / "model.xml") in said
    assert not (out / "quant_config.json").exists()  # the settings of that report went with it


def test_inputs_found_bad_keep_the_earlier_report_and_are_said_before_any_work(
    setup, tmp_path, monkeypatch
):
    # a mistyped --model, a class-count mismatch, a scope that quantizes nothing: each deleted
    # the earlier run's report (and the first two were said only after exporting, calibrating)
    data, onnx_path = setup
    out = tmp_path / "q"
    out.mkdir()
    earlier = {
        "quant_report.json": '{"backend": "onnxruntime"}',
        "quant_report.md": "# earlier",
        "quant_config.json": "{}",
    }
    for name, text in earlier.items():
        (out / name).write_text(text)
    cfg = QuantConfig(backend="onnxruntime", calib=2, advanced=FAST)
    with pytest.raises(ModelError, match="bestt.pt"):
        ys.quantize(tmp_path / "bestt.pt", data, config=cfg, out=out)
    three = ys.build_model("damo-nano", nc=3, names=["a", "b", "c"])
    with pytest.raises(ModelError, match=r"the model has 3 classes but .*data.yaml has 2"):
        ys.quantize(three, data, config=cfg, out=out)
    ckpt = tmp_path / "three.pt"
    ys.save_checkpoint(ckpt, three, imgsz=64)
    with pytest.raises(ModelError, match=r"three.pt has 3 classes but .*data.yaml has 2"):
        ys.quantize(ckpt, data, config=cfg, out=out)
    with pytest.raises(ConfigError, match=r"keeps every convolution in float: nothing would be"):
        everything = QuantConfig(backend="onnxruntime", ignored_scope=[".*"], advanced=FAST)
        ys.quantize(onnx_path, data, config=everything, out=out)
    with pytest.raises(ModelError, match="expected a Detector or a path, got Linear"):
        ys.quantize(torch.nn.Linear(2, 2), data, config=cfg, out=out)
    assert {p.name: p.read_text() for p in out.iterdir() if p.is_file()} == earlier
    # a quant_report.json no quantize wrote, or a folder in a record's place: refused before
    # any work, the file kept (it was replaced; the folder failed after calibrating: audit42
    # corrupt F8)
    (out / "quant_report.json").write_bytes(b'{"x": \xff')
    with pytest.raises(ConfigError, match=r"quant_report.json is not a yoloslim quantize report"):
        ys.quantize(onnx_path, data, config=cfg, out=out)
    assert (out / "quant_report.json").read_bytes() == b'{"x": \xff'
    (out / "quant_report.json").unlink()
    (out / "quant_report.json").mkdir()
    with pytest.raises(ConfigError, match=r"quant_report.json is not a file, and this run"):
        ys.quantize(onnx_path, data, config=cfg, out=out)
    assert not (out / "export").exists() and not (out / "int8").exists()


def test_a_run_refused_for_its_scope_leaves_the_earlier_export_as_it_was(setup, tmp_path):
    # audit44 quant F3: the checkpoint was exported (over the earlier run's export/) before
    # the scope was found to quantize nothing
    data, _ = setup
    out = tmp_path / "q"
    (out / "export").mkdir(parents=True)
    earlier = {"model.onnx": b"the earlier run's", "export_report.json": b"{}"}
    for name, content in earlier.items():
        (out / "export" / name).write_bytes(content)
    ckpt = ys.save_checkpoint(tmp_path / "two.pt", ys.build_model("damo-nano", nc=2), imgsz=64)
    everything = QuantConfig(backend="onnxruntime", ignored_scope=[".*"], advanced=FAST)
    with pytest.raises(ConfigError, match=r"keeps every convolution in float"):
        ys.quantize(ckpt, data, config=everything, out=out)
    assert {p.name: p.read_bytes() for p in (out / "export").iterdir()} == earlier
    assert sorted(p.name for p in out.iterdir()) == ["export"]  # nothing set aside is left
    # a run killed while it is set aside: the next run's clean-up removes it (review F1: it
    # kept the folder's mode, which the clean-up does not take for a staging folder's)
    from yoloslim.compress.quantize import _set_aside
    from yoloslim.fileio import remove_stale_staging

    was = (out / "export").stat().st_mode & 0o777
    aside, mode = _set_aside(out / "export")
    assert remove_stale_staging(out) == [aside] and not aside.exists() and mode == was


def test_an_int8_model_that_lost_most_of_the_map_is_warned_about():
    # audit44 quant F1: --ignore none with ONNX Runtime scored 0.00 against 23.34, unsaid
    from yoloslim.compress.quantize import budget_warning

    report = {"float": {"map": 0.2334}, "int8": {"map": 0.0}, "config": {"ignored_scope": []}}
    said = budget_warning(report)
    assert "keeps 0% of the float model's mAP50-95 (0.00 against 23.34)" in said
    assert "its box decode was quantized too" in said
    report["config"]["ignored_scope"] = ["decode"]
    assert "--max-drop, or --ignore head_preds" in budget_warning(report)
    report["int8"]["map"] = 0.2
    assert budget_warning(report) is None
    # a barely trained model's 0.04 points against 0.01 is noise, not a collapse (review F2)
    report = {"float": {"map": 0.0004}, "int8": {"map": 0.0001}, "config": {}}
    assert budget_warning(report) is None


def test_the_earlier_runs_leftovers_are_named_in_this_folder_and_home_is_expanded(
    setup, tmp_path, monkeypatch, caplog
):
    import shutil

    data, onnx_path = setup
    cfg = QuantConfig(backend="onnxruntime", calib=2, float_variants=["fp16"], advanced=FAST)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    res = ys.quantize(onnx_path, data, config=cfg, out="~/q")  # ~ was a folder named '~'
    assert res.artifacts["int8"] == tmp_path / "home/q/int8/model_int8.onnx"
    assert not (tmp_path / "~").exists()
    # a copy of the folder: its leftovers are its own files, not the original's
    shutil.copytree(tmp_path / "home/q", tmp_path / "copy")
    ys.quantize(onnx_path, data, config=QuantConfig(calib=2, advanced=FAST), out="copy")
    said = next(r.getMessage() for r in caplog.records if "does not describe them" in r.message)
    assert "copy/int8/model_int8.onnx" in said and "copy/fp16/model_fp16.onnx" in said
    assert "home" not in said


def test_an_fp16_or_unreadable_onnx_is_refused_and_another_runs_leftovers_are_named(
    setup, tmp_path, caplog
):
    data, onnx_path = setup
    out = tmp_path / "q"
    adv = AdvancedQuantConfig(latency=False, perf_counters=False)
    cfg = QuantConfig(backend="onnxruntime", calib=2, float_variants=["fp16"], advanced=adv)
    res = ys.quantize(onnx_path, data, config=cfg, out=out)
    # an FP16 model is no float reference (ONNX Runtime wrote an INT8 file it could not load)
    with pytest.raises(ModelError, match=r"model_fp16.onnx holds FP16 weights"):
        ys.quantize(res.artifacts["fp16"], data, config=cfg, out=tmp_path / "q2")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(onnx_path.read_bytes()[:1000])
    with pytest.raises(ModelError, match=r"broken.onnx: not a readable ONNX file"):
        ys.quantize(broken, data, config=cfg, out=tmp_path / "q3")
    # another tool's ONNX (no yoloslim metadata) says what yoloslim can take instead
    foreign = onnx.load(onnx_path)
    del foreign.metadata_props[:]
    onnx.save(foreign, tmp_path / "foreign.onnx")
    with pytest.raises(ModelError, match=r"foreign.onnx: no yoloslim metadata \(no 'names' "
                       r"and 'imgsz' key\); .* `yoloslim export`.*Ultralytics"):  # fmt: skip
        ys.quantize(tmp_path / "foreign.onnx", data, config=cfg, out=tmp_path / "q4")
    assert not (tmp_path / "q4").exists()
    # OpenVINO into the same folder: ONNX Runtime's artifacts stay, and are named as no
    # longer described
    ys.quantize(onnx_path, data, config=QuantConfig(calib=2, advanced=adv), out=out)
    assert "this report does not describe them" in caplog.text
    assert str(res.artifacts["int8"]) in caplog.text and str(res.artifacts["fp16"]) in caplog.text
