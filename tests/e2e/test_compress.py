"""compress RECIPE end to end on a tiny synthetic set: every stage, every report file, resume."""

import json
from pathlib import Path

import pytest

from yoloslim.data.synth import synthesize
from yoloslim.errors import ConfigError
from yoloslim.pipeline import run_recipe
from yoloslim.train import TrainConfig, train

S = 64
RECIPE = {
    "name": "tiny",
    "stages": [
        {"prune": {"ratio": 0.3, "finetune_epochs": 1, "imgsz": S, "batch": 4, "latency": False}},
        {"distill": {"loss": "cwd", "train": {"epochs": 1, "imgsz": S, "batch": 4, "workers": 0}}},
        {"reparam": {}},
        {"export": {"formats": ["onnx", "openvino"], "imgsz": S}},
        {"quantize": {"backend": "openvino", "calib": 4, "imgsz": S}},
        {"bench": {"batches": [1], "rounds": 2, "runs_per_round": 2, "threads": 1, "imgsz": S}},
    ],
}


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("compress")
    data = synthesize(root / "data", images=12, imgsz=S, classes=2, seed=1, val_fraction=0.25)
    cfg = TrainConfig(epochs=1, batch=4, imgsz=S, workers=0, val_interval=1)
    return train("damo-nano", data, config=cfg, out=root / "base").best, data


def test_recipe_runs_every_stage_and_resumes(base, tmp_path, monkeypatch):
    ckpt, data = base
    out = tmp_path / "run"
    res = run_recipe(ckpt, data, RECIPE, out=out)
    for name in ("report.md", "report.json", "pareto.png", "recipe.yaml", "compress.json"):
        assert (out / name).is_file(), name
    dirs = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert dirs == ["01-prune", "02-distill", "03-reparam", "04-export", "05-quantize", "06-bench"]
    report = json.loads((out / "report.json").read_text())
    names = [r["name"] for r in report["rows"]]
    assert names[0] == "baseline (OV float)"
    assert {"pruned (OV float)", "distilled (OV float)", "int8-openvino"} <= set(names)
    assert report["rows"][0]["ratios"]["speedup"] == 1.0
    # the pruned model really is smaller than the baseline
    rows = {r["name"]: r for r in report["rows"]}
    assert rows["pruned (OV float)"]["params"] < rows["baseline (OV float)"]["params"]
    assert Path(res.model).is_file() and res.model.endswith(".pt")

    # a second run in the same folder needs --resume, and resume runs nothing again
    with pytest.raises(ConfigError, match="pass --resume"):
        run_recipe(ckpt, data, RECIPE, out=out)
    import yoloslim.pipeline as pl

    def boom(*a, **k):
        raise AssertionError("a finished stage ran again")

    for key in list(pl._RUNNERS):
        monkeypatch.setitem(pl._RUNNERS, key, boom)
    monkeypatch.setattr(pl, "_stage_bench", boom)
    again = run_recipe(ckpt, data, RECIPE, out=out, resume=True)
    assert again.report["final_model"] == res.report["final_model"]


def test_resume_reruns_only_unfinished_stages(base, tmp_path, monkeypatch):
    ckpt, data = base
    recipe = {"stages": [RECIPE["stages"][3], RECIPE["stages"][5]]}  # export, bench
    out = tmp_path / "run"
    run_recipe(ckpt, data, recipe, out=out)
    (out / "02-bench" / "stage.json").unlink()  # as if interrupted during bench
    import yoloslim.pipeline as pl

    def boom(*a, **k):
        raise AssertionError("export ran again")

    monkeypatch.setitem(pl._RUNNERS, "export", boom)
    res = run_recipe(ckpt, data, recipe, out=out, resume=True)
    assert (out / "02-bench" / "stage.json").is_file() and res.report["bench"]["rows"]


def test_changed_recipe_refuses_resume(base, tmp_path):
    ckpt, data = base
    recipe = {"stages": [{"export": {"formats": ["onnx"], "imgsz": S}}]}
    run_recipe(ckpt, data, recipe, out=tmp_path / "r")
    recipe["stages"][0]["export"]["formats"] = ["openvino"]
    with pytest.raises(ConfigError, match="recipe changed"):
        run_recipe(ckpt, data, recipe, out=tmp_path / "r", resume=True)
    with pytest.raises(ConfigError, match="does not exist"):
        run_recipe(tmp_path / "missing.pt", data, recipe, out=tmp_path / "x")
