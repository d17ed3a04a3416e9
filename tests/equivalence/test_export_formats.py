"""Every export format against eager PyTorch, with the tolerances stated in export/verify.py.

Two exports serve the whole file (the ONNX exporter takes seconds): a dynamic-batch
one of a checkpoint (onnx, openvino, torchscript, triton, + coreml when installed)
and a static one (FP16 OpenVINO + NMS in the graph) of a model with spread scores.
"""

import importlib.util
import json
import os
import platform
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from yoloslim.errors import ConfigError, ExportError, ModelError
from yoloslim.export import EXPORTERS, Exporter, export, register_exporter
from yoloslim.export.triton import TRITON_MAX_BATCH, parse_config_pbtxt
from yoloslim.export.verify import FP32, HALF, probe_images, verify_artifact
from yoloslim.models import build_model
from yoloslim.models.checkpoint import save_checkpoint
from yoloslim.models.testing import randomize_bn
from yoloslim.runtime import load_backend

IMGSZ = 64
NAMES = ["a", "b", "c"]
ANCHORS = sum((IMGSZ // s) ** 2 for s in (8, 16, 32))
HAVE_COREML = importlib.util.find_spec("coremltools") is not None
RUNTIME_FORMATS = ["onnx", "openvino", "torchscript", "triton"]


def _model(spread_scores: bool = False) -> nn.Module:
    torch.manual_seed(0)
    model = randomize_bn(build_model("damo-nano", names=NAMES), seed=3)
    if spread_scores:  # confident, varied scores so NMS has real work to do
        g = torch.Generator().manual_seed(5)
        for conv in model.head.cls_preds:
            conv.weight.data = torch.randn(conv.weight.shape, generator=g) * 0.5
            conv.bias.data = torch.randn(conv.bias.shape, generator=g) - 1.0
        # and boxes of varied sizes inside the input (the low bins of each side's distance
        # favoured): random ones covered it, one box per class once clipped for NMS
        for conv in model.head.reg_preds:
            bins = conv.out_channels // 4
            conv.weight.data = torch.randn(conv.weight.shape, generator=g) * 0.3
            conv.bias.data = -0.8 * torch.arange(bins).repeat(4).float()
    return model


def _report(**fields) -> dict:
    """An earlier export's export_report.json as a test plants it: with the keys every report
    yoloslim writes holds (a JSON file without them is taken for a user's, and refused)."""
    return {"imgsz": IMGSZ, "torch_version": torch.__version__, "reparameterize": {}, **fields}


@pytest.fixture(scope="module")
def dynamic_export(tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    ckpt = save_checkpoint(out / "model.pt", _model(), imgsz=IMGSZ)
    formats = RUNTIME_FORMATS + (["coreml"] if HAVE_COREML else [])
    return ckpt, out, export(ckpt, out, formats=formats, dynamic=True)


@pytest.fixture(scope="module")
def static_export(tmp_path_factory):
    out = tmp_path_factory.mktemp("export_static")
    res = export(
        _model(spread_scores=True),
        out,
        formats=["onnx", "openvino"],
        imgsz=IMGSZ,
        half=True,
        nms=True,
    )
    return out, res


@pytest.mark.parametrize("fmt", RUNTIME_FORMATS)
def test_each_format_matches_pytorch(dynamic_export, fmt):
    _, out, res = dynamic_export
    entry = res.report["formats"][fmt]
    assert entry["passed"] is True and entry["runtime_version"]
    # FP32 weights everywhere, and OpenVINO is checked at the f32 hint (its CPU plugin's
    # default on AVX512-BF16/AMX CPUs is bf16, reported apart): the FP32 tolerance
    tol = FP32
    assert entry["tolerance"] == tol.__dict__
    assert fmt != "openvino" or entry["precision"] == "fp32"
    assert entry["max_abs_diff"] <= tol.box_atol + tol.box_rtol * IMGSZ
    assert entry["max_abs_diff_scores"] <= tol.score_atol
    assert json.loads((out / "export_report.json").read_text())["formats"][fmt]["passed"]
    # independently of export's own check: fresh inputs, batch 2, the stated tolerance
    path = res.artifacts[fmt]
    hint = "f32" if fmt == "openvino" else None
    backend = load_backend(path.parent / "1" / "model.onnx" if fmt == "triton" else path, hint=hint)
    x = torch.rand(2, 3, IMGSZ, IMGSZ, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        ref = res.model(x)
    torch.testing.assert_close(backend(x), ref, atol=tol.box_atol, rtol=tol.box_rtol)
    assert backend.names == NAMES and backend.imgsz == IMGSZ


def test_export_reparameterises_and_leaves_the_checkpoint(dynamic_export):
    ckpt, _, res = dynamic_export
    assert not any(isinstance(m, nn.BatchNorm2d) for m in res.model.modules())
    assert res.report["reparameterize"]["max_abs_diff"] <= 1e-4
    assert ckpt.is_file() and not list(ckpt.parent.glob(".*.onnx"))  # scratch files removed
    assert not [p.name for p in ckpt.parent.iterdir() if p.name.startswith(".")]  # no temp
    # the TorchScript archive's folder has one fixed name, not a temporary one (serialised in
    # memory, as torch.save does a file object: torch's own file writer aborts on a full disk)
    names = zipfile.ZipFile(res.artifacts["torchscript"]).namelist()
    assert {n.split("/")[0] for n in names} == {"archive"}


def test_onnx_dynamic_batch_opset_and_metadata(dynamic_export):
    _, _, res = dynamic_export
    proto = onnx.load(res.artifacts["onnx"])
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert [i.name for i in proto.graph.input] == ["images"]
    assert [o.name for o in proto.graph.output] == ["preds"]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic batch
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["names"]) == NAMES and meta["nc"] == "3"
    assert meta["imgsz"] == str(IMGSZ) and json.loads(meta["strides"]) == [8, 16, 32]
    assert meta["yoloslim_version"]
    backend = load_backend(res.artifacts["onnx"])
    for batch in (1, 3):
        x = torch.rand(batch, 3, IMGSZ, IMGSZ)
        with torch.no_grad():
            ref = res.model(x)
        out = backend(x)
        assert out.shape == ref.shape == (batch, ANCHORS, 4 + 3)
        torch.testing.assert_close(out, ref, atol=FP32.box_atol, rtol=FP32.box_rtol)


def test_openvino_reports_the_precision_its_plugin_used(dynamic_export):
    _, _, res = dynamic_export
    entry = res.report["formats"]["openvino"]
    assert entry["inference_precision_hint"] in {"f32", "bf16", "f16"}
    backend = load_backend(res.artifacts["openvino"])
    # OpenVINO's word in the hint, spelled as every other runtime's in precision (api43 L2)
    assert backend.compiled_hint == entry["inference_precision_hint"]
    assert backend.precision == {"f32": "fp32", "f16": "fp16"}.get(backend.compiled_hint, "bf16")
    if backend.precision == "fp32":
        assert "default_precision" not in entry
    else:  # measured at the plugin's default too, on the probe images, and reported
        default = entry["default_precision"]
        assert default["precision"] == backend.precision
        assert 0 <= default["max_abs_diff_scores"] <= 1 and default["max_abs_diff_boxes_px"] >= 0
        assert isinstance(default["within_half_tolerance"], bool)
    assert not backend.static_batch and backend(torch.rand(3, 3, IMGSZ, IMGSZ)).shape[0] == 3


@pytest.mark.parametrize("hint", ["f16", "bf16", "f32"])
def test_an_openvino_precision_the_cpu_lacks_is_warned_about(dynamic_export, hint, caplog):
    _, _, res = dynamic_export
    with caplog.at_level("WARNING"):
        backend = load_backend(res.artifacts["openvino"], hint=hint)
    said = f"not the {hint} asked for" in caplog.text
    assert said == (backend.compiled_hint != hint)  # f16 became bf16 on AVX512-BF16 CPUs


def test_openvino_fp16_weights_within_half_tolerance(dynamic_export, static_export):
    _, res = static_export
    entry = res.report["formats"]["openvino"]
    assert entry["passed"] and entry["tolerance"] == HALF.__dict__
    assert entry["max_abs_diff_boxes_px"] <= HALF.box_atol + HALF.box_rtol * IMGSZ
    fp32_mb = dynamic_export[2].report["formats"]["openvino"]["size_mb"]
    assert entry["size_mb"] < 0.6 * fp32_mb
    assert "keeps FP32" in res.report["formats"]["onnx"]["note"]


def test_nms_in_graph_matches_torch_postprocess(static_export):
    from yoloslim.export.nms import append_nms, verify_nms

    out, res = static_export
    entry = res.report["formats"]["onnx_nms"]
    assert entry["passed"] and set(entry["runtimes"]) == {"onnxruntime", "openvino"}
    e2e = onnx.load(res.artifacts["onnx_nms"])
    assert [o.name for o in e2e.graph.output] == ["num_dets", "boxes", "scores", "classes"]
    assert any(n.op_type == "NonMaxSuppression" for n in e2e.graph.node)
    # a low threshold: the comparison must cover many detections in both runtimes
    low = append_nms(res.artifacts["onnx"], out / "low.onnx", conf=0.05, iou=0.5, max_det=50)
    report = verify_nms(low, res.artifacts["onnx"])
    counts = [r["detections"] for r in report["runtimes"]["onnxruntime"]]
    assert max(counts) > 5, counts
    assert all(r["passed"] for rows in report["runtimes"].values() for r in rows)


def test_nms_graph_keeps_a_box_at_exactly_the_iou_threshold_in_every_runtime(tmp_path):
    # predict drops a box at an IoU over nms_iou; OpenVINO's NonMaxSuppression dropped it at
    # an IoU equal to it, and identical boxes at nms_iou 1 (audit46 export F1)
    from onnx import TensorProto, helper

    from yoloslim.eval.postprocess import postprocess
    from yoloslim.export.nms import append_nms

    anchors, nc = 8, 2
    shape = [1, anchors, 4 + nc]
    graph = helper.make_graph(  # preds given as a second input, the image unused
        [helper.make_node("Identity", ["raw"], ["preds"])],
        "identity",
        [
            helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 256, 256]),
            helper.make_tensor_value_info("raw", TensorProto.FLOAT, shape),
        ],
        [helper.make_tensor_value_info("preds", TensorProto.FLOAT, shape)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, tmp_path / "plain.onnx")
    preds = np.zeros((1, anchors, 4 + nc), np.float32)
    preds[0, :, :4] = [[100 + 20 * i, 0, 110 + 20 * i, 10] for i in range(anchors)]
    preds[0, :2, :4] = [[0, 0, 10, 10], [0, 0, 10, 5]]  # IoU exactly 0.5
    preds[0, :2, 4] = [0.9, 0.8]
    # and two past the input's left edge, at IoU 0.45 as given: one box once clipped, as
    # predict clips them before its NMS (both were kept: audit49 cli F1)
    preds[0, 2:4, :4] = [[-30, 100, 20, 130], [-90, 100, 20, 130]]
    preds[0, 2:4, 5] = [0.7, 0.6]
    e2e = append_nms(tmp_path / "plain.onnx", tmp_path / "e2e.onnx", conf=0.25, iou=0.5)
    clipped = torch.from_numpy(preds.copy())
    clipped[..., :4] = clipped[..., :4].clamp(0, 256)
    want = postprocess(clipped, conf=0.25, iou=0.5)[0]
    assert len(want) == 3
    import onnxruntime as ort

    feed = {"images": np.zeros((1, 3, 256, 256), np.float32), "raw": preds}
    counts = {"onnxruntime": ort.InferenceSession(str(e2e)).run(None, feed)[0]}
    if importlib.util.find_spec("openvino"):
        import openvino as ov

        compiled = ov.Core().compile_model(str(e2e), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        counts["openvino"] = compiled(feed)[compiled.output("num_dets")]
    assert {k: int(np.asarray(v).reshape(-1)[0]) for k, v in counts.items()} == dict.fromkeys(
        counts, 3
    )
    for iou in (1.0, 0.99999997):  # and one that is 1 in float32 (review L2)
        with pytest.raises(ConfigError, match=rf"iou={iou}: the graph's NonMaxSuppression"):
            append_nms(tmp_path / "plain.onnx", tmp_path / "one.onnx", iou=iou)


def test_nms_check_compares_real_detections_or_warns(static_export, monkeypatch, caplog):
    nms_mod = importlib.import_module("yoloslim.export.nms")  # yoloslim.export is a function

    out, res = static_export
    plain = res.artifacts["onnx"]
    # a graph whose own threshold lets nothing through the probe images: the export check
    # still compares detections, in a copy of the graph with a lower threshold
    strict = nms_mod.append_nms(plain, out / "strict.onnx", conf=0.9999)
    report = nms_mod.verify_nms(strict, plain)
    assert not any(r["reference"] for r in report["runtimes"]["onnxruntime"])
    low = report["low_conf_check"]
    assert low["conf"] < 0.9999 and report["detections_compared"] > 0
    assert {r["passed"] for rows in low["runtimes"].values() for r in rows} == {True}
    assert "warning" not in report
    assert res.report["formats"]["onnx_nms"]["detections_compared"] > 0
    # nothing to compare at any threshold (flat scores): said in the report and the log
    monkeypatch.setattr(nms_mod, "check_conf", lambda preds, conf: None)
    report = nms_mod.verify_nms(strict, plain)
    assert report["detections_compared"] == 0 and "no detection was compared" in report["warning"]
    assert "no detection was compared" in caplog.text


def test_onnx_nms_without_openvino_is_checked_in_onnx_runtime_alone(tmp_path, monkeypatch):
    # audit44 export F1: the onnx extra alone (no openvino) was an ImportError's traceback
    monkeypatch.setitem(sys.modules, "openvino", None)  # not installed
    res = export(_model(spread_scores=True), tmp_path, formats=["onnx"], imgsz=IMGSZ, nms=True)
    entry = res.report["formats"]["onnx_nms"]
    assert entry["passed"] and set(entry["runtimes"]) == {"onnxruntime"}
    assert entry["note"] == "checked in ONNX Runtime only: openvino is not installed"
    assert entry["openvino_precision_hint"] is None


def test_nms_check_runs_the_shipped_graph_and_refuses_constants_its_metadata_denies(
    static_export,
):
    from onnx import numpy_helper

    from yoloslim.errors import ExportError
    from yoloslim.export.nms import append_nms, verify_nms

    out, res = static_export
    plain = res.artifacts["onnx"]
    strict = append_nms(plain, out / "strict2.onnx", conf=0.9999)
    # the settings edited in the graph, its metadata left as exported
    model = onnx.load(strict)
    for i, t in enumerate(model.graph.initializer):
        if t.name in ("nms_max_out", "nms_k"):
            one = numpy_helper.from_array(np.array([1], np.int64), t.name)
            model.graph.initializer[i].CopyFrom(one)
    onnx.save(model, out / "edited.onnx")
    with pytest.raises(ExportError, match="NMS constants .* are not the settings its metadata"):
        verify_nms(out / "edited.onnx", plain)
    # a wrong NMS (its score threshold wired to the IoU constant, 0.65) that no probe image
    # reaches at its own threshold: the lower-threshold comparison runs this graph, so it is
    # caught (the lower threshold's ~20 candidates rarely overlap: a wrong IoU may pass)
    model = onnx.load(strict)
    nms = next(n for n in model.graph.node if n.op_type == "NonMaxSuppression")
    nms.input[4] = "nms_iou"
    onnx.save(model, out / "rewired.onnx")
    with pytest.raises(ExportError, match="disagrees with the torch postprocess"):
        verify_nms(out / "rewired.onnx", plain)


def test_check_conf_admits_about_twenty_candidates_without_ties():
    from yoloslim.export.nms import check_conf

    preds = np.zeros((2, 50, 6), np.float32)
    preds[..., 4:] = np.linspace(0.9, 0.0, 200).reshape(2, 50, 2)
    conf = check_conf(preds, 0.95)
    assert 18 <= int((preds[..., 4:].max(-1) > conf).sum()) <= 21  # anchors, on their top class
    assert check_conf(preds, 0.5) is None  # 0.5 already lets more through
    assert check_conf(np.full((1, 50, 6), 0.01, np.float32), 0.25) is None  # flat scores


def test_export_keeps_earlier_report_entries_and_the_users_files(dynamic_export, tmp_path):
    _, src, first = dynamic_export
    ts = tmp_path / "model.torchscript"
    ts.write_bytes(first.artifacts["torchscript"].read_bytes())
    planted = tmp_path / ".model.static.onnx"  # the name export's scratch file used to take
    planted.write_text("mine")
    (tmp_path / "kept.mlpackage").mkdir()
    earlier = _report(
        imgsz=32,
        dynamic=True,
        half=True,
        formats={
            "torchscript": {"path": str(ts), "passed": True},
            "coreml": {"path": str(tmp_path / "gone.mlpackage"), "passed": True},
            "coreml_kept": {"path": str(tmp_path / "kept.mlpackage"), "passed": True},
            "onnx": {"path": str(tmp_path / "model.onnx"), "passed": True},
        },
    )
    (tmp_path / "export_report.json").write_text(json.dumps(earlier))
    res = export(_model(), tmp_path, formats=["onnx"], imgsz=IMGSZ, verify=False)
    assert planted.read_text() == "mine"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == [planted.name]
    saved = json.loads((tmp_path / "export_report.json").read_text())
    assert saved == json.loads(json.dumps(res.report, default=str))
    assert set(saved["formats"]) == {"onnx", "torchscript", "coreml_kept"}  # one is gone
    assert saved["formats"]["torchscript"]["exported_with"] == {
        "imgsz": 32,
        "dynamic": True,
        "half": False,  # what the artifact is: --half leaves TorchScript in FP32
        "model": None,  # a report from before exports recorded their model
        "model_digest": None,
    }
    kept = saved["formats"]["coreml_kept"]["exported_with"]  # a batch of 1 whatever --dynamic
    assert (kept["dynamic"], kept["half"]) == (False, True)
    assert "exported_with" not in saved["formats"]["onnx"]  # this call's own entry
    assert saved["model"] == "Detector" and len(saved["model_digest"]) == 12


def test_a_killed_exports_half_written_report_is_removed_by_the_next(tmp_path):
    # a SIGKILL mid-write leaves .NAME.XXXXXXXX.tmp; reruns let them pile up (only train
    # removed its own)
    stale = tmp_path / ".export_report.json.ab12cd34.tmp"
    stale.write_text("{half")
    mine = tmp_path / ".notes.tmp"  # not a name the export writes: left alone
    mine.write_text("mine")
    export(_model(), tmp_path, formats=["onnx"], imgsz=IMGSZ, verify=False)
    assert not stale.exists() and mine.read_text() == "mine"


def test_a_copied_export_folder_keeps_its_own_files_and_says_which_model_made_them(tmp_path):
    first = tmp_path / "a"
    export(_model(), first, formats=["onnx", "torchscript"], imgsz=IMGSZ, verify=False)
    copy = tmp_path / "b"
    shutil.copytree(first, copy)
    other = _model(spread_scores=True)  # other weights
    res = export(other, copy, formats=["onnx"], imgsz=IMGSZ, verify=False)
    kept = res.report["formats"]["torchscript"]
    assert kept["path"] == str(copy / "model.torchscript")  # the copy's, not the original's
    assert kept["exported_with"]["model_digest"] != res.report["model_digest"]
    from yoloslim.cli.export_cmd import _earlier

    digest = kept["exported_with"]["model_digest"][:8]
    assert _earlier(kept, res.report) == f" (earlier: model Detector, weights {digest})"
    assert _earlier({**kept, "exported_with": {"imgsz": IMGSZ}}, res.report) == " (earlier)"
    assert _earlier(res.report["formats"]["onnx"], res.report) == ""


def test_a_report_from_before_triton_names_keys_other_models_by_name(tmp_path):
    """Reports once kept another Triton model as triton_fp32; it becomes triton:NAME."""
    other = tmp_path / "triton" / "det" / "config.pbtxt"
    other.parent.mkdir(parents=True)
    other.write_text("name: 'det'")
    old = _report(formats={"triton_fp32": {"path": str(other), "passed": True}})
    (tmp_path / "export_report.json").write_text(json.dumps(old))
    res = export(_model(), tmp_path, formats=["onnx"], imgsz=IMGSZ, verify=False)
    assert "triton_fp32" not in res.report["formats"]
    assert res.report["formats"]["triton:det"]["path"] == str(other)


def test_earlier_entries_are_found_from_another_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    export(_model(), "ex", formats="onnx", imgsz=IMGSZ, verify=False)  # paths "ex/model.onnx"
    monkeypatch.chdir(tmp_path.parent)
    res = export(_model(), Path(tmp_path.name) / "ex", formats="torchscript", verify=False)
    assert set(res.report["formats"]) == {"onnx", "torchscript"}
    assert Path(res.report["formats"]["onnx"]["path"]) == Path(tmp_path.name) / "ex" / "model.onnx"
    with pytest.raises(
        ConfigError, match=r"formats=\[\] \(--format\): no format given; choose from"
    ):
        export(_model(), "unused", formats=[])


def test_an_export_stopped_half_way_leaves_no_stale_entry_for_what_it_redid(tmp_path, monkeypatch):
    import dataclasses

    export(_model(), tmp_path, formats="onnx,torchscript", imgsz=IMGSZ, verify=False)

    def stopped(ctx):
        raise KeyboardInterrupt

    monkeypatch.setitem(EXPORTERS, "onnx", dataclasses.replace(EXPORTERS["onnx"], export=stopped))
    with pytest.raises(KeyboardInterrupt):
        export(_model(), tmp_path, formats="onnx", imgsz=IMGSZ, verify=False)
    saved = json.loads((tmp_path / "export_report.json").read_text())
    assert set(saved["formats"]) == {"torchscript"}  # the old onnx entry no longer vouches
    # stopped at the second of three: the first (done) keeps its new entry, the third (not
    # begun; its file still the earlier export's) stays listed as that one's; the report
    # listed none of them (audit26 export L1)
    monkeypatch.undo()
    export(_model(), tmp_path, formats="onnx,torchscript,openvino", imgsz=IMGSZ, verify=False)
    monkeypatch.setitem(
        EXPORTERS, "torchscript", dataclasses.replace(EXPORTERS["torchscript"], export=stopped)
    )
    with pytest.raises(KeyboardInterrupt):
        export(_model(), tmp_path, formats="onnx,torchscript,openvino", imgsz=IMGSZ, verify=False)
    saved = json.loads((tmp_path / "export_report.json").read_text())
    assert set(saved["formats"]) == {"onnx", "openvino"}
    assert "exported_with" in saved["formats"]["openvino"]  # the earlier export's, as kept ones
    assert "exported_with" not in saved["formats"]["onnx"]  # this one's
    # killed before the first format, then while it is written: the formats not begun
    # stay listed, the one being written does not (a kill -9 early in a re-export dropped
    # every entry it was to redo, for good: audit42 export M1)
    import yoloslim.compress.reparam as reparam

    monkeypatch.undo()
    three = "onnx,torchscript,openvino"
    export(_model(), tmp_path, formats=three, imgsz=IMGSZ, verify=False)
    on_disk = []

    def killed(*args, **kwargs):  # the report a kill -9 at this moment would leave
        on_disk.append(set(json.loads((tmp_path / "export_report.json").read_text())["formats"]))
        raise SystemExit

    monkeypatch.setattr(reparam, "reparameterize", killed)  # runs before any format begins
    with pytest.raises(SystemExit):
        export(_model(), tmp_path, formats=three, imgsz=IMGSZ, verify=False)
    assert on_disk[-1] == {"onnx", "torchscript", "openvino"}
    monkeypatch.undo()
    monkeypatch.setitem(EXPORTERS, "onnx", dataclasses.replace(EXPORTERS["onnx"], export=killed))
    with pytest.raises(SystemExit):
        export(_model(), tmp_path, formats=three, imgsz=IMGSZ, verify=False)
    assert on_disk[-1] == {"torchscript", "openvino"}  # onnx's files are being replaced


def test_fp32_and_fp16_openvino_in_one_folder_both_stay_in_the_report(tmp_path):
    fp32 = tmp_path / "model_openvino" / "model.xml"
    fp32.parent.mkdir()
    fp32.write_text("<net/>")  # an earlier FP32 export's file
    earlier = _report(dynamic=False, half=False, formats={})
    earlier["formats"]["openvino"] = {"path": str(fp32), "passed": True}
    (tmp_path / "export_report.json").write_text(json.dumps(earlier))
    res = export(_model(), tmp_path, formats=["openvino"], imgsz=IMGSZ, half=True, verify=False)
    formats = json.loads((tmp_path / "export_report.json").read_text())["formats"]
    assert set(formats) == {"openvino", "openvino_fp32"}
    assert formats["openvino"]["path"] == str(res.artifacts["openvino"]) != str(fp32)
    assert formats["openvino_fp32"]["path"] == str(fp32)
    assert formats["openvino_fp32"]["exported_with"]["half"] is False
    # FP32 again: written over the old FP32 file, and the FP16 one is the other variant now
    res = export(_model(), tmp_path, formats=["openvino"], imgsz=IMGSZ, verify=False)
    formats = json.loads((tmp_path / "export_report.json").read_text())["formats"]
    assert set(formats) == {"openvino", "openvino_fp16"}
    assert formats["openvino"]["path"] == str(res.artifacts["openvino"]) == str(fp32)
    assert formats["openvino_fp16"]["exported_with"]["half"] is True


def test_formats_as_one_string_and_a_detectors_own_size(tmp_path):
    m = _model()
    m.imgsz = IMGSZ  # as load_checkpoint sets it
    res = export(m, tmp_path, formats="onnx", verify=False)
    assert set(res.report["formats"]) == {"onnx"} and res.report["imgsz"] == IMGSZ
    with pytest.raises(ConfigError, match="imgsz='64' must be an integer"):
        export(m, tmp_path, formats="onnx", imgsz="64")
    # names are taken in any case, as a user types them (--format ONNX,OpenVINO)
    res = export(m, tmp_path / "upper", formats="ONNX", verify=False)
    assert set(res.report["formats"]) == {"onnx"} and (tmp_path / "upper" / "model.onnx").is_file()
    with pytest.raises(ConfigError, match=r"unknown export format\(s\) \['tflite'\]"):
        export(m, tmp_path, formats=["Onnx", "TFLite"])


def test_a_half_precision_detector_exports_from_an_fp32_copy(tmp_path):
    # readied for GPU inference: the FP32 probe images failed in its first conv
    m = _model().half()
    res = export(m, tmp_path, formats="onnx", imgsz=IMGSZ)
    assert res.report["formats"]["onnx"]["passed"]
    assert next(m.parameters()).dtype == torch.float16  # the caller's model is untouched


def test_nms_needs_onnx_and_a_static_batch(tmp_path):
    # named as the Python call and the command line spell them, as --half's refusal is
    want = r"^nms=True \(--nms\) needs a static batch .*: drop dynamic=True \(--dynamic\)$"
    with pytest.raises(ConfigError, match=want):
        export(_model(), tmp_path, formats=["onnx"], imgsz=IMGSZ, nms=True, dynamic=True)
    with pytest.raises(ConfigError, match=r"^nms=True \(--nms\) needs the onnx format"):
        export(_model(), tmp_path, formats=["torchscript"], imgsz=IMGSZ, nms=True)


def test_triton_repository(dynamic_export):
    _, _, res = dynamic_export
    cfg_path = res.artifacts["triton"]
    cfg = parse_config_pbtxt(cfg_path.read_text())
    assert cfg["name"] == "model" and cfg["platform"] == "onnxruntime_onnx"
    assert cfg["max_batch_size"] == TRITON_MAX_BATCH
    assert cfg["input"] == [{"name": "images", "data_type": "TYPE_FP32", "dims": [3, IMGSZ, IMGSZ]}]
    assert cfg["output"] == [{"name": "preds", "data_type": "TYPE_FP32", "dims": [ANCHORS, 7]}]
    assert cfg["dynamic_batching"]["preferred_batch_size"] == [4, 8]
    # KIND_AUTO: on the GPUs of a GPU server, else on the CPU (KIND_CPU pinned it to the CPU)
    assert cfg["instance_group"] == [{"count": 1, "kind": "KIND_AUTO"}]
    model = onnx.load(cfg_path.parent / "1" / "model.onnx")
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # Triton batches
    assert res.report["formats"]["triton"]["config_checked"]
    # the artifact export reports (config.pbtxt), or the model's folder, runs as its ONNX
    from yoloslim.runtime.backends import check_artifact

    served = cfg_path.parent / "1" / "model.onnx"
    assert check_artifact(cfg_path) == check_artifact(cfg_path.parent) == served
    assert load_backend(cfg_path).kind == "onnxruntime"
    import shutil

    import yoloslim as ys

    # sized as export sized it, config and 1/ (audit27 info L4: the ONNX alone)
    assert ys.describe(cfg_path)["size_mb"] == res.report["formats"]["triton"]["size_mb"]
    # an emptied config is not described as "name None" (audit27 info M2)

    broken = cfg_path.parent.parent / "broken"
    shutil.copytree(cfg_path.parent, broken)
    (broken / "config.pbtxt").write_text("")
    with pytest.raises(ModelError, match=r"broken/config.pbtxt: not a readable Triton config"):
        ys.describe(broken / "config.pbtxt")
    (broken / "config.pbtxt").unlink()  # and gone: the folder is named as a Triton model's
    with pytest.raises(ModelError, match=r"a Triton model folder without its config.pbtxt"):
        ys.describe(broken)
    shutil.rmtree(broken)


def test_a_named_triton_model_joins_the_repository(dynamic_export, tmp_path):
    out = tmp_path / "exp"
    shutil.copytree(dynamic_export[1] / "triton", out / "triton")
    with pytest.raises(ConfigError, match=r"triton_name \(--triton-name\): '\.\./x' is not"):
        export(_model(), out, formats="triton", imgsz=IMGSZ, triton_name="../x")
    with pytest.raises(ConfigError, match=r"triton_max_batch \(--triton-max-batch\): 300 must"):
        export(_model(), out, formats="triton", imgsz=IMGSZ, triton_max_batch=300)
    res = export(
        _model(), out, formats="triton", imgsz=IMGSZ, triton_name="det-v2", triton_max_batch=4
    )
    cfg_path = res.artifacts["triton"]
    assert cfg_path == out / "triton" / "det-v2" / "config.pbtxt"
    cfg = parse_config_pbtxt(cfg_path.read_text())
    assert cfg["name"] == "det-v2" and cfg["max_batch_size"] == 4
    assert cfg["dynamic_batching"]["preferred_batch_size"] == [4]  # 8 would not fit
    assert res.report["formats"]["triton"]["passed"]
    assert (out / "triton" / "model" / "config.pbtxt").is_file()  # the first model stays
    # each model of the repository keeps its own report entry, by name, however many join
    export(_model(), out, formats="triton", imgsz=IMGSZ, triton_name="third", verify=False)
    formats = json.loads((out / "export_report.json").read_text())["formats"]
    assert formats["triton"]["path"] == str(out / "triton" / "third" / "config.pbtxt")
    assert formats["triton:det-v2"]["path"] == str(cfg_path)
    # exported by a call without --dynamic, but a Triton model's batch axis is dynamic
    assert formats["triton:det-v2"]["exported_with"]["dynamic"] is True
    assert not any(k.startswith("triton_") for k in formats)  # no "fp32 variant" of Triton


@pytest.mark.skipif(not HAVE_COREML, reason="coremltools not installed (extra [coreml])")
def test_coreml_package_interface(dynamic_export):
    _, _, res = dynamic_export
    entry = res.report["formats"]["coreml"]
    assert res.artifacts["coreml"].is_dir()
    if platform.system() != "Darwin":  # only the interface was checked: not "verified"
        assert entry["passed"] is None and "passed: null" in entry["verified"]
        assert "max_abs_diff" not in entry
    else:
        assert entry["passed"] is True
    assert entry["note"] == "coreml keeps a batch of 1 (dynamic does not apply to it)"
    # info describes the package from its spec; the runtimes refuse it by name
    from yoloslim.runtime.describe import describe

    assert not (res.artifacts["coreml"] / "executorch_debug_handle_mapping.json").exists()
    manifest = res.artifacts["coreml"] / "Manifest.json"
    before = (manifest.read_bytes(), manifest.stat().st_mtime_ns)
    d = describe(res.artifacts["coreml"])
    # read, not written: coremltools' load_spec rewrote the manifest (info is read-only)
    assert (manifest.read_bytes(), manifest.stat().st_mtime_ns) == before
    assert (d["kind"], d["imgsz"], d["precision"], d["end_to_end"]) == (
        "coreml",
        IMGSZ,
        "fp32",
        False,
    )
    assert d["inputs"] == [{"name": "images", "shape": [1, 3, IMGSZ, IMGSZ], "dtype": "float32"}]
    assert d["nc"] == len(d["names"]) == 3  # outputs (1, ANCHORS, 7): 4 box values + 3
    with pytest.raises(ModelError, match=r"CoreML package runs on Apple devices only"):
        load_backend(res.artifacts["coreml"])
    assert entry["interface"] == {
        "inputs": {"images": [1, 3, IMGSZ, IMGSZ]},
        "outputs": {"preds": [1, ANCHORS, 7]},
    }


def test_coreml_checks_only_the_interface_where_its_runtime_cannot_load(monkeypatch):
    # a Mac whose coremltools has no native runtime: predict raised a bare Exception there,
    # and the export was called failed ("only supported on macOS") and thrown away
    import builtins
    import sys

    from yoloslim.export import coreml

    monkeypatch.setattr(coreml.platform, "system", lambda: "Linux")
    assert coreml._no_predictions() == "coremltools cannot run predictions off macOS"
    monkeypatch.setattr(coreml.platform, "system", lambda: "Darwin")
    real_import = builtins.__import__

    def no_runtime(name, *args, **kwargs):
        if name == "coremltools.libcoremlpython":
            raise ImportError("No module named 'coremltools.libcoremlpython'")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "coremltools.libcoremlpython", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_runtime)
    assert coreml._no_predictions() == (
        "coremltools could not load its runtime here "
        "(No module named 'coremltools.libcoremlpython')"
    )


def test_val_gives_the_same_metrics_for_every_artifact(dynamic_export, tmp_path):
    from yoloslim.data.synth import synthesize
    from yoloslim.eval.val import validate

    ckpt, _, res = dynamic_export
    data = synthesize(tmp_path / "d", images=6, imgsz=IMGSZ, classes=3, seed=1, val_fraction=0.5)
    ref = validate(ckpt, data)
    for fmt in ("onnx", "openvino", "torchscript"):
        got = validate(res.artifacts[fmt], data)
        assert got["runtime"] == load_backend(res.artifacts[fmt]).kind
        assert abs(got["map"] - ref["map"]) <= 0.002, fmt


@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
def test_a_mismatch_is_an_error(dynamic_export, fmt):
    _, _, res = dynamic_export
    other = randomize_bn(build_model("damo-nano", names=NAMES), seed=9).eval()
    with pytest.raises(ExportError, match="differs from PyTorch beyond the fp32 tolerance"):
        verify_artifact(res.artifacts[fmt], other, IMGSZ)


def test_swapped_or_zeroed_class_scores_fail_the_check_where_absolute_scores_are_tiny(
    dynamic_export, tmp_path
):
    # an untrained head scores every class near its prior (0.01): the absolute score
    # tolerance cannot see a graph that swaps or zeroes them, their logarithms can
    from onnx import helper, numpy_helper

    _, _, res = dynamic_export
    with torch.no_grad():
        ref = res.model(probe_images(IMGSZ))
    assert ref[..., 4:].max() < 5 * FP32.score_atol + 0.01  # tiny scores: the hard case
    nc = len(NAMES)
    for kind in ("swapped", "zeroed"):
        model = onnx.load(res.artifacts["onnx"])
        graph = model.graph
        for node in graph.node:
            node.output[:] = ["raw" if o == "preds" else o for o in node.output]
        if kind == "swapped":
            idx = np.array([0, 1, 2, 3, *range(3 + nc, 3, -1)], dtype=np.int64)
            graph.initializer.append(numpy_helper.from_array(idx, "idx"))
            graph.node.append(helper.make_node("Gather", ["raw", "idx"], ["preds"], axis=2))
        else:
            keep = np.array([1, 1, 1, 1] + [0] * nc, dtype=np.float32)
            graph.initializer.append(numpy_helper.from_array(keep, "keep"))
            graph.node.append(helper.make_node("Mul", ["raw", "keep"], ["preds"]))
        path = tmp_path / f"{kind}.onnx"
        onnx.save(model, path)
        with pytest.raises(ExportError, match=r"log scores"):
            verify_artifact(path, res.model, IMGSZ)
    report = verify_artifact(res.artifacts["onnx"], res.model, IMGSZ)  # the real one passes
    assert report["max_abs_diff_log_scores"] <= FP32.score_log_atol
    # near 1, the logarithm differs no more than the score: 0.99 computed as 1 in half
    # precision (4.6 apart in log-odds, clamped at 1e-4) is within the half tolerance
    from yoloslim.export.verify import compare

    ref = torch.tensor([[[0.0, 0.0, 8.0, 8.0, 0.99, 0.01]]])
    got = ref.clone()
    got[..., 4] = 1.0
    assert compare(got, ref, HALF)["passed"] and not compare(got, ref, FP32)["passed"]


def test_unknown_format_and_duplicate_registration(dynamic_export, tmp_path):
    with pytest.raises(ConfigError, match="unknown export format.*tflite"):
        export(dynamic_export[0], tmp_path, formats=["tflite"])
    # --half where no format stores FP16 weights would silently give FP32 artifacts
    with pytest.raises(ConfigError, match=r"half=True \(--half\): none of onnx, torchscript"):
        export(dynamic_export[0], tmp_path, formats=["onnx", "torchscript"], half=True)
    with pytest.raises(ConfigError, match="already registered"):
        register_exporter(Exporter("onnx", EXPORTERS["onnx"].export, EXPORTERS["onnx"].verify))


def test_missing_coreml_extra_names_it(dynamic_export, tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "coremltools", None)  # import now fails
    with pytest.raises(ExportError, match=r"coremltools.*pip install 'yoloslim\[coreml\]'"):
        export(dynamic_export[0], tmp_path / "out", formats=["onnx", "coreml"])
    assert not (tmp_path / "out").exists()  # refused before any work


def test_a_missing_runtime_is_named_with_the_file_and_its_extra(static_export, monkeypatch):
    from yoloslim.runtime.describe import describe

    _, res = static_export
    onnx_file, xml = res.artifacts["onnx"], res.artifacts["openvino"]
    monkeypatch.setitem(__import__("sys").modules, "onnxruntime", None)
    with pytest.raises(ExportError, match=r"model.onnx: running it needs onnxruntime.*\[onnx\]"):
        load_backend(onnx_file)
    monkeypatch.setitem(__import__("sys").modules, "openvino", None)
    for call, verb in ((load_backend, "running"), (describe, "reading")):
        with pytest.raises(ExportError, match=rf"\.xml: {verb} it needs openvino.*\[openvino\]"):
            call(xml)


def test_torchscript_graph_takes_its_device_from_the_input(dynamic_export):
    # torch.jit.trace records device= arguments as constants: a file traced on the CPU then
    # failed on CUDA ("found at least two devices"; benchmarks/cuda_check.py on an H200)
    _, out, res = dynamic_export
    graph = str(torch.jit.load(str(res.artifacts["torchscript"])).inlined_graph)
    assert "cumsum" in graph  # the anchors are built from the maps themselves
    assert '"cpu"' not in graph and "cuda" not in graph


def test_tensorrt_says_what_is_missing(dynamic_export, tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "tensorrt", None)
    monkeypatch.setitem(__import__("sys").modules, "onnxslim", None)  # an engine is from ONNX
    want = r"TensorRT needs tensorrt, onnxslim \(pip install 'yoloslim\[tensorrt\]'\)"
    with pytest.raises(ExportError, match=want):
        export(dynamic_export[0], tmp_path, formats=["engine"])
    if not torch.cuda.is_available():
        with pytest.raises(ExportError, match="CUDA device"):
            export(dynamic_export[0], tmp_path, formats=["engine"])


def test_a_data_yaml_as_the_model_is_named_a_data_yaml(tmp_path):
    data = tmp_path / "data.yaml"
    data.write_text("path: .\ntrain: images/train\nval: images/val\nnames: [a]\n")
    with pytest.raises(ModelError, match=r"data.yaml: is a dataset's data.yaml .* not a model"):
        export(data, tmp_path / "out", formats=["onnx"])
    arch = tmp_path / "arch.yaml"  # an architecture file is still told to train first
    arch.write_text("nc: 3\nbackbone: {}\n")
    with pytest.raises(ModelError, match=r"arch.yaml: is an architecture file .* train it first"):
        export(arch, tmp_path / "out", formats=["onnx"])
    assert not (tmp_path / "out").exists()


def test_bad_checkpoint_path(tmp_path):
    with pytest.raises(ModelError, match="missing.pt"):
        export(tmp_path / "missing.pt", tmp_path, formats=["onnx"])
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="corrupt.pt"):
        export(corrupt, tmp_path, formats=["onnx"])


def test_unwritable_output_folder(dynamic_export, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ExportError, match="output folder"):
        export(dynamic_export[0], blocker / "sub", formats=["onnx"])
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as root: a read-only folder is still writable")
        with pytest.raises(ExportError, match="not writable"):
            export(dynamic_export[0], locked, formats=["onnx"])
    finally:
        locked.chmod(0o755)


def test_load_backend_errors_name_the_path(tmp_path):
    p = tmp_path / "model.tflite"
    p.write_text("x")
    with pytest.raises(ModelError, match="model.tflite.*unknown artifact type"):
        load_backend(p)
    # info describes more kinds than the runtimes run, and lists them all
    from yoloslim.runtime.describe import describe

    with pytest.raises(ModelError, match=r"'\.xml'\], a CoreML \.mlpackage or a Triton"):
        describe(p)
    with pytest.raises(ModelError, match="nothere.onnx.*does not exist"):
        load_backend(tmp_path / "nothere.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(np.zeros(16, np.uint8).tobytes())
    with pytest.raises(ModelError, match="bad.onnx.*cannot load"):
        load_backend(bad)
    with pytest.raises(ConfigError, match="device="):
        load_backend(bad, device="tpu")


def test_the_nms_graph_is_refused_by_val_and_predict_by_name(static_export, tmp_path):
    # it returns detections, not the raw predictions they post-process: a traceback before
    from yoloslim.data.synth import synthesize
    from yoloslim.eval.val import validate
    from yoloslim.runtime import Predictor
    from yoloslim.runtime.backends import is_end_to_end

    out, _ = static_export
    e2e = out / "model_e2e.onnx"
    assert is_end_to_end(e2e) and not is_end_to_end(out / "model.onnx")
    data = synthesize(tmp_path / "d", images=4, imgsz=IMGSZ, classes=3, seed=1, val_fraction=0.5)
    with pytest.raises(ModelError, match="has NMS in its graph .* val takes the model without"):
        validate(e2e, data)
    with pytest.raises(ModelError, match="has NMS in its graph .* predict takes"):
        Predictor(e2e)
    # converted to OpenVINO it keeps its output names, and stays refused; quantize refuses it
    import openvino as ov

    from yoloslim.compress.quantize import QuantConfig, quantize
    from yoloslim.export.common import onnx_metadata
    from yoloslim.runtime.describe import describe

    ir = ov.convert_model(str(e2e))
    for k, v in onnx_metadata(e2e).items():  # as quantize's float IR of it carried them
        ir.set_rt_info(v, ["yoloslim", k])
    ov.save_model(ir, str(tmp_path / "e2e.xml"))
    assert is_end_to_end(tmp_path / "e2e.xml") and describe(tmp_path / "e2e.xml")["end_to_end"]
    with pytest.raises(ModelError, match="has NMS in its graph .* predict takes"):
        Predictor(tmp_path / "e2e.xml")
    with pytest.raises(ModelError, match=r"has NMS in its graph \(export --nms\).*quantize the"):
        quantize(e2e, data, config=QuantConfig(calib=2), out=tmp_path / "q")
    assert not (tmp_path / "q").exists()


def test_a_format_that_fails_its_check_does_not_cost_the_others(tmp_path, monkeypatch):
    # the first mismatch used to stop the export: the formats after it were never written
    import dataclasses

    def disagrees(path, ctx):
        raise ExportError(f"{path}: differs from PyTorch (a test's stand-in)")

    onnx_fmt = dataclasses.replace(EXPORTERS["onnx"], verify=disagrees)
    monkeypatch.setitem(EXPORTERS, "onnx", onnx_fmt)
    with pytest.raises(ExportError, match=r"onnx: .*stand-in.*torchscript passed and stay"):
        export(_model(), tmp_path, formats=["onnx", "torchscript"], imgsz=IMGSZ)
    formats = json.loads((tmp_path / "export_report.json").read_text())["formats"]
    assert formats["onnx"]["passed"] is False and "stand-in" in formats["onnx"]["error"]
    assert formats["torchscript"]["passed"] and (tmp_path / "model.torchscript").is_file()


def test_a_detector_whose_names_miscount_its_classes_is_refused(tmp_path):
    model = _model()
    model.names = model.names[:1]
    with pytest.raises(ConfigError, match=r"model.names has 1 entries but the model predicts"):
        export(model, tmp_path, formats=["onnx"], imgsz=IMGSZ)
    assert not (tmp_path / "model.onnx").exists()


def test_a_format_that_cannot_be_written_is_recorded_and_the_others_stay(tmp_path):
    # a file where the Triton repository goes: the ONNX written and checked before it kept no
    # report entry (the error left the loop before the report was written)
    (tmp_path / "triton").write_text("a file of the user's")
    (tmp_path / "model_openvino").write_text("another")  # OpenVINO's folder: [Errno 17] before
    way = "is a file in the way of the output; move it away"
    with pytest.raises(ExportError, match=r"triton: .*onnx passed and stay") as err:
        export(_model(), tmp_path, formats=["onnx", "triton", "openvino"], imgsz=IMGSZ)
    said = str(err.value)
    assert f"triton: {tmp_path / 'triton'} {way}" in said  # "[Errno 20] Not a directory"
    assert f"openvino: {tmp_path / 'model_openvino'} {way}" in said
    formats = json.loads((tmp_path / "export_report.json").read_text())["formats"]
    assert formats["onnx"]["passed"] and (tmp_path / "model.onnx").is_file()
    assert formats["triton"] == {
        "path": None,
        "passed": False,
        "error": formats["triton"]["error"],
    }
    assert (tmp_path / "triton").read_text() == "a file of the user's"
    assert (tmp_path / "model_openvino").read_text() == "another"


def test_an_nms_graph_that_cannot_be_written_is_its_own_failure_not_the_onnxs(tmp_path):
    (tmp_path / "model_e2e.onnx").mkdir()  # a folder in the way of the NMS graph
    with pytest.raises(ExportError, match=r"onnx_nms: .*model_e2e.onnx.*onnx passed and stay"):
        export(_model(), tmp_path, formats=["onnx"], imgsz=IMGSZ, nms=True)
    formats = json.loads((tmp_path / "export_report.json").read_text())["formats"]
    assert formats["onnx"]["passed"] and (tmp_path / "model.onnx").is_file()
    assert formats["onnx_nms"]["passed"] is False and formats["onnx_nms"]["path"] is None


def test_an_onnx_that_fails_its_check_keeps_the_earlier_nms_graph_listed_as_earlier(
    tmp_path, monkeypatch
):
    import dataclasses

    export(_model(), tmp_path, formats=["onnx"], imgsz=IMGSZ, nms=True)

    def disagrees(path, ctx):
        raise ExportError(f"{path}: differs from PyTorch (a test's stand-in)")

    monkeypatch.setitem(EXPORTERS, "onnx", dataclasses.replace(EXPORTERS["onnx"], verify=disagrees))
    other = _model(spread_scores=True)
    with pytest.raises(ExportError, match="stand-in"):
        export(other, tmp_path, formats=["onnx"], imgsz=IMGSZ, nms=True)
    formats = json.loads((tmp_path / "export_report.json").read_text())["formats"]
    assert (tmp_path / "model_e2e.onnx").is_file()  # not rewritten from a failed ONNX
    assert "exported_with" in formats["onnx_nms"]  # and said to be the earlier export's


def test_artifacts_carry_the_checkpoints_history(tmp_path):
    history = [{"stage": "train", "out": "/runs/t"}, {"stage": "prune", "out": "/runs/p"}]
    ckpt = save_checkpoint(tmp_path / "m.pt", _model(), imgsz=IMGSZ, meta={"history": history})
    res = export(ckpt, tmp_path / "e", formats=["onnx", "torchscript"], verify=False)
    meta = {p.key: p.value for p in onnx.load(res.artifacts["onnx"]).metadata_props}
    assert json.loads(meta["history"]) == history
    extra = {"config.json": ""}
    torch.jit.load(str(res.artifacts["torchscript"]), _extra_files=extra)
    assert json.loads(json.loads(extra["config.json"])["history"]) == history


def _standalone_input(rgb: np.ndarray, size: int, spec: dict):
    """The input a deployment without yoloslim builds from the artifact's ``preprocess``
    metadata: numpy and PIL only, read off the spec (pad value, scale, centring)."""
    from PIL import Image

    h, w = rgb.shape[:2]
    r = min(size / w, size / h)
    # the size and source box exactly as spec["letterbox"] and the README write them
    assert spec["letterbox"]["size"].startswith("max(1, floor(width * r + 0.001))")
    nw, nh = max(1, int(np.floor(w * r + 0.001))), max(1, int(np.floor(h * r + 0.001)))
    box = (0, 0, min(nw / r, w), min(nh / r, h))
    im = Image.fromarray(rgb).resize((nw, nh), Image.Resampling.BILINEAR, box=box)
    left, top = (size - nw) // 2, (size - nh) // 2
    canvas = np.full((size, size, 3), spec["letterbox"]["pad_value"], np.uint8)
    canvas[top : top + nh, left : left + nw] = np.asarray(im)
    assert spec["scale"] == "1/255" and spec["color"] == "RGB" and spec["layout"] == "NCHW"
    return (canvas.transpose(2, 0, 1)[None] / 255).astype(np.float32), r, (left, top)


def test_a_deployment_without_yoloslim_reproduces_predict_from_the_metadata(static_export):
    import onnxruntime as ort

    from yoloslim.runtime import Predictor

    out, res = static_export
    meta = {p.key: p.value for p in onnx.load(res.artifacts["onnx_nms"]).metadata_props}
    assert meta["output"].startswith("num_dets") and meta["nms_multi_label"] == "false"
    spec = json.loads(meta["preprocess"])
    assert spec["letterbox"]["pad_value"] == 114 and "preprocess" in meta["input"]
    rgb = np.random.default_rng(0).integers(0, 256, (88, 90, 3), dtype=np.uint8)  # wide: padded
    # by a pixel: this model's boxes are at least 6 px, so none is wholly in the padding, and
    # clipped to the input or to the image they keep the same detections here (on a wider
    # padding the graph, which clips to the input, may keep two boxes predict sees as one)
    x, r, (left, top) = _standalone_input(rgb, IMGSZ, spec)
    session = ort.InferenceSession(str(res.artifacts["onnx_nms"]))
    n, boxes, scores, classes = session.run(None, {"images": x})
    boxes = (boxes[0][: n[0]] - [left, top, left, top]) / r
    pred = Predictor(res.artifacts["onnx"], conf=0.25, iou=0.65).predict(rgb)[0]
    assert n[0] == len(pred.scores) > 3  # the same detections, one class per box
    np.testing.assert_allclose(scores[0][: n[0]], pred.scores, atol=1e-5)
    np.testing.assert_array_equal(classes[0][: n[0]], pred.classes)
    np.testing.assert_allclose(boxes.clip(0, [90, 88, 90, 88]), pred.boxes, atol=1e-3)


def test_the_nms_graph_takes_its_thresholds_from_export(static_export, tmp_path):
    out, res = static_export
    with pytest.raises(ConfigError, match=r"nms_iou=1.5 must be in \(0, 1\]"):
        export(_model(spread_scores=True), tmp_path, imgsz=IMGSZ, nms=True, nms_iou=1.5)
    with pytest.raises(ConfigError, match=r"nms_iou=1.0: the graph's NonMaxSuppression threshold"):
        export(_model(spread_scores=True), tmp_path, imgsz=IMGSZ, nms=True, nms_iou=1.0)
    few = export(
        _model(spread_scores=True),
        tmp_path,
        imgsz=IMGSZ,
        nms=True,
        nms_conf=0.3,
        nms_iou=0.9,
        nms_max_det=2,
    )
    meta = {p.key: p.value for p in onnx.load(few.artifacts["onnx_nms"]).metadata_props}
    assert (meta["nms_conf"], meta["nms_iou"], meta["nms_max_det"]) == ("0.3", "0.9", "2")
    entry = few.report["formats"]["onnx_nms"]
    assert entry["passed"] and (entry["conf"], entry["iou"], entry["max_det"]) == (0.3, 0.9, 2)
    counts = [r["detections"] for r in entry["runtimes"]["onnxruntime"]]
    assert max(counts) == 2, counts  # capped by nms_max_det


def test_describe_reads_each_artifact_without_running_it(dynamic_export, static_export, tmp_path):
    from yoloslim.runtime.describe import describe

    ckpt, out, res = dynamic_export
    d = describe(ckpt)
    assert (d["kind"], d["names"], d["nc"], d["imgsz"]) == ("checkpoint", NAMES, 3, IMGSZ)
    assert d["params"] == sum(p.numel() for p in _model().parameters())
    assert 0 < d["params_deploy"] < d["params"] and d["gflops"] > 0
    assert d["resumable"] is None and d["arch"] == "damo-nano"
    for fmt, kind in (("onnx", "onnx"), ("openvino", "openvino"), ("torchscript", "torchscript")):
        d = describe(res.artifacts[fmt])
        assert (d["kind"], d["names"], d["imgsz"], d["precision"]) == (kind, NAMES, IMGSZ, "fp32")
        assert not d["end_to_end"] and d["metadata"]["strides"] == [8, 16, 32]
        assert d["size_mb"] == res.report["formats"][fmt]["size_mb"]
    onnx_d = describe(res.artifacts["onnx"])
    assert onnx_d["inputs"] == [
        {"name": "images", "shape": onnx_d["inputs"][0]["shape"], "dtype": "float32"}
    ]
    assert isinstance(onnx_d["inputs"][0]["shape"][0], str)  # the dynamic batch axis, by name
    assert onnx_d["inputs"][0]["shape"][1:] == [3, IMGSZ, IMGSZ]
    assert onnx_d["outputs"][0]["shape"][1:] == [ANCHORS, 4 + len(NAMES)]
    ov_d = describe(res.artifacts["openvino"])  # said as the ONNX's is (audit52 info F4)
    assert [(v["name"], v["dtype"]) for v in ov_d["inputs"]] == [("images", "float32")]
    assert ov_d["inputs"][0]["shape"][0] == "?"  # an IR keeps no axis names
    triton = describe(res.artifacts["triton"].parent)  # the model's folder
    assert triton["kind"] == "triton" and triton["triton"]["max_batch_size"] == TRITON_MAX_BATCH
    # the static export: FP16 OpenVINO weights, and the NMS graph with its settings
    out, sres = static_export
    assert describe(sres.artifacts["openvino"])["precision"] == "fp16"
    e2e = describe(sres.artifacts["onnx_nms"])
    assert e2e["end_to_end"] and e2e["nms"] == {
        "conf": 0.25,
        "iou": 0.65,
        "max_det": 300,
        "multi_label": False,
    }
    assert [o["name"] for o in e2e["outputs"]] == ["num_dets", "boxes", "scores", "classes"]
    # a file that is not yoloslim's says so
    plain = tmp_path / "plain.onnx"
    model = onnx.load(res.artifacts["onnx"])
    del model.metadata_props[:]
    onnx.save(model, plain)
    with pytest.raises(ModelError, match=r"plain.onnx: no yoloslim metadata"):
        describe(plain)
    (tmp_path / "junk.onnx").write_bytes(b"not onnx")
    with pytest.raises(ModelError, match=r"junk.onnx: not a readable ONNX file"):
        describe(tmp_path / "junk.onnx")


def test_ov_precision_asks_openvino_for_f32_and_only_openvino(dynamic_export, tmp_path):
    """predict/val --ov-precision f32: the IR computes as the checkpoint does, where the
    plugin's default (bf16 on AVX512-BF16/AMX CPUs) may move detections near the threshold."""
    from yoloslim.data.synth import synthesize
    from yoloslim.eval.val import validate
    from yoloslim.runtime import Predictor

    _, out, res = dynamic_export
    xml, onnx_path = res.artifacts["openvino"], res.artifacts["onnx"]
    pred = Predictor(xml, ov_precision="f32")
    assert pred.backend.precision == "fp32"
    # the precision columns' spelling is taken too (review F9: fp32 was refused)
    assert load_backend(xml, hint="fp32").compiled_hint == "f32"
    with pytest.raises(ConfigError, match=r"expected one of \['f32', 'bf16', 'f16'\] \(or fp32"):
        load_backend(xml, hint="f64")
    x = probe_images(IMGSZ, batch=1)
    ref = load_backend(onnx_path)(x)
    torch.testing.assert_close(pred.backend(x), ref, atol=1e-3, rtol=1e-4)
    with pytest.raises(
        ConfigError, match=r"ov_precision='f64' \(--ov-precision\): expected one of"
    ):
        Predictor(xml, ov_precision="f64")
    with pytest.raises(ConfigError, match=r"applies to OpenVINO IR \(\.xml\), not model\.onnx"):
        Predictor(onnx_path, ov_precision="f32")
    data = synthesize(tmp_path / "d", images=4, imgsz=IMGSZ, classes=3, seed=1, val_fraction=0.5)
    with pytest.raises(ConfigError, match=r"applies to OpenVINO IR \(\.xml\), not Detector"):
        validate(_model(), data, ov_precision="f32")


def _failing_check(monkeypatch, fmt: str, seen: list) -> None:
    """``fmt``'s check fails (as a converter that went wrong would make it), noting the path
    it was given and whether the artifact's final name already held what it checked."""
    import dataclasses

    def disagrees(path, ctx):
        seen.append(path)
        raise ExportError(f"{path}: differs from PyTorch (a test's stand-in)")

    monkeypatch.setitem(EXPORTERS, fmt, dataclasses.replace(EXPORTERS[fmt], verify=disagrees))


def _digest(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_reexport_that_fails_its_check_keeps_the_earlier_artifact(tmp_path, monkeypatch):
    # the failed file used to replace the verified one, and val/predict then used it
    first = export(_model(), tmp_path, formats=["onnx", "triton"], imgsz=IMGSZ)
    onnx_file, config = first.artifacts["onnx"], first.artifacts["triton"]
    served = config.parent / "1" / "model.onnx"
    before = {p: _digest(p) for p in (onnx_file, config, served)}
    seen: list = []
    for fmt in ("onnx", "triton"):
        _failing_check(monkeypatch, fmt, seen)
    with pytest.raises(ExportError, match="stand-in") as err:
        export(_model(spread_scores=True), tmp_path, formats=["onnx", "triton"], imgsz=IMGSZ)
    assert {p: _digest(p) for p in before} == before  # byte-identical
    assert len(seen) == 2 and onnx_file not in seen and config not in seen  # checked staged
    said = str(err.value)
    assert f"onnx: {onnx_file}: differs" in said  # the final name, not the staging folder's
    assert f"the artifact was discarded: {onnx_file} stays as it was" in said
    assert f"the earlier export's {onnx_file}, {config} stays as it was" in said
    formats = json.loads((tmp_path / "export_report.json").read_text())["formats"]
    for fmt, path in (("onnx", onnx_file), ("triton", config)):
        entry = formats[fmt]
        assert entry["passed"] is False and "stand-in" in entry["error"]
        assert entry["path"] is None and entry["earlier"]["path"] == str(path)
        assert entry["earlier"]["passed"] is True and entry["earlier"]["exported_with"]["imgsz"]
    leftovers = [p for p in tmp_path.rglob(".*")]
    assert not leftovers  # no staging folder, no temp file
    # a later export still lists the earlier, verified files as the earlier export's
    monkeypatch.undo()
    res = export(_model(), tmp_path, formats=["torchscript"], imgsz=IMGSZ, verify=False)
    assert res.report["formats"]["onnx"]["path"] == str(onnx_file)


def test_a_first_export_that_fails_its_check_leaves_nothing_under_the_name(tmp_path, monkeypatch):
    seen: list = []
    for fmt in ("onnx", "openvino", "torchscript", "triton"):
        _failing_check(monkeypatch, fmt, seen)
    with pytest.raises(ExportError, match="stand-in") as err:
        export(
            _model(), tmp_path, formats=["onnx", "openvino", "torchscript", "triton"], imgsz=IMGSZ
        )
    assert len(seen) == 4 and "nothing was written to" in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export_report.json"]
    formats = json.loads((tmp_path / "export_report.json").read_text())["formats"]
    assert {f: (e["path"], e["passed"]) for f, e in formats.items()} == {
        f: (None, False) for f in ("onnx", "openvino", "torchscript", "triton")
    }
    # without the check the same export is written, unchecked, as before
    res = export(_model(), tmp_path, formats=["onnx"], imgsz=IMGSZ, verify=False)
    assert res.artifacts["onnx"].is_file() and not seen[4:]
    assert res.report["formats"]["onnx"]["verified"] is False


def test_an_nms_graph_that_fails_its_check_keeps_the_earlier_one(tmp_path, monkeypatch):
    from yoloslim.export import api

    first = export(_model(spread_scores=True), tmp_path, formats=["onnx"], imgsz=IMGSZ, nms=True)
    e2e = first.artifacts["onnx_nms"]
    before = _digest(e2e)

    def disagrees(path, _ctx, *, plain):
        raise ExportError(f"{path}: NMS disagrees (a test's stand-in)")

    monkeypatch.setattr(api, "_verify_nms", disagrees)
    with pytest.raises(ExportError, match=r"onnx_nms: .*stand-in.*onnx passed and stay"):
        export(_model(), tmp_path, formats=["onnx"], imgsz=IMGSZ, nms=True, nms_conf=0.3)
    assert _digest(e2e) == before
    entry = json.loads((tmp_path / "export_report.json").read_text())["formats"]["onnx_nms"]
    assert entry["passed"] is False and entry["earlier"]["path"] == str(e2e)


def test_export_refuses_to_replace_a_users_own_files(dynamic_export, tmp_path):
    from yoloslim.export.common import made_by_yoloslim

    _, _, res = dynamic_export
    onnx_file = tmp_path / "model.onnx"
    onnx_file.write_text("my precious notes")
    with pytest.raises(ConfigError, match=rf"^{onnx_file} is not a yoloslim artifact .*move it"):
        export(_model(), tmp_path, formats=["onnx", "torchscript"], imgsz=IMGSZ)
    assert onnx_file.read_text() == "my precious notes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # before any work
    onnx_file.unlink()
    record = tmp_path / "export_report.json"
    record.write_text('{"formats": {}}')  # a JSON file with a "formats" key: not a report
    with pytest.raises(ConfigError, match=rf"^{record} is not a yoloslim export report"):
        export(_model(), tmp_path, formats=["onnx"], imgsz=IMGSZ)
    assert record.read_text() == '{"formats": {}}' and not onnx_file.exists()
    # yoloslim's own artifacts are known by their metadata, read without their weights
    for fmt, path in res.artifacts.items():
        assert made_by_yoloslim(path if fmt != "triton" else path.parent / "1" / "model.onnx")
    model = onnx.load(res.artifacts["onnx"])
    del model.metadata_props[:]
    onnx.save(model, tmp_path / "plain.onnx")  # the same graph, another tool's metadata
    assert not made_by_yoloslim(tmp_path / "plain.onnx")
    assert not made_by_yoloslim(tmp_path / "export_report.json")


def test_triton_refuses_an_edited_config_and_other_versions(dynamic_export, tmp_path):
    import hashlib

    out = tmp_path / "exp"
    shutil.copytree(dynamic_export[1] / "triton", out / "triton")
    config = out / "triton" / "model" / "config.pbtxt"
    first, rest = config.read_text().split("\n", 1)
    assert first.startswith("# written by yoloslim export")  # a protobuf text comment
    assert first.endswith(hashlib.sha256(rest.encode()).hexdigest())
    assert parse_config_pbtxt(config.read_text())["name"] == "model"
    for edited in (
        config.read_text().replace("count: 1", "count: 4"),  # tuned by hand
        rest,  # a config of another tool: no first line of yoloslim's
    ):
        config.write_text(edited)
        with pytest.raises(ConfigError, match=rf"^{config} (was edited since|was not written)"):
            export(_model(), out, formats=["onnx", "triton"], imgsz=IMGSZ)
        assert config.read_text() == edited and not (out / "model.onnx").exists()
    config.write_text(f"{first}\n{rest}")
    (config.parent / "2").mkdir()  # Triton serves the latest version: 2, not a new 1
    with pytest.raises(ConfigError, match=r"holds version folder\(s\) 2: Triton serves"):
        export(_model(), out, formats=["triton"], imgsz=IMGSZ)
    (config.parent / "2").rmdir()
    (config.parent / "notes.txt").write_text("x" * 2**20)  # no part of the model's size
    res = export(_model(), out, formats=["triton"], imgsz=IMGSZ, verify=False)
    served = config.parent / "1" / "model.onnx"
    size = (config.stat().st_size + served.stat().st_size) / 2**20
    assert res.report["formats"]["triton"]["size_mb"] == round(size, 3)
    assert (config.parent / "notes.txt").stat().st_size == 2**20  # untouched


def test_flags_must_be_bools_and_sizes_have_a_ceiling(tmp_path, monkeypatch):
    for flag in ("dynamic", "half", "nms", "verify"):
        with pytest.raises(ConfigError, match=rf"^{flag}='no' must be True or False"):
            export(_model(), tmp_path / "a", formats=["onnx", "openvino"], **{flag: "no"})
    with pytest.raises(ConfigError, match=r"^imgsz=32000 must be <= 8192"):
        export(_model(), tmp_path / "a", formats=["onnx"], imgsz=32000)
    assert not (tmp_path / "a").exists()
    # a call that fails before it writes anything leaves no empty folder either

    def out_of_memory(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] (a test's stand-in)")

    monkeypatch.setattr("yoloslim.compress.reparam.reparameterize", out_of_memory)
    with pytest.raises(RuntimeError, match="stand-in"):
        export(_model(), tmp_path / "a" / "b", formats=["onnx"], imgsz=IMGSZ)
    assert not (tmp_path / "a").exists()  # nor its parent made for it


def test_a_wrong_graph_from_the_converter_is_caught_before_it_replaces_the_good_one(
    tmp_path, monkeypatch
):
    # a converter regression, as the audit's repro made one: two class columns swapped in
    # the graph the onnx format copies; the real check (log scores) refuses it while staged
    from onnx import helper, numpy_helper

    onnx_export = importlib.import_module("yoloslim.export.onnx")  # yoloslim.export: a function
    good = export(_model(), tmp_path, formats=["onnx"], imgsz=IMGSZ).artifacts["onnx"]
    before = _digest(good)
    real = onnx_export.onnx_file

    def swapped(ctx, *, dynamic):
        model = onnx.load(real(ctx, dynamic=dynamic))
        for node in model.graph.node:
            node.output[:] = ["raw" if o == "preds" else o for o in node.output]
        idx = np.array([0, 1, 2, 3, 5, 4, 6], dtype=np.int64)
        model.graph.initializer.append(numpy_helper.from_array(idx, "idx"))
        model.graph.node.append(helper.make_node("Gather", ["raw", "idx"], ["preds"], axis=2))
        path = ctx.scratch_path("swapped.onnx")
        onnx.save(model, path)
        return path

    monkeypatch.setattr(onnx_export, "onnx_file", swapped)
    with pytest.raises(ExportError, match=r"log scores.*the artifact was discarded"):
        export(_model(), tmp_path, formats=["onnx"], imgsz=IMGSZ)
    assert _digest(good) == before
