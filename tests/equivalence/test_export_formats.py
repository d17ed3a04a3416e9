"""Every export format against eager PyTorch, with the tolerances stated in export/verify.py."""

import json

import pytest
import torch
from torch import nn

from yoloslim.errors import ConfigError, ExportError, ModelError
from yoloslim.export import export
from yoloslim.export.triton import TRITON_MAX_BATCH, parse_config_pbtxt
from yoloslim.models import build_model
from yoloslim.models.checkpoint import save_checkpoint
from yoloslim.runtime import load_backend

IMGSZ = 64


def _model():
    torch.manual_seed(0)
    model = build_model("damo-nano", names=["a", "b", "c"])
    g = torch.Generator().manual_seed(3)
    for m in model.modules():  # non-trivial BN statistics so fusion has something to fold
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model.eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    ckpt = save_checkpoint(out / "model.pt", _model(), imgsz=IMGSZ)
    res = export(ckpt, out, formats=["onnx", "openvino", "torchscript", "triton"], dynamic=True)
    return ckpt, out, res


@pytest.mark.parametrize("fmt", ["onnx", "openvino", "torchscript", "triton"])
def test_each_format_matches_pytorch(exported, fmt):
    _, out, res = exported
    entry = res.report["formats"][fmt]
    assert entry["passed"] is True
    assert entry["max_abs_diff_boxes_px"] <= entry["tolerance"]["box_atol"] + 1e-3 * IMGSZ
    assert entry["max_abs_diff_scores"] <= entry["tolerance"]["score_atol"]
    on_disk = json.loads((out / "export_report.json").read_text())
    assert on_disk["formats"][fmt]["passed"] is True


def test_onnx_dynamic_batch_and_metadata(exported):
    _, _, res = exported
    backend = load_backend(res.artifacts["onnx"])
    assert backend.names == ["a", "b", "c"] and backend.imgsz == IMGSZ
    model = res.model
    for batch in (1, 3):
        x = torch.rand(batch, 3, IMGSZ, IMGSZ)
        with torch.no_grad():
            ref = model(x)
        out = backend(x)
        assert out.shape == ref.shape == (batch, ref.shape[1], 4 + 3)
        torch.testing.assert_close(out, ref, atol=1e-3, rtol=1e-3)


def test_openvino_fp16_within_half_tolerance(exported, tmp_path):
    ckpt, _, _ = exported
    res = export(ckpt, tmp_path, formats=["openvino"], half=True)
    entry = res.report["formats"]["openvino"]
    assert entry["passed"] and entry["tolerance"]["name"].startswith("half")
    full = load_backend(exported[2].artifacts["openvino"])
    assert (
        entry["size_mb"]
        < 0.6 * (full.path.stat().st_size + full.path.with_suffix(".bin").stat().st_size) / 2**20
    )


def test_val_gives_the_same_metrics_for_every_artifact(exported, tmp_path):
    from yoloslim.data.synth import synthesize
    from yoloslim.eval.val import validate

    ckpt, _, res = exported
    data = synthesize(tmp_path / "d", images=6, imgsz=IMGSZ, classes=3, seed=1, val_fraction=0.5)
    ref = validate(ckpt, data)
    for fmt in ("onnx", "openvino", "torchscript"):
        got = validate(res.artifacts[fmt], data)
        assert got["runtime"] != "torch"
        assert abs(got["map"] - ref["map"]) <= 0.002, fmt
        assert abs(got["detections"] - ref["detections"]) <= 0.01 * max(1, ref["detections"]), fmt


def test_triton_repository(exported):
    _, out, res = exported
    cfg = parse_config_pbtxt(res.artifacts["triton"].read_text())
    assert cfg["platform"] == "onnxruntime_onnx"
    assert cfg["max_batch_size"] == TRITON_MAX_BATCH
    assert cfg["input"][0]["name"] == "images" and cfg["input"][0]["dims"] == [3, IMGSZ, IMGSZ]
    anchors = sum((IMGSZ // s) ** 2 for s in (8, 16, 32))
    assert cfg["output"][0]["name"] == "preds" and cfg["output"][0]["dims"] == [anchors, 7]
    assert "dynamic_batching" in cfg and cfg["instance_group"][0]["kind"] == "KIND_CPU"
    assert (res.artifacts["triton"].parent / "1" / "model.onnx").is_file()


def test_unknown_format(exported, tmp_path):
    with pytest.raises(ConfigError, match="unknown export format.*tflite"):
        export(exported[0], tmp_path, formats=["tflite"])


def test_missing_extras_give_clear_errors(exported, tmp_path):
    pytest.importorskip("torch")
    try:
        import coremltools  # noqa: F401
    except ImportError:
        with pytest.raises(ExportError, match=r"yoloslim\[coreml\]"):
            export(exported[0], tmp_path, formats=["coreml"])
    if not torch.cuda.is_available():
        with pytest.raises(ExportError, match="TensorRT.*(tensorrt|CUDA)"):
            export(exported[0], tmp_path, formats=["engine"])


def test_bad_checkpoint_and_unwritable_output(exported, tmp_path):
    with pytest.raises(ModelError, match="missing.pt"):
        export(tmp_path / "missing.pt", tmp_path, formats=["onnx"])
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ExportError, match="output folder"):
        export(exported[0], blocker / "sub", formats=["onnx"])


def test_unknown_artifact_suffix(tmp_path):
    p = tmp_path / "model.tflite"
    p.write_text("x")
    with pytest.raises(ModelError, match="unknown artifact type"):
        load_backend(p)


def test_nms_in_graph_matches_torch_postprocess(tmp_path):
    from yoloslim.export.nms import append_nms, verify_nms

    model = _model()
    g = torch.Generator().manual_seed(5)
    for conv in model.head.cls_preds:  # spread the scores so NMS has real work to do
        conv.weight.data = torch.randn(conv.weight.shape, generator=g) * 0.5
        conv.bias.data = torch.randn(conv.bias.shape, generator=g) - 1.0
    res = export(model, tmp_path, formats=["onnx"], imgsz=IMGSZ, nms=True)
    assert res.report["formats"]["onnx_nms"]["passed"]
    e2e = append_nms(res.artifacts["onnx"], tmp_path / "low.onnx", conf=0.05, iou=0.5, max_det=50)
    report = verify_nms(e2e, res.artifacts["onnx"])
    counts = [r["detections"] for r in report["runtimes"]["onnxruntime"]]
    assert max(counts) > 5, counts  # the comparison covered real detections
    assert all(r["passed"] for rows in report["runtimes"].values() for r in rows)
    with pytest.raises(ConfigError, match="static batch"):
        export(model, tmp_path / "d", formats=["onnx"], imgsz=IMGSZ, nms=True, dynamic=True)
