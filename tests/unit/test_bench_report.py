import json
import re
import sys

import pytest
import torch

from yoloslim.bench.latency import LatencyConfig
from yoloslim.bench.measure import artifact_stats, benchmark
from yoloslim.bench.report import COLUMNS, WEIGHTS_SIZE_NOTE, write_report
from yoloslim.cli.main import main
from yoloslim.data.synth import synthesize
from yoloslim.errors import ConfigError, ModelError
from yoloslim.export import export
from yoloslim.models import build_model
from yoloslim.models.checkpoint import save_checkpoint
from yoloslim.models.testing import randomize_bn

IMGSZ = 64


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    torch.manual_seed(0)
    # BN statistics as training leaves them: a fresh model's folded biases are all zero,
    # and the exporter drops a bias of zeros (the graph then has fewer parameters)
    model = randomize_bn(build_model("damo-nano", names=["circle", "square"]), seed=0)
    ckpt = save_checkpoint(out / "base.pt", model, imgsz=IMGSZ)
    res = export(ckpt, out, formats=["onnx", "openvino"])
    data = synthesize(out / "data", images=6, imgsz=IMGSZ, classes=2, seed=2, val_fraction=0.5)
    return ckpt, res.artifacts["onnx"], res.artifacts["openvino"], data


def test_graph_flops_match_torch_count(artifacts):
    ckpt, onnx_path, xml_path, _ = artifacts
    t = artifact_stats(ckpt, IMGSZ)
    o = artifact_stats(onnx_path, IMGSZ)
    v = artifact_stats(xml_path, IMGSZ)
    assert o["gflops"] == pytest.approx(t["gflops"], rel=1e-9)
    assert v["gflops"] == pytest.approx(t["gflops"], rel=1e-9)
    # the deploy form's parameters, not the graph's anchor grids and other constants
    assert o["params"] == v["params"] == t["params"]
    script = export(ckpt, ckpt.parent / "ts", formats="torchscript", verify=False)
    s = artifact_stats(script.artifacts["torchscript"], 2 * IMGSZ)  # any size, as it runs
    assert s["params"] == t["params"]
    assert s["gflops"] == pytest.approx(artifact_stats(ckpt, 2 * IMGSZ)["gflops"], rel=1e-9)
    assert o["gflops"] == pytest.approx(2 * o["gmacs"])
    with pytest.raises(ConfigError, match=f"exported at a static {IMGSZ} px"):
        artifact_stats(onnx_path, 2 * IMGSZ)  # shape inference would count nothing
    with pytest.raises(ConfigError, match=f"exported at a static {IMGSZ} px"):
        artifact_stats(xml_path, 2 * IMGSZ)


@pytest.mark.parametrize("dynamo", [False, True])
def test_graph_counts_of_a_linear_layer(tmp_path, dynamo):
    import warnings

    import openvino as ov
    from torch import nn

    from yoloslim.bench.graph import onnx_stats, openvino_stats

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.fc = nn.Conv2d(3, 16, 3, padding=1), nn.Linear(16, 10)

        def forward(self, x):
            return self.fc(self.conv(x).mean((2, 3)))

    path = tmp_path / "net.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Net().eval(), (torch.rand(1, 3, 32, 32),), path, dynamo=dynamo)
    ov.save_model(ov.convert_model(str(path)), str(tmp_path / "net.xml"))
    macs = 32 * 32 * 16 * 27 + 16 * 10  # the conv, then the linear layer (Gemm, transB=1)
    params = 16 * 27 + 16 + 16 * 10 + 10
    for stats in (onnx_stats(path, 32), openvino_stats(tmp_path / "net.xml", 32)):
        assert stats["params"] == params
        assert stats["gmacs"] == pytest.approx(macs / 1e9, rel=1e-12)


def test_graph_counts_an_fp16_onnx_whose_cast_comes_after_its_readers(tmp_path, caplog):
    # onnxruntime's FP16 converter appends the input's Cast at the end of a dynamic-batch
    # graph: inference, which takes the nodes in order, left every conv unshaped (0 GFLOPs)
    import warnings

    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from torch import nn

    from yoloslim.bench.graph import onnx_stats

    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 8, 1)).eval()
    path = tmp_path / "net.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net, (torch.rand(1, 3, 32, 32),), path, dynamo=False,
            input_names=["images"], dynamic_axes={"images": {0: "batch"}},
        )  # fmt: skip
    fp16 = tmp_path / "fp16.onnx"
    model = convert_float_to_float16(onnx.load(str(path)), keep_io_types=True)
    assert model.graph.node[-1].op_type == "Cast" or model.graph.node[0].op_type != "Cast"
    onnx.save(model, str(fp16))
    macs = 32 * 32 * (16 * 27 + 8 * 16)
    with caplog.at_level("WARNING"):
        for p in (path, fp16):
            assert onnx_stats(p, 32)["gmacs"] == pytest.approx(macs / 1e9, rel=1e-12)
    assert "leave out" not in caplog.text


