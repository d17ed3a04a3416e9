"""A result's repr is one line: the model's class and size, the report's keys, the files."""

import json
from pathlib import Path

from yoloslim.models import build_model
from yoloslim.nas.search import SearchResult
from yoloslim.result import Result
from yoloslim.train import TrainResult


def test_results_print_in_one_line_without_the_module_tree(tmp_path):
    model = build_model("damo-nano", nc=2)
    n = sum(p.numel() for p in model.parameters()) / 1e6
    res = Result(model, {"map": 0.5, "rows": [1, 2]}, {"onnx": Path("m.onnx")})
    assert repr(res) == (
        f"Result(model=<Detector, {n:.2f} M params>, report=<keys: map, rows>, "
        "artifacts={'onnx': 'm.onnx'})"
    )
    tr = TrainResult(model, {"best_map": 0.5}, Path("b.pt"), None)
    assert "\n" not in repr(tr) and "artifacts={'best': 'b.pt'}" in repr(tr)
    assert repr(Result("a.onnx")) == "Result(model='a.onnx', report={}, artifacts={})"


def test_search_result_reports_like_every_stage(tmp_path):
    sr = SearchResult({"nc": 2}, 1.5, {"score": 1.5}, [], {"arch": tmp_path / "arch.yaml"})
    assert repr(sr).startswith("SearchResult(score=1.5, arch=<keys: nc>, report=<keys: score>")
    saved = json.loads(sr.save_report(tmp_path / "r.json").read_text())
    assert saved == {"report": {"score": 1.5}, "artifacts": {"arch": str(tmp_path / "arch.yaml")}}
    assert json.loads(sr.to_json()) == saved
