import json

import pytest
import torch

from yoloslim.bench.latency import LatencyConfig
from yoloslim.bench.measure import artifact_stats, benchmark
from yoloslim.bench.report import COLUMNS, write_report
from yoloslim.data.synth import synthesize
from yoloslim.errors import ModelError
from yoloslim.export import export
from yoloslim.models import build_model
from yoloslim.models.checkpoint import save_checkpoint

IMGSZ = 64


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    torch.manual_seed(0)
    ckpt = save_checkpoint(
        out / "base.pt", build_model("damo-nano", names=["circle", "square"]), imgsz=IMGSZ
    )
    res = export(ckpt, out, formats=["onnx", "openvino"])
    data = synthesize(out / "data", images=6, imgsz=IMGSZ, classes=2, seed=2, val_fraction=0.5)
    return ckpt, res.artifacts["onnx"], res.artifacts["openvino"], data


def test_graph_flops_match_torch_count(artifacts):
    ckpt, onnx_path, xml_path, _ = artifacts
    t = artifact_stats(ckpt, IMGSZ)
    o = artifact_stats(onnx_path, IMGSZ)
    v = artifact_stats(xml_path, IMGSZ)
    assert o["gflops"] == pytest.approx(t["gflops"], rel=0.01)
    assert v["gflops"] == pytest.approx(t["gflops"], rel=0.01)
    assert o["params"] == pytest.approx(t["params"], rel=0.01)
    assert o["gflops"] == pytest.approx(2 * o["gmacs"])


def test_report_files_hold_documented_keys(artifacts, tmp_path):
    ckpt, onnx_path, xml_path, data = artifacts
    cfg = LatencyConfig(rounds=2, runs_per_round=2, warmup=1, threads=1)
    res = benchmark([ckpt, onnx_path, xml_path], data, batches=(1, 2), latency=cfg)
    files = write_report(res.report, tmp_path)
    report = json.loads(files["json"].read_text())
    assert report["baseline"] == "base.pt"
    for row in report["rows"]:
        assert {
            "name",
            "params",
            "gflops",
            "size_mb",
            "latency_ms",
            "throughput_ips",
            "peak_rss_mb",
            "model_mem_mb",
            "map",
            "map50",
            "ratios",
            "precision",
        } <= set(row)
        assert set(row["latency_ms"]) >= {"median", "p90"}
        assert set(row["throughput_ips"]) == {"1", "2"}
        assert 0 <= row["map"] <= 1
        assert 0 < row["model_mem_mb"] < row["peak_rss_mb"]
    assert report["rows"][0]["ratios"]["speedup"] == 1.0
    assert {"cpu", "cores", "isa", "versions"} <= set(report["system"])
    md = files["md"].read_text()
    assert "| " + " | ".join(COLUMNS) + " |" in md and "Precision each runtime used" in md
    assert files["png"].stat().st_size > 1000


def test_bad_artifacts(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        artifact_stats(tmp_path / "nope.onnx", IMGSZ)
    p = tmp_path / "x.tflite"
    p.write_text("x")
    with pytest.raises(ModelError, match="unknown artifact type"):
        artifact_stats(p, IMGSZ)