def test_row_names_tell_artifacts_apart_and_a_path_given_twice_is_refused(artifacts, tmp_path):
    from pathlib import Path

    from yoloslim.bench.measure import _labels

    paths = ["a/best.pt", "x/model_openvino/model.xml", "y/model_openvino/model.xml"]
    paths += ["p/q/model.onnx", "r/q/model.onnx", "other.onnx"]
    assert _labels([Path(p) for p in paths]) == [
        "best.pt",
        "x/model_openvino/model.xml",
        "y/model_openvino/model.xml",
        "p/q/model.onnx",
        "r/q/model.onnx",
        "other.onnx",
    ]
    # a Triton model's ONNX: named with its model and version
    triton = tmp_path / "repo" / "det"
    (triton / "1").mkdir(parents=True)
    (triton / "config.pbtxt").write_text('name: "det"\n')
    assert _labels([triton / "1" / "model.onnx", Path("m/model.onnx")]) == [
        "det/1/model.onnx",
        "model.onnx",
    ]
    ckpt = artifacts[0]
    with pytest.raises(ConfigError, match="given twice"):
        benchmark([ckpt, ckpt.parent / ".." / ckpt.parent.name / ckpt.name])


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
        assert set(row["throughput_ips"]) == set(row["memory_by_batch"]) == {"1", "2"}
        assert 0 <= row["map"] <= 1
        assert 0 < row["model_mem_mb"] < row["peak_rss_mb"]
        # the table's memory is at the table's batch, beside its latency
        assert row["model_mem_mb"] == row["memory_by_batch"]["1"]["model_mem_mb"]
    assert report["rows"][0]["ratios"]["speedup"] == 1.0
    # every row's ratios are its own fields over the baseline's (the first row), rounded as
    # documented (3 decimals, mAP delta 4); speedup = baseline latency / row latency
    base = report["rows"][0]
    for row in report["rows"]:
        lat, base_lat = row["latency_ms"]["median"], base["latency_ms"]["median"]
        assert row["ratios"] == {
            "params": round(row["params"] / base["params"], 3),
            "gflops": round(row["gflops"] / base["gflops"], 3),
            "size": round(row["size_mb"] / base["size_mb"], 3),
            "latency": round(lat / base_lat, 3),
            "speedup": round(base_lat / lat, 3),
            "map_delta": round(row["map"] - base["map"], 4),
        }, row["name"]
    # the three runtimes' medians differ, so an inverted speedup would show
    assert len({r["latency_ms"]["median"] for r in report["rows"]}) == 3
    # the terminal table shows batch 2's throughput too (it was only in the files)
    from rich.console import Console

    from yoloslim.bench.report import rich_table

    term = Console(width=300, record=True)
    term.print(rich_table(report))
    shown = term.export_text()
    assert "img/s b2" in shown
    assert f"{report['rows'][1]['throughput_ips']['2']:.1f}" in shown
    # the speedup column shows each row's ratio (table_rows feeds the terminal table and
    # the markdown alike)
    from yoloslim.bench.report import table_rows

    cells = table_rows(report)
    for row, line in zip(report["rows"], cells, strict=True):
        # (from the medians, as the table rounds them once: the JSON's 3-decimal ratio
        # rounded again to 2 said 8.47 where the medians give 8.46)
        speedup = base["latency_ms"]["median"] / row["latency_ms"]["median"]
        assert line[COLUMNS.index("x speed")] == f"{speedup:.2f}"
        assert abs(float(line[COLUMNS.index("x speed")]) - row["ratios"]["speedup"]) <= 0.0051
        assert "| " + " | ".join(line) + " |" in files["md"].read_text()
    # the ONNX and IR were exported at batch 1: their batch 2 is two calls, and they say so
    assert [r["static_batch"] for r in report["rows"]] == [False, True, True]
    looped = "so a larger batch runs as that many batch-1 calls: " + ", ".join(
        r["name"] for r in report["rows"][1:]
    )
    assert looped in " ".join(shown.split()) and looped in files["md"].read_text()
    assert {"cpu", "cores", "isa", "versions"} <= set(report["system"])
    md = files["md"].read_text()
    assert "| " + " | ".join(COLUMNS) + " |" in md and "Precision each runtime used" in md
    assert WEIGHTS_SIZE_NOTE in md  # the .pt row's Size is its weights, and says so
    assert [r["size_source"] for r in report["rows"]][1:] == ["file", "file"]
    assert files["png"].stat().st_size > 1000
    # a PNG with a size: the signature, then the IHDR chunk's big-endian width and height
    png = files["png"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
    assert min(int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")) > 100
    # without matplotlib (the plot extra) the report is still written, the plot left out
    blocked = tmp_path / "no_plot"
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, "matplotlib", None)
        files = write_report(res.report, blocked)
    assert set(files) == {"json", "md"} and not (blocked / "pareto.png").exists()
    assert not list(blocked.glob(".*"))  # no temp file left
    # a stop while this report is written leaves no earlier bench's plot beside it: the
    # plot is drawn first, and the earlier one goes before report.json is replaced
    import yoloslim.bench.report as report_mod

    again = tmp_path / "again"
    write_report(res.report, again)
    drawn = []
    real = report_mod._pareto

    def stopped_after_drawing(*a, **k):
        raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(report_mod, "_pareto", lambda r: drawn.append(1) or real(r))
        mp.setattr(report_mod, "atomic_write_text", stopped_after_drawing)
        with pytest.raises(KeyboardInterrupt):
            write_report(res.report, again)
    assert drawn and not (again / "pareto.png").exists()


def test_ratios_follow_their_formulas_and_sign():
    from yoloslim.bench.measure import _ratios

    base = {"params": 4e6, "gflops": 2.0, "size_mb": 8.0, "latency_ms": {"median": 30.0}}
    base["map"] = 0.42
    row = {"params": 1e6, "gflops": 0.5, "size_mb": 3.0, "latency_ms": {"median": 12.0}}
    row["map"] = 0.30
    # 1/4 = 0.25; 3/8 = 0.375; 12/30 = 0.4; 30/12 = 2.5 (faster than the baseline: > 1);
    # 0.30 - 0.42 = -0.12 (a smaller mAP is a negative delta)
    assert _ratios(row, base) == {
        "params": 0.25,
        "gflops": 0.25,
        "size": 0.375,
        "latency": 0.4,
        "speedup": 2.5,
        "map_delta": pytest.approx(-0.12),
    }
    # 2/3 and 3/2 rounded to 3 decimals
    r = _ratios({**row, "latency_ms": {"median": 20.0}}, base)
    assert (r["latency"], r["speedup"]) == (0.667, 1.5)
    # undefined where the baseline's value is missing or zero, or a row has no mAP
    gone = {k: v for k, v in base.items() if k not in ("params", "map")}
    r = _ratios({k: v for k, v in row.items() if k != "gflops"}, {**gone, "size_mb": 0})
    assert r["params"] is None and r["gflops"] is None and r["size"] is None
    assert r["map_delta"] is None and r["speedup"] == 2.5


def _table_row(**changes) -> dict:
    """A bench report row as table_rows reads it, with ``changes``."""
    return {
        "name": "m",
        "params": 1e6,
        "gflops": 1.0,
        "latency_ms": {"median": 4.0, "p90": 5.0, "batch": 1},
        "size_mb": 1.0,
        "ratios": {"speedup": 1.0, "size": 1.0},
        **changes,
    }


def test_fps_is_images_per_second_at_the_tables_batch_and_a_batch_is_given_once(artifacts):
    from yoloslim.bench.report import table_rows

    row = _table_row(latency_ms={"median": 40.0, "p90": 50.0, "batch": 4})
    fps = table_rows({"rows": [row]})[0][COLUMNS.index("FPS")]
    assert fps == "100.0"  # 4 images in 40 ms, not 1000 / 40
    with pytest.raises(ConfigError, match=r"--batch\): batch 1 is given twice"):
        benchmark([artifacts[0]], batches=[1, 8, 1])


def test_small_models_params_and_flops_keep_three_significant_digits():
    # 0.00983 and 0.00294 GFLOPs showed as 0.01 and 0.00 (audit52 info F1)
    from yoloslim.bench.report import figure, table_rows

    row = _table_row(params=433_461, gflops=0.0029374)
    cells = table_rows({"rows": [row, {**row, "gflops": 12.345, "params": 3_210_000}]})
    assert [c[COLUMNS.index("FLOPs (G)")] for c in cells] == ["0.00294", "12.35"]
    assert [c[COLUMNS.index("Params (M)")] for c in cells] == ["0.433", "3.21"]
    assert figure(None) == "-" and figure(0.0) == "0" and figure(0.9996) == "1.00"


def test_bad_artifacts(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        artifact_stats(tmp_path / "nope.onnx", IMGSZ)
    p = tmp_path / "x.tflite"
    p.write_text("x")
    with pytest.raises(ModelError, match="unknown artifact type"):
        artifact_stats(p, IMGSZ)


def test_qdq_int8_onnx_counts_the_float_models_params_and_flops(artifacts, tmp_path):
    import numpy as np
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    _, onnx_path, _, _ = artifacts

    class Reader(CalibrationDataReader):
        def __init__(self):
            rng = np.random.default_rng(0)
            self.it = iter([{"images": rng.random((1, 3, IMGSZ, IMGSZ), np.float32)}])

        def get_next(self):
            return next(self.it, None)

    qdq = tmp_path / "int8.onnx"
    quantize_static(str(onnx_path), str(qdq), Reader(), quant_format=QuantFormat.QDQ)
    f, q = artifact_stats(onnx_path, IMGSZ), artifact_stats(qdq, IMGSZ)
    assert q["size_mb"] < 0.5 * f["size_mb"]  # really INT8 weights
    assert q["params"] == f["params"]  # its INT8 weights and INT32 biases, not the scales
    assert q["gflops"] == pytest.approx(f["gflops"], rel=1e-6)


def test_pt_size_is_its_weights_not_the_file(artifacts, tmp_path):
    ckpt, onnx_path, _, _ = artifacts
    last = tmp_path / "last.pt"
    blob = torch.load(ckpt, weights_only=True)
    blob["train_state"] = {"optimizer": torch.zeros(2_000_000), "epoch": 0, "config": {"epochs": 1}}
    torch.save(blob, last)
    best, with_state = artifact_stats(ckpt, IMGSZ), artifact_stats(last, IMGSZ)
    assert best["size_mb"] == with_state["size_mb"] == pytest.approx(best["params"] * 4 / 2**20)
    assert with_state["file_size_mb"] > best["file_size_mb"] + 7
    assert best["size_source"].startswith("FP32 weights")
    # about what the float ONNX of the same network weighs
    assert best["size_mb"] == pytest.approx(artifact_stats(onnx_path, IMGSZ)["size_mb"], rel=0.05)


def test_input_size_is_checked_against_static_artifacts_before_measuring(artifacts, tmp_path):
    import onnx

    ckpt, onnx_path, xml_path, _ = artifacts
    with pytest.raises(ConfigError, match="imgsz=100: .*multiple of 32"):
        benchmark([ckpt], imgsz=100)
    with pytest.raises(ConfigError, match=f"{xml_path}: .*static {IMGSZ} px.*imgsz=96"):
        benchmark([ckpt, xml_path], imgsz=96)
    other = onnx.load(str(onnx_path))  # the same graph, declared at another static size
    for d in other.graph.input[0].type.tensor_type.shape.dim[2:]:
        d.dim_value = 96
    for entry in other.metadata_props:  # and its metadata (else refused as not this graph's)
        entry.value = "96" if entry.key == "imgsz" else entry.value
    onnx.save(other, tmp_path / "m96.onnx")
    with pytest.raises(ConfigError, match=rf"m96.onnx: .*static 96 px.*{IMGSZ} px \(the input"):
        benchmark([onnx_path, tmp_path / "m96.onnx"])
    assert main(["bench", str(onnx_path), "--imgsz", "96", "--batch", "1"]) == 2


def test_one_artifact_path_and_an_int_batch_are_accepted(artifacts):
    # a static 64 px artifact asked for 96 px: refused before measuring, naming the whole path,
    # which shows the path was taken as one artifact (not as its characters) and batches=1 passed
    _, onnx_path, _, _ = artifacts
    for one in (str(onnx_path), onnx_path):
        with pytest.raises(ConfigError, match=f"^{re.escape(str(onnx_path))}: .*static {IMGSZ} px"):
            benchmark(one, imgsz=96, batches=1)


@pytest.mark.parametrize(
    ("batches", "match"),
    [
        ("8", r"batches='8' \(--batch\): expected a batch size or a list of them"),
        (None, r"batches=None \(--batch\): expected a batch size"),
        (1.5, r"batches=1.5 \(--batch\): expected a batch size"),
        (True, r"batches=True \(--batch\): expected a batch size"),
        ([], r"batches=\[\] \(--batch\) must be positive integers"),
        ([1, 0], r"batches=\[1, 0\] \(--batch\) must be positive integers"),
        ([1, 2.5], r"batches=\[1, 2.5\] \(--batch\) must be positive integers"),
        (["1"], r"batches=\['1'\] \(--batch\) must be positive integers"),
    ],
)
def test_bad_batches_are_refused_before_measuring(artifacts, batches, match):
    _, onnx_path, _, _ = artifacts
    with pytest.raises(ConfigError, match=match):
        benchmark(onnx_path, imgsz=IMGSZ, batches=batches)


def test_bad_artifacts_argument_is_refused(artifacts):
    with pytest.raises(ConfigError, match="at least one artifact"):
        benchmark([], imgsz=IMGSZ)
    with pytest.raises(ConfigError, match="artifacts: expected an artifact path or a list"):
        benchmark(3, imgsz=IMGSZ)
    with pytest.raises(ConfigError, match=r"artifacts\[0\]: a NoneType, not a file"):
        benchmark([None], imgsz=IMGSZ)
    from yoloslim.bench.measure import _artifact_paths

    ckpt = artifacts[0]  # any iterable of paths: a generator (Path.glob), a set
    assert _artifact_paths(p for p in [ckpt])[0] == _artifact_paths({ckpt})[0] == [ckpt]
    # a model in the list: a short message (it printed the whole module tree, 23 KB)
    with pytest.raises(ConfigError, match=r"artifacts\[1\]: a Detector, not a file") as e:
        benchmark([artifacts[0], build_model("damo-nano", nc=2)], imgsz=IMGSZ)
    assert len(str(e.value)) < 200


def test_every_artifact_is_read_before_a_worker_starts(artifacts, tmp_path, monkeypatch):
    # a corrupt second artifact was a protobuf traceback, and one without yoloslim's metadata
    # failed in its worker after the others had been measured, taking their rows with it
    import yoloslim.bench.measure as measure_mod

    def started(*a, **k):
        raise AssertionError("a worker started")

    monkeypatch.setattr(measure_mod, "measure_latency", started)
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(artifacts[1].read_bytes()[:1000])
    with pytest.raises(ModelError, match=r"broken.onnx: not a readable ONNX file"):
        benchmark([artifacts[0], broken], imgsz=IMGSZ)
    import onnx

    foreign = onnx.load(str(artifacts[1]))
    del foreign.metadata_props[:]
    onnx.save(foreign, str(tmp_path / "foreign.onnx"))
    with pytest.raises(ModelError, match=r"foreign.onnx: .*metadata"):
        benchmark([artifacts[0], tmp_path / "foreign.onnx"])
    # a data.yaml of another class count: found by val after every measurement
    three = synthesize(tmp_path / "three", images=2, imgsz=IMGSZ, classes=3, seed=0)
    with pytest.raises(ModelError, match=r"has 2 classes but .*three/data.yaml has 3"):
        benchmark(artifacts[:2], data=three, imgsz=IMGSZ)


def test_a_report_folder_keeps_a_users_report_and_drops_a_stale_plot(artifacts, tmp_path):
    from yoloslim.bench.report import check_report_folder

    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "report.md").write_text("# my notes\n")
    with pytest.raises(ConfigError, match=r"report.md is not a bench report"):
        check_report_folder(mine)
    assert main(["bench", str(artifacts[1]), "--report", str(mine), "--rounds", "1"]) == 2
    assert (mine / "report.md").read_text() == "# my notes\n"


def test_a_report_folder_another_run_writes_into_is_refused_and_a_new_one_not_left(
    artifacts, tmp_path, capsys, monkeypatch
):
    from yoloslim.bench import measure
    from yoloslim.fileio import folder_lock

    busy = tmp_path / "busy"
    with folder_lock(busy, "compress"):  # another run holds it
        assert main(["bench", str(artifacts[1]), "--report", str(busy), "--rounds", "1"]) == 2
    assert "another yoloslim run is writing into this folder" in capsys.readouterr().err
    assert list(busy.iterdir()) == []
    # a report folder made (under the lock) for a bench that then fails is not left behind

    def fails(*args, **kwargs):
        assert (tmp_path / "new" / "deeper").is_dir()  # made before the measuring, and locked
        raise ConfigError("the measuring failed")

    monkeypatch.setattr(measure, "benchmark", fails)
    made = tmp_path / "new" / "deeper"  # new/ goes too (audit30 review L1)
    assert main(["bench", str(artifacts[1]), "--report", str(made), "--rounds", "1"]) == 2
    assert "the measuring failed" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


def test_a_users_plot_and_rows_json_are_kept_and_a_report_folders_json_is_not_replaced(
    artifacts, tmp_path, capsys
):
    from PIL import Image

    from yoloslim.bench.report import _is_bench_json, _is_bench_png, check_report_folder

    onnx_path = artifacts[1]
    cfg = LatencyConfig(rounds=1, runs_per_round=1, warmup=1, threads=1)
    with pytest.raises(ConfigError, match=r"names=\['a', 'a'\]: \['a'\] given more than once"):
        benchmark([artifacts[0], onnx_path], names=["a", "a"], latency=cfg)
    report = benchmark([onnx_path], batches=(1,), latency=cfg).report
    # without data every row still has the documented keys, null (a KeyError for scripts)
    assert (report["rows"][0]["map"], report["rows"][0]["map50"]) == (None, None)
    assert report["rows"][0]["ratios"]["map_delta"] is None
    report["rows"][0].update(map=0.25, map50=0.5)  # a plot is drawn for rows with a mAP
    # a user's figure named pareto.png, or their own {"rows": ...} JSON: kept, the run refused
    figs = tmp_path / "figs"
    figs.mkdir()
    Image.new("RGB", (8, 8), "red").save(figs / "pareto.png")
    before = (figs / "pareto.png").read_bytes()
    with pytest.raises(ConfigError, match=r"pareto.png is not a plot bench drew"):
        write_report(report, figs)
    assert (figs / "pareto.png").read_bytes() == before and not (figs / "report.json").exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "report.json").write_text('{"rows": ["my", "list"], "owner": "me"}')
    assert not _is_bench_json((mine / "report.json").read_text())
    with pytest.raises(ConfigError, match=r"report.json is not a bench report"):
        check_report_folder(mine)
    # bench's own plot carries its mark, and is replaced by the next report there
    ours = tmp_path / "ours"
    files = write_report(report, ours)
    assert _is_bench_png(files["png"]) and _is_bench_json(files["json"].read_text())
    write_report(report, ours)
    # another run's --json naming a report folder's report.json: refused before measuring;
    # with --report naming that folder it is the same record, written twice
    quick = ["--rounds", "1", "--runs", "1", "--batch", "1", "--threads", "1"]
    kept = files["json"].read_text()
    assert main(["bench", str(onnx_path), "--json", str(files["json"]), *quick]) == 2
    assert "is the report of the bench run in" in capsys.readouterr().err
    assert files["json"].read_text() == kept
    both = ["--json", str(files["json"]), "--report", str(ours)]
    assert main(["bench", str(onnx_path), *both, *quick]) == 0
    assert json.loads(files["json"].read_text())["rows"][0]["name"] == "model.onnx"


def test_an_unsteady_latency_is_warned_about(artifacts, monkeypatch, caplog, capsys):
    import logging

    import yoloslim.bench.measure as measure_mod

    runs = {}

    def measured(paths, cfg):  # a worker whose p90 is 4x its median (a busy machine)
        runs[cfg.batch] = cfg.runs_per_round
        p90 = 8.0 if cfg.batch in (1, 2) else 2.5
        stats = dict(precision="fp32", static_batch=True, peak_rss_mb=9.0, model_mem_mb=1.0)
        return {p: dict(stats, median=2.0, p90=p90, throughput_ips=500.0) for p in paths}

    monkeypatch.setattr(measure_mod, "measure_latency", measured)
    with caplog.at_level(logging.WARNING, "yoloslim"):
        benchmark([artifacts[1]], batches=(1,))
    assert "model.onnx: unsteady latency at batch 1 (p90 8.00 ms is 4.0x the median" in caplog.text
    # at a throughput-only batch too (audit42 docs F1: only the first was checked); the
    # table's batch, the first, gets every run asked for (it keyed on batch 1)
    caplog.clear()
    with caplog.at_level(logging.WARNING, "yoloslim"):
        benchmark([artifacts[1]], batches=(4, 2), latency=LatencyConfig(runs_per_round=8))
    assert runs[4] == 8 and runs[2] == 2
    said = "unsteady latency at batch 2 (p90 8.00 ms is 4.0x the median 2.00 ms), so its img/s at"
    assert said in caplog.text
    assert "batch 4" not in caplog.text
    assert main(["bench", str(artifacts[1]), "--warmup", "-1"]) == 2
    assert "error: ConfigError: --warmup -1 must be >= 0" in capsys.readouterr().err


def test_the_reproduce_command_runs_as_written(monkeypatch, tmp_path):
    # under python -m, argv[0] is the package's __main__.py, which is no command to run
    import shlex

    from yoloslim.sysinfo import invocation

    monkeypatch.chdir(tmp_path)
    main = "/site-packages/yoloslim/__main__.py"
    monkeypatch.setattr(sys, "argv", [main, "bench", "my model.onnx"])
    assert invocation() == f"cd {shlex.quote(str(tmp_path))} && yoloslim bench 'my model.onnx'"
    monkeypatch.setattr(sys, "argv", ["/venv/bin/yoloslim", "val"])
    assert invocation().endswith("&& yoloslim val")
    monkeypatch.setattr(sys, "argv", ["benchmarks/quant_synth.py", "--calib", "8"])
    assert invocation().endswith("&& python benchmarks/quant_synth.py --calib 8")
    monkeypatch.setattr(sys, "argv", [""])
    assert "interactive" in invocation()
    # a resumed run's report gives the command that makes the run on a fresh machine
    monkeypatch.setattr(sys, "argv", ["/venv/bin/yoloslim", "compress", "--resume", "--out", "o"])
    assert invocation(drop=("--resume",)).endswith("&& yoloslim compress --out o")
    monkeypatch.setattr(sys, "argv", ["mine.py", "--resume"])  # a script's own flags stay
    assert invocation(drop=("--resume",)).endswith("&& python mine.py --resume")


def test_a_busy_machine_is_warned_about_before_measuring(monkeypatch, caplog):
    import yoloslim.bench.measure as measure_mod
    from yoloslim.bench.latency import LatencyConfig
    from yoloslim.sysinfo import usable_cores

    cores = usable_cores()
    # what keeps the cores busy now (audit31 fresh M3: the load average, a minute behind,
    # warned on an idle machine after work that had ended)
    monkeypatch.setattr(measure_mod.os, "getloadavg", lambda: (99.0, 0.0, 0.0))
    monkeypatch.setattr(measure_mod, "_busy_cpus", lambda: 0.1)
    with caplog.at_level("WARNING", logger="yoloslim.bench"):
        measure_mod._warn_if_busy(LatencyConfig())
    assert not caplog.text
    monkeypatch.setattr(measure_mod, "_busy_cpus", lambda: float(cores))
    with caplog.at_level("WARNING", logger="yoloslim.bench"):
        measure_mod._warn_if_busy(LatencyConfig())
    assert f"the machine is busy ({cores:.1f} of its {cores} cores busy)" in caplog.text
    assert "bench --threads 1, a recipe's bench.threads: 1" in caplog.text
    caplog.clear()
    # where /proc/stat cannot be read: the load average
    monkeypatch.setattr(measure_mod, "_busy_cpus", lambda: None)
    with caplog.at_level("WARNING", logger="yoloslim.bench"):
        measure_mod._warn_if_busy(LatencyConfig())
    assert "the machine is busy (load average 99.0 on" in caplog.text
    caplog.clear()
    monkeypatch.setattr(measure_mod.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    with caplog.at_level("WARNING", logger="yoloslim.bench"):
        measure_mod._warn_if_busy(LatencyConfig())
    assert not caplog.text
    monkeypatch.undo()  # and for real: a share of this process's cores
    now = measure_mod._busy_cpus(window=0.05)
    assert now is None or 0.0 <= now <= cores + 0.5


def test_pareto_front_keeps_the_rows_no_other_row_beats():
    from yoloslim.bench.report import pareto_front

    # latency, mAP: a faster and more accurate row beats another; a tie beats neither
    lat = [10.5, 5.6, 6.4, 4.1, 5.6, 4.1]
    acc = [26.1, 28.4, 27.1, 26.7, 28.4, 26.0]
    assert pareto_front(lat, acc) == {1, 3, 4}  # 0, 2, 5 are beaten; 1 and 4 tie
    assert pareto_front([3.0], [1.0]) == {0}


def test_an_ir_at_a_precision_hint_is_measured_and_validated_at_it(artifacts, tmp_path):
    # its latency was at the hint and its mAP at the plugin's default (bf16 here): one row,
    # two precisions under one label; and a row with NMS in the graph said nothing of it
    from rich.console import Console

    from yoloslim.bench.report import rich_table, to_markdown
    from yoloslim.eval.val import validate

    ckpt, onnx_path, xml_path, data = artifacts
    e2e = export(ckpt, tmp_path / "e2e", formats=["onnx"], nms=True).artifacts["onnx_nms"]
    cfg = LatencyConfig(rounds=1, runs_per_round=2, warmup=1, threads=1, ov_hint="f32")
    rows = benchmark([xml_path, e2e], data, batches=(1,), latency=cfg).report["rows"]
    assert rows[0]["precision"] == "fp32"
    assert rows[0]["map"] == validate(xml_path, data, imgsz=IMGSZ, ov_precision="f32")["map"]
    assert rows[1].get("end_to_end") is True and "end_to_end" not in rows[0]
    report = {**benchmark([xml_path, e2e], batches=(1,), latency=cfg).report}
    said = f"NMS in the graph: the latency of {report['rows'][1]['name']} includes NMS"
    assert said in to_markdown(report)
    term = Console(width=400, record=True)
    term.print(rich_table(report))
    shown = " ".join(term.export_text().split())
    assert said in shown and "Precision" in shown and "at batch 1" in shown and " fp32 " in shown
    with pytest.raises(ConfigError, match=r"--ov-precision\) sets an OpenVINO IR's precision"):
        benchmark([onnx_path], latency=LatencyConfig(ov_hint="f32"))


def test_the_size_of_an_onnx_counts_its_external_data_and_an_ir_named_in_capitals(
    artifacts, tmp_path
):
    import shutil

    import onnx

    from yoloslim.export.common import path_size_mb

    _, onnx_path, xml_path, _ = artifacts
    whole = path_size_mb(onnx_path, None)
    ext = tmp_path / "ext.onnx"  # its weights in ext.onnx.data: the .onnx alone was 1 %
    onnx.save(onnx.load(str(onnx_path)), str(ext), save_as_external_data=True, location="w.data")
    assert path_size_mb(ext, None) == pytest.approx(whole, rel=0.02)
    assert path_size_mb(ext, None) > 50 * ext.stat().st_size / 2**20
    upper = tmp_path / "MODEL.XML"  # runs in OpenVINO; its Size left out MODEL.bin
    shutil.copyfile(xml_path, upper)
    shutil.copyfile(xml_path.with_suffix(".bin"), tmp_path / "MODEL.bin")
    assert path_size_mb(upper, None) == path_size_mb(xml_path, None)


def test_every_bad_artifact_is_named_at_once_and_a_predictors_settings_are_said(
    artifacts, tmp_path, caplog
):
    import yoloslim as ys

    ckpt, onnx_path, _, _ = artifacts
    (tmp_path / "notes.onnx").write_text("not a graph")
    (tmp_path / "more.onnx").write_text("nor this")
    with pytest.raises(ModelError, match=r"^2 of the artifacts cannot be measured: .*none.pt.*; "):
        benchmark([ckpt, tmp_path / "none.pt", tmp_path / "none.xml"])
    with pytest.raises(ModelError, match=r"^2 of the artifacts cannot be measured: .*notes.onnx"):
        benchmark([ckpt, tmp_path / "notes.onnx", tmp_path / "more.onnx"])
    # audit43 bench L: a missing file hid the unreadable ones (named on the next run)
    with pytest.raises(ModelError, match=r"^3 of the artifacts cannot be measured: .*none.pt"):
        benchmark([tmp_path / "none.pt", tmp_path / "notes.onnx", tmp_path / "more.onnx"])
    with pytest.raises(ConfigError, match=r"notes.onnx is given twice"):  # review2 F4
        benchmark([tmp_path / "notes.onnx", tmp_path / "notes.onnx"])
    cfg = LatencyConfig(rounds=1, runs_per_round=1, warmup=0, threads=1)
    with caplog.at_level("WARNING", logger="yoloslim"):
        benchmark([ys.load(onnx_path, threads=2)], batches=(1,), latency=cfg)
    assert "its threads=2 are not carried over" in caplog.text


def test_the_tables_ratios_are_rounded_once():
    # audit31 fresh L4: the JSON's ratios (3 decimals) rounded again showed 0.1346 as 0.14,
    # beside the demo's 0.13
    from yoloslim.bench.report import table_rows

    def row(name, size, median):
        return {"name": name, "params": None, "size_mb": size, "map": None, "map50": None,
                "latency_ms": {"median": median, "p90": median}, "ratios": {}}  # fmt: skip

    cells = table_rows({"rows": [row("a", 10.0, 10.65), row("b", 1.346, 4.035)]})
    assert cells[1][-2:] == ["2.64", "0.13"] and cells[0][-2:] == ["1.00", "1.00"]


def test_a_compress_runs_folder_is_no_bench_report_folder(artifacts, tmp_path, capsys):
    # audit32 bench M1: bench --report into a compress run's folder replaced its report and
    # removed its pareto.png, and --json there named it "the report of the bench run"
    from yoloslim.bench.report import report_folder_record

    run = tmp_path / "run"
    run.mkdir()
    (run / "compress.json").write_text('{"stages": [], "recipe": "r"}')
    (run / "report.json").write_text('{"rows": []}')
    (run / "report.md").write_text("# yoloslim benchmark\\n")
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    assert main(["bench", str(artifacts[1]), "--report", str(run), "--rounds", "1"]) == 2
    assert "is a compress run's folder (its compress.json)" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
    assert report_folder_record(run / "report.json").startswith("the bench table of the compress")
