"""compress RECIPE end to end on a tiny synthetic set: every stage, every report file, resume."""

import json
import logging
import struct
import sys
from pathlib import Path

import pytest
import torch
import yaml

from yoloslim.budget_mode import run_budget, select_candidate
from yoloslim.cli.main import main
from yoloslim.data.synth import synthesize
from yoloslim.errors import ConfigError, DataError, ModelError
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
    # the plot is a PNG image with a width and a height (its IHDR chunk, right after the
    # 8-byte signature: length, "IHDR", then width and height as big-endian uint32)
    png = (out / "pareto.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
    width, height = struct.unpack(">II", png[16:24])
    assert width > 100 and height > 100 and len(png) > 1000
    dirs = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert dirs == ["01-prune", "02-distill", "03-reparam", "04-export", "05-quantize", "06-bench"]
    report = json.loads((out / "report.json").read_text())
    names = [r["name"] for r in report["rows"]]
    # a checkpoint's row is its FP32 IR, labelled with what the plugin computed it in
    from yoloslim.runtime.ov_core import default_precision

    ov = f"(OV {default_precision()})"
    assert names[0] == f"baseline {ov}"
    assert {f"pruned {ov}", f"distilled {ov}", "int8-openvino"} <= set(names)
    assert all(r["precision"] == default_precision() for r in report["rows"] if ov in r["name"])
    assert report["rows"][0]["ratios"]["speedup"] == 1.0
    # the pruned model really is smaller than the baseline
    rows = {r["name"]: r for r in report["rows"]}
    assert rows[f"pruned {ov}"]["params"] < rows[f"baseline {ov}"]["params"]
    assert isinstance(res.model, Path) and res.model.is_file() and res.model.suffix == ".pt"
    # the deliverable is named too: the last stage's product, not only the checkpoint
    ((name, path),) = res.report["deployable"].items()
    assert name == "int8-openvino" and Path(path).parent.parent == out / "05-quantize"
    # quantize took the export stage's ONNX of the same checkpoint instead of exporting again
    quant = json.loads((out / "05-quantize" / "quant_report.json").read_text())
    assert Path(quant["source"]).parent == out / "04-export" and quant["source"].endswith(".onnx")
    assert "latency_ms" not in quant["int8"]  # the bench stage measures it, side by side

    # a second run in the same folder needs --resume, and resume runs nothing again
    with pytest.raises(ConfigError, match=r"resume it \(--resume, resume=True\)"):
        run_recipe(ckpt, data, RECIPE, out=out)
    import yoloslim.pipeline as pl

    def boom(*a, **k):
        raise AssertionError("a finished stage ran again")

    for key in list(pl._RUNNERS):
        monkeypatch.setitem(pl._RUNNERS, key, boom)
    monkeypatch.setattr(pl, "_stage_bench", boom)
    again = run_recipe(ckpt, data, RECIPE, out=out, resume=True)
    assert again.report["final_model"] == res.report["final_model"]


def test_resume_reruns_only_unfinished_stages(base, tmp_path, monkeypatch, caplog):
    ckpt, data = base
    recipe = {"stages": [RECIPE["stages"][3], RECIPE["stages"][5]]}  # export, bench
    out = tmp_path / "run"
    run_recipe(ckpt, data, recipe, out=out)
    (out / "02-bench" / "stage.json").unlink()  # as if interrupted during bench
    import yoloslim.pipeline as pl

    def boom(*a, **k):
        raise AssertionError("export ran again")

    real_export = pl._RUNNERS["export"]
    monkeypatch.setitem(pl._RUNNERS, "export", boom)
    said = []  # with progress, each stage is named before its bars
    monkeypatch.setattr(pl, "_say", said.append)
    argv = ["/venv/bin/yoloslim", "compress", "--out", str(out), "--resume"]
    monkeypatch.setattr(sys, "argv", argv)
    res = run_recipe(ckpt, data, recipe, out=out, resume=True, progress=True)
    assert (out / "02-bench" / "stage.json").is_file() and res.report["bench"]["rows"]
    # the report's command reproduces the run on a fresh machine, where there is no run to
    # resume: the command without --resume
    assert res.report["bench"]["command"].endswith(f"&& yoloslim compress --out {out}")
    assert "--resume" not in (out / "report.md").read_text()
    assert said == [
        "stage 1/2 (export): finished earlier, kept",
        f"stage 2/2 (bench) -> {out / '02-bench'}",
    ]
    # a finished stage whose output is gone runs again from scratch, and the stages after it
    onnx_file = Path(res.report["deployable"]["export-onnx"])
    onnx_file.unlink()
    (out / "01-export" / "model.torchscript").write_text("x")  # an earlier export's
    (out / "01-export" / "notes.txt").write_text("mine")  # a user's: kept
    monkeypatch.setitem(pl._RUNNERS, "export", real_export)
    with caplog.at_level("WARNING", logger="yoloslim"):
        again = run_recipe(ckpt, data, recipe, out=out, resume=True)
    assert f"{onnx_file} is gone; running it again" in caplog.text
    assert onnx_file.is_file() and not (out / "01-export" / "model.torchscript").exists()
    assert (out / "01-export" / "notes.txt").read_text() == "mine"
    assert "kept notes.txt, which no stage writes" in caplog.text
    assert again.report["bench"]["rows"]
    # one cut short (a full disk, a partial copy) runs again too: it was kept and named the
    # run's artifact (audit42 corrupt F6)
    whole = onnx_file.read_bytes()
    onnx_file.write_bytes(whole[: len(whole) // 2])
    caplog.clear()
    with caplog.at_level("WARNING", logger="yoloslim"):
        run_recipe(ckpt, data, recipe, out=out, resume=True)
    said = f"{onnx_file} is {len(whole) // 2} bytes, not the {len(whole)} it was made with"
    assert f"{said}; running it again" in caplog.text
    assert onnx_file.read_bytes() == whole
    # a copy resumes with nothing to run; its kept reports named the original's files, and
    # are written again with the copy's (as its stage records are)
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    for key in list(pl._RUNNERS):
        monkeypatch.setitem(pl._RUNNERS, key, boom)
    monkeypatch.setattr(pl, "_stage_bench", boom)
    run_recipe(ckpt, data, recipe, out=copy, resume=True)
    for f in (copy / "report.json", copy / "02-bench" / "report.json"):
        assert f'"{out}/' not in f.read_text() and f'"{copy}/' in f.read_text(), f
    assert (copy / "report.md").read_text() == (copy / "02-bench" / "report.md").read_text()


def test_a_change_in_a_stage_that_never_finished_resumes_keeping_the_stages_before(
    base, tmp_path, monkeypatch, caplog
):
    # audit26 recipe M1: a mistake fixed in the stage that stopped the run was refused as a
    # changed recipe, and the only way on was a new folder: every finished stage again
    import yoloslim.pipeline as pl

    ckpt, data = base
    real, calls = pl._RUNNERS["export"], []

    def second_fails(st, cfg, *args):
        calls.append(list(cfg.formats))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(st, cfg, *args)

    monkeypatch.setitem(pl._RUNNERS, "export", second_fails)
    first = {"export": {"formats": ["onnx"], "imgsz": S}}
    recipe = {"stages": [first, {"export": {"formats": ["onnx"], "imgsz": S, "verify": False}}]}
    with pytest.raises(KeyboardInterrupt):
        run_recipe(ckpt, data, recipe, out=tmp_path / "r")
    recipe["stages"][1] = {"export": {"formats": ["torchscript"], "imgsz": S}}
    # a resume refused (here: another run holds the folder) says nothing of going on
    # (review2 N6: "the run goes on with this recipe", then the refusal)
    from yoloslim.fileio import folder_lock

    with caplog.at_level(logging.WARNING, logger="yoloslim"):
        with folder_lock(tmp_path / "r", "compress"), pytest.raises(ConfigError):
            run_recipe(ckpt, data, recipe, out=tmp_path / "r", resume=True)
        assert "the recipe changed" not in caplog.text
        # the changed stage's settings are checked as a new run's: a distill stage's own
        # check is off in a compress run (audit51 review2 N1: nothing refused them)
        idle = {"distill": {"logit_weight": 0, "temperature": 5.0, "train": {"epochs": 1}}}
        with pytest.raises(ConfigError, match=r"stage 2 \(distill\): DistillConfig.temperat"):
            run_recipe(ckpt, data, {"stages": [first, idle]}, out=tmp_path / "r", resume=True)
        run_recipe(ckpt, data, recipe, out=tmp_path / "r", resume=True)
    assert calls == [["onnx"], ["onnx"], ["torchscript"]]  # stage 1 kept, stage 2 the new one
    assert "the recipe changed from stage 2 on (stage 2 (export) formats" in caplog.text
    saved = yaml.safe_load((tmp_path / "r" / "recipe.yaml").read_text())
    assert saved["stages"][1]["export"]["formats"] == ["torchscript"]
    # once that stage finished, a change to it is refused as before
    recipe["stages"][1] = {"export": {"formats": ["onnx"], "imgsz": S}}
    finished = r"in a stage that finished; resume with the recipe and --set .* or use another"
    with pytest.raises(ConfigError, match=finished):
        run_recipe(ckpt, data, recipe, out=tmp_path / "r", resume=True)


def test_changed_recipe_refuses_resume(base, tmp_path):
    ckpt, data = base
    recipe = {"stages": [{"export": {"formats": ["onnx"], "imgsz": S}}]}
    run_recipe(ckpt, data, recipe, out=tmp_path / "r")
    # a run written before a setting existed (its recipe.yaml lacks it) resumes: the setting's
    # default is what that run used
    saved = tmp_path / "r" / "recipe.yaml"
    text = saved.read_text()
    assert "triton_max_batch: 16\n" in text
    saved.write_text(text.replace("    triton_max_batch: 16\n", ""))
    run_recipe(ckpt, data, recipe, out=tmp_path / "r", resume=True)
    recipe["stages"][0]["export"]["formats"] = ["openvino"]
    changed = r"recipe changed since this run \(stage 1 \(export\) formats: \['onnx'\] then, \['openvino'\] now\)"
    with pytest.raises(ConfigError, match=changed):
        run_recipe(ckpt, data, recipe, out=tmp_path / "r", resume=True)
    # what changed is named from the saved recipe read with today's defaults too: a run from
    # before a setting existed, changed in a later stage, is not said to differ in that setting
    two = {"stages": [{"export": {"formats": ["onnx"], "imgsz": S}}] * 2}
    run_recipe(ckpt, data, two, out=tmp_path / "t")
    saved = tmp_path / "t" / "recipe.yaml"
    saved.write_text(saved.read_text().replace("    triton_max_batch: 16\n", "", 1))
    two["stages"] = [
        two["stages"][0],
        {"export": {"formats": ["onnx"], "imgsz": S, "verify": False}},
    ]
    with pytest.raises(ConfigError, match=r"\(stage 2 \(export\) verify: True then, False now\)"):
        run_recipe(ckpt, data, two, out=tmp_path / "t", resume=True)
    with pytest.raises(ConfigError, match="does not exist"):
        run_recipe(tmp_path / "missing.pt", data, recipe, out=tmp_path / "x")
    # a finished run whose recipe.yaml is gone is refused too, not emptied (audit44 compress F1)
    (tmp_path / "r" / "recipe.yaml").unlink()
    with pytest.raises(ConfigError, match="finished stages but not its recipe.yaml"):
        run_recipe(ckpt, data, recipe, out=tmp_path / "r")
    assert (tmp_path / "r" / "01-export" / "stage.json").is_file()
    # its inputs.json gone: one answer with or without resume (each sent to the other)
    (tmp_path / "t" / "inputs.json").unlink()
    for resume in (False, True):
        with pytest.raises(ConfigError, match="finished stages but not its inputs.json, which"):
            run_recipe(ckpt, data, two, out=tmp_path / "t", resume=resume)


def test_bench_stage_refuses_a_size_a_static_artifact_cannot_run(base, tmp_path, monkeypatch):
    import yoloslim.pipeline as pl

    ckpt, data = base
    recipe = {
        "stages": [
            {"export": {"formats": ["onnx"], "imgsz": S}},
            {"bench": {"batches": [1], "rounds": 1, "runs_per_round": 1, "imgsz": S + 32}},
        ]
    }
    spawned = []
    monkeypatch.setattr("yoloslim.bench.measure.measure_latency", lambda *a: spawned.append(a))
    # refused when the recipe is read, before the export stage spends any time
    with pytest.raises(ConfigError, match=f"stage 2 \\(bench\\) has imgsz={S + 32} but stage 1"):
        pl.run_recipe(ckpt, data, recipe, out=tmp_path / "r")
    assert not spawned and not (tmp_path / "r").exists()


BUDGET_RECIPE = {
    "stages": [
        {"prune": {"finetune_epochs": 0, "imgsz": S, "batch": 4, "latency": False}},
        {"quantize": {"backend": "openvino", "calib": 4, "imgsz": S}},
        {"bench": {"batches": [1], "rounds": 2, "runs_per_round": 2, "threads": 1}},
    ]
}


def test_budget_mode_measures_the_grid_and_resumes(base, tmp_path, monkeypatch, caplog):
    ckpt, data = base
    out = tmp_path / "budget"
    res = run_budget(ckpt, data, BUDGET_RECIPE, out=out, max_drop=100.0, ratios=(0.3,))
    saved = json.loads((out / "budget.json").read_text())
    front = saved["front"]
    assert [(e["ratio"], e["scheme"]) for e in front] == [
        (0.0, "float"),
        (0.0, "int8"),
        (0.3, "float"),
        (0.3, "int8"),
    ]
    assert front[0]["drop_points"] == 0.0
    assert all(Path(e["path"]).exists() and e["ok"] for e in front)  # 100 points allow all
    fastest = min(front, key=lambda e: e["latency_ms"])
    assert saved["selected"]["name"] == fastest["name"] == res.report["selected"]["name"]
    assert (out / "report.md").is_file() and len(saved["bench"]["rows"]) == 4
    # and report.md says the budget and the pick (audit23 budget L8: only budget.json did)
    md = (out / "report.md").read_text()
    assert "## Budget" in md and f"Selected: **{fastest['name']}**" in md
    assert md.count("| yes |") >= 1 and "mAP50-95 drop <= 100.0 points" in md

    with pytest.raises(ConfigError, match=r"resume it \(--resume, resume=True\)"):
        run_budget(ckpt, data, BUDGET_RECIPE, out=out, max_drop=1.0, ratios=(0.3,))
    import yoloslim.bench.measure as measure_mod
    import yoloslim.compress.prune as prune_mod
    import yoloslim.compress.quantize as quant_mod

    export_mod = sys.modules["yoloslim.export"]  # the package attribute is the function

    def boom(*a, **k):
        raise AssertionError("a finished candidate was made or measured again")

    steps = [
        (prune_mod, "prune"),
        (quant_mod, "quantize"),
        (export_mod, "export"),
        (measure_mod, "benchmark"),
    ]
    real = {name: getattr(mod, name) for mod, name in steps}
    for mod, name in steps:
        monkeypatch.setattr(mod, name, boom)
    # resuming with a latency budget nobody meets: the same grid and measurements, reselected
    again = run_budget(
        ckpt, data, BUDGET_RECIPE, out=out, target_latency=1e-6, ratios=(0.3,), resume=True
    )
    assert again.report["selected"] is None and again.model is None
    assert not any(e["ok"] for e in again.report["front"])
    # the reports give the command that makes this selection (they kept the first run's)
    monkeypatch.setattr(sys, "argv", ["/venv/bin/yoloslim", "compress", "--max-drop", "9"])
    run_budget(ckpt, data, BUDGET_RECIPE, out=out, max_drop=9.0, ratios=(0.3,), resume=True)
    assert "yoloslim compress --max-drop 9`" in (out / "report.md").read_text()
    assert [e["latency_ms"] for e in again.report["front"]] == [e["latency_ms"] for e in front]
    # the run records absolute paths (it resumes from any folder) and its inputs: another
    # model, data or recipe template is refused, not answered with the old candidates
    assert all(Path(e["path"]).is_absolute() for e in front)
    other = dict(BUDGET_RECIPE, stages=[{"prune": {"ratio": 0.3, "finetune_epochs": 2}}])
    said = r"prune or quantize stage changed since this run \(.*prune.finetune_epochs: 0 -> 2"
    with pytest.raises(ConfigError, match=said):
        run_budget(ckpt, data, other, out=out, max_drop=1.0, ratios=(0.3,), resume=True)
    two = synthesize(tmp_path / "d2", images=4, imgsz=S, classes=2, seed=0, val_fraction=0.5)
    with pytest.raises(ConfigError, match=r"made with data .*, not "):
        run_budget(ckpt, two, BUDGET_RECIPE, out=out, max_drop=1.0, ratios=(0.3,), resume=True)
    # and a recipe run (compress without a budget) does not take over its folder
    with pytest.raises(ConfigError, match=r"holds a budget run \(grid/\)"):
        run_recipe(ckpt, data, BUDGET_RECIPE, out=out, resume=True)
    # a ratio asked again within its 2-decimal folder is another candidate: pruned again at
    # it, and what was made from it (its float IR, its INT8 model, the measurements) made
    # again too; they were kept, of the old checkpoint (as when a candidate's checkpoint is
    # gone); a stop once it is pruned again leaves the next resume knowing they are stale
    calls = []

    def recorded(name):
        def run(*a, **k):
            calls.append(name)
            return real[name](*a, **k)

        return run

    for mod, name in steps:
        monkeypatch.setattr(mod, name, recorded(name))

    def stopped(*a, **k):
        raise KeyboardInterrupt

    again = dict(max_drop=100.0, ratios=[0.301], resume=True)
    monkeypatch.setattr(export_mod, "export", stopped)  # stopped once pruned again
    with caplog.at_level("WARNING", logger="yoloslim"), pytest.raises(KeyboardInterrupt):
        run_budget(ckpt, data, BUDGET_RECIPE, out=out, **again)
    assert calls == ["prune"]
    # another grid than the run's is said (audit23 budget L3)
    said = " ".join(caplog.text.split())
    assert "the grid changed (ratios [0.3], now [0.301]; dropped [0.3]; added [0.301])" in said
    assert "unused" not in said  # 0.301 prunes again in ratio-0.30 (audit45 budget M/L1)
    # the record that named the ratio-0.30 candidate's files with the old model's numbers
    # went before they were made again (audit23 budget M1)
    assert not (out / "budget.json").exists() and not (out / "report.json").exists()
    monkeypatch.setattr(export_mod, "export", recorded("export"))
    # and in the same resume, the baseline's intermediate ONNX removed with its INT8 model:
    # quantized again from its checkpoint (which quantize exports)
    base_dir = out / "grid" / "ratio-0.00"
    (out / (base_dir / "onnx.txt").read_text().strip()).unlink()
    (base_dir / "int8.txt").unlink()
    res = run_budget(ckpt, data, BUDGET_RECIPE, out=out, **again)
    want = ["prune", "quantize", "export", "export", "quantize", "benchmark"]
    assert calls == want, calls
    assert res.report["front"][2]["ratio"] == 0.301
    cdir = out / "grid" / "ratio-0.30"
    assert (
        json.loads((cdir / "prune" / "prune_report.json").read_text())["config"]["ratio"] == 0.301
    )
    # a copy of the folder resumes on its own files (its markers named the original's), its
    # reports written again where they were removed, nothing made or measured again
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / "report.md").unlink()
    calls.clear()
    res = run_budget(ckpt, data, BUDGET_RECIPE, out=copy, **again)
    assert calls == [] and (copy / "report.md").is_file()
    assert all(Path(e["path"]).is_relative_to(copy) for e in res.report["front"])
    # its kept report.json named the original's files; written again with the copy's
    assert f'"{out}/' not in (copy / "report.json").read_text()
    assert f'"{copy}/' in (copy / "report.json").read_text()


def test_budget_mode_bad_arguments(base, tmp_path, caplog, monkeypatch):
    ckpt, data = base
    notes = tmp_path / "notes"  # a user's report.md: refused before the grid, not after it
    notes.mkdir()
    (notes / "report.md").write_text("# my notes\n")
    with pytest.raises(ConfigError, match="report.md is not a bench report"):
        run_budget(ckpt, data, BUDGET_RECIPE, out=notes, max_drop=1)
    assert sorted(p.name for p in notes.iterdir()) == ["report.md"]
    # the bench stage's batches and imgsz, and any stage but prune/quantize/bench, go unused:
    # said once the run goes on, before its hours of work (not before a refusal: audit45
    # review2 N6)
    told = dict(BUDGET_RECIPE, stages=[BUDGET_RECIPE["stages"][0], {"reparam": {}}])
    told["stages"].append({"bench": {"batches": [1, 8], "imgsz": 96, "rounds": 2}})
    with caplog.at_level(logging.WARNING, "yoloslim"), pytest.raises(ConfigError):
        run_budget(ckpt, data, told, out=notes, max_drop=1)
    assert "does not run" not in caplog.text and "not used" not in caplog.text

    def stop(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr("yoloslim.compress.prune.prune", stop)
    with caplog.at_level(logging.WARNING, "yoloslim"), pytest.raises(KeyboardInterrupt):
        run_budget(ckpt, data, told, out=tmp_path / "told", max_drop=1, ratios=(0.3,))
    said = caplog.text
    assert "its reparam stage does not run" in said
    assert "bench batches=[1, 8] and imgsz=96 are not used" in said
    # a bench size that is the quantize stage's (given there, or filled in from there) is the
    # size the candidates are measured at: no warning of it
    caplog.clear()
    with caplog.at_level(logging.WARNING, "yoloslim"), pytest.raises(KeyboardInterrupt):
        run_budget(ckpt, data, BUDGET_RECIPE, out=tmp_path / "quiet", max_drop=1, ratios=(0.3,))
    assert "not used" not in caplog.text
    with pytest.raises(ConfigError, match="needs a latency target and/or a max drop"):
        run_budget(ckpt, data, BUDGET_RECIPE, out=tmp_path / "a")
    with pytest.raises(ConfigError, match=r"max_drop=-1 \(--max-drop\)"):
        run_budget(ckpt, data, BUDGET_RECIPE, out=tmp_path / "b", max_drop=-1)
    with pytest.raises(ConfigError, match=r"target_latency=0 \(--target-latency\)"):
        run_budget(ckpt, data, BUDGET_RECIPE, out=tmp_path / "c", target_latency=0)
    with pytest.raises(ConfigError, match="needs a trained checkpoint"):
        run_budget(tmp_path / "none.pt", data, BUDGET_RECIPE, out=tmp_path / "d", max_drop=1)
    with pytest.raises(ConfigError, match="ratios"):
        run_budget(ckpt, data, BUDGET_RECIPE, out=tmp_path / "e", max_drop=1, ratios=(1.2,))
    # wrong types: a ConfigError naming the argument, not a TypeError from inside
    for kwargs, said in (
        ({"ratios": "0.25,0.5"}, r"ratios='0.25,0.5' \(--ratios\): give a list of prune"),
        ({"ratios": None}, r"ratios=None \(--ratios\): give a list"),
        ({"max_drop": "1"}, r"max_drop='1' \(--max-drop\): must be a number"),
        ({"target_latency": "5", "max_drop": None}, r"target_latency='5' .*must be a number"),
    ):
        with pytest.raises(ConfigError, match=said):
            run_budget(ckpt, data, BUDGET_RECIPE, out=tmp_path / "e", **{"max_drop": 1, **kwargs})
    # a model inside a candidate's folder of the run: refused before the markers are dropped
    inside = tmp_path / "m" / "grid" / "ratio-0.25" / "prune" / "pruned.pt"
    inside.parent.mkdir(parents=True)
    inside.write_bytes(Path(ckpt).read_bytes())
    with pytest.raises(ConfigError, match=r"this run writes .*grid, which would overwrite it"):
        run_budget(inside, data, BUDGET_RECIPE, out=tmp_path / "m", max_drop=1)
    with pytest.raises(ConfigError, match=r"max_drop=nan \(--max-drop\): must be a number"):
        run_budget(ckpt, data, BUDGET_RECIPE, out=tmp_path / "g", max_drop=float("nan"))
    with pytest.raises(ConfigError, match=r"0.25 and 0.254 are the same to two decimals"):
        run_budget(ckpt, data, BUDGET_RECIPE, out=tmp_path / "h", max_drop=1, ratios=(0.25, 0.254))
    with pytest.raises(ConfigError, match=r"the baseline's 0 and 0.001 are the same"):
        run_budget(ckpt, data, BUDGET_RECIPE, out=tmp_path / "h", max_drop=1, ratios=(0.001,))
    for high in (0.999, 0.995, 0.991):  # 0.995 ran as "prune 0.99" (audit42 budget L1)
        with pytest.raises(ConfigError, match=r"a ratio above 0.99 is named .* give at most 0.99"):
            run_budget(
                ckpt, data, BUDGET_RECIPE, out=tmp_path / "h", max_drop=1, ratios=(0.5, high)
            )
    three = synthesize(tmp_path / "d3", images=4, imgsz=S, classes=3, seed=0, val_fraction=0.5)
    with pytest.raises(ModelError, match=r"\(--model\) has 2 classes but .* has 3"):
        run_budget(ckpt, three, BUDGET_RECIPE, out=tmp_path / "i", max_drop=1)
    with pytest.raises(
        ConfigError, match=r"no budget run to resume \(no inputs.json, budget.json or grid/\)"
    ):
        run_budget(ckpt, data, BUDGET_RECIPE, out=tmp_path / "l", max_drop=1, resume=True)
    nobox = synthesize(tmp_path / "d0", images=4, imgsz=S, classes=2, seed=0, val_fraction=0.5)
    for label in (nobox.parent / "labels" / "val").glob("*.txt"):
        label.write_text("")
    with pytest.raises(DataError, match="val split has no labelled box"):
        run_budget(ckpt, nobox, BUDGET_RECIPE, out=tmp_path / "k", max_drop=1)
    depth = {"name": "d", "stages": [{"prune": {"method": "depth", "depth_ratio": 0.5}}]}
    with pytest.raises(ConfigError, match="depth"):
        run_budget(ckpt, data, depth, out=tmp_path / "j", max_drop=1)
    # each refused before anything was made
    assert not [p.name for p in tmp_path.iterdir() if p.name in "abcdeghijkl"]
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(BUDGET_RECIPE))
    args = ["compress", "--model", str(ckpt), "--data", str(data), "--recipe", str(recipe)]
    assert main([*args, "--out", str(tmp_path / "f"), "--max-drop", "1", "--ratios", "a,b"]) == 2
    # --ratios without a budget would be ignored: the recipe would run instead
    assert main([*args, "--out", str(tmp_path / "f"), "--ratios", "0.3"]) == 2
    assert not (tmp_path / "f").exists()


def test_a_baseline_at_another_size_than_the_recipe_makes_is_refused_up_front(base, tmp_path):
    # edge-tiny searches and trains at 320 and its bench has no imgsz: a --model trained at
    # another size failed in the bench stage, after the search and hours of training
    ckpt, data = base
    recipe = {
        "name": "n",
        "stages": [
            {"nas": {"imgsz": 96, "budget": {"flops": 0.5}, "iterations": 2}},
            {"train": {"epochs": 1}},
            {"bench": {"batches": [1]}},
        ],
    }
    with pytest.raises(ConfigError, match=r"trained at 64 px, but stage 1 \(nas\) makes models"):
        run_recipe(ckpt, data, recipe, out=tmp_path / "n")
    # the way out names every stage that must take the size, not the bench stage alone
    recipe["stages"][2:2] = [{"export": {"formats": ["onnx"]}}, {"quantize": {"calib": 4}}]
    fix = r"or imgsz=96 to stages 3 \(export\), 4 \(quantize\) and 5 \(bench\)$"
    with pytest.raises(ConfigError, match=fix):
        run_recipe(ckpt, data, recipe, out=tmp_path / "n")
    # a prune stage fine-tunes and records the pruned model at its own imgsz, and a train
    # stage that names a registered model trains it at 320
    bench = {"bench": {"batches": [1]}}
    for stage, fixed in (
        ({"prune": {"ratio": 0.3, "imgsz": 96}}, r"stage 1 \(prune\) makes models at 96 px"),
        ({"train": {"model": "damo-nano", "epochs": 1}}, r"stage 1 \(train\) makes models at 320"),
    ):
        with pytest.raises(ConfigError, match=rf"trained at 64 px, but {fixed}"):
            run_recipe(ckpt, data, {"stages": [stage, bench]}, out=tmp_path / "n")
    # a model name that is no model is refused as such, not as a size
    typo = {"stages": [{"train": {"model": "damo-nanoo", "epochs": 1}}, bench]}
    with pytest.raises(ConfigError, match=r"'damo-nanoo' is neither a file nor a registered"):
        run_recipe(ckpt, data, typo, out=tmp_path / "n")
    assert not (tmp_path / "n").exists()
    # a train stage's model of the baseline's size, or a prune stage at it, passes the check
    from yoloslim.pipeline import _check_baseline_size
    from yoloslim.recipe import load_recipe

    for stage in ({"train": {"model": str(ckpt), "epochs": 1}}, {"prune": {"imgsz": S}}):
        _check_baseline_size(load_recipe({"stages": [stage, bench]}), str(ckpt))


def _row(name: str, map_: float, ms: float) -> dict:
    return {"name": name, "map": map_, "latency_ms": {"median": ms}}


def test_select_candidate_keeps_the_fastest_within_budget():
    cands = [(0.0, "float", "a"), (0.0, "int8", "b"), (0.5, "float", "c"), (0.5, "int8", "d")]
    rows = [_row("a", 0.30, 10.0), _row("b", 0.297, 6.0), _row("c", 0.29, 5.0), _row("d", 0.2, 2.0)]
    front, best = select_candidate(cands, rows, max_drop=0.5, target_latency=None)
    assert [e["ok"] for e in front] == [True, True, False, False]
    assert best["name"] == "b" and front[3]["drop_points"] == pytest.approx(10.0)
    _, best = select_candidate(cands, rows, max_drop=1.0, target_latency=None)
    assert best["name"] == "c"
    _, best = select_candidate(cands, rows, max_drop=None, target_latency=5.5)
    assert best["name"] == "d"
    _, best = select_candidate(cands, rows, max_drop=0.1, target_latency=5.5)
    assert best is None
    # decided on the drop as reported (3 decimals): 0.2834 shows as 0.283, within 0.283
    rows[1] = _row("b", 0.30 - 0.002834, 6.0)
    front, best = select_candidate(cands, rows, max_drop=0.283, target_latency=None)
    assert front[1]["drop_points"] == 0.283 and front[1]["ok"] and best["name"] == "b"
    # and on the latency as the front table shows it (3 decimals): 5.0004 is 5.000
    rows[3] = _row("d", 0.2, 5.0004)
    front, best = select_candidate(cands, rows, max_drop=None, target_latency=5.0)
    assert front[3]["latency_ms"] == 5.0 and front[3]["ok"]
    # equally fast: the higher mAP, not the earlier in the grid
    rows[2] = _row("c", 0.29, 5.0)
    _, best = select_candidate(cands, rows, max_drop=None, target_latency=5.0)
    assert best["name"] == "c"
    # a candidate a hair above the baseline drops 0.0 points, not "-0.000" (audit45 budget L3)
    rows[1] = _row("b", 0.30000000000000004, 6.0)  # the next float above 0.3
    front, _ = select_candidate(cands, rows, max_drop=None, target_latency=None)
    assert str(front[1]["drop_points"]) == "0.0"


def test_a_grid_change_names_only_the_ratio_folders_left_unused(tmp_path, caplog):
    from yoloslim.budget_mode import _say_grid_change

    record = tmp_path / "budget.json"
    record.write_text(json.dumps({"front": [{"ratio": 0.3}, {"ratio": 0.6}]}))
    with caplog.at_level("WARNING", logger="yoloslim"):
        _say_grid_change(record, [0.301, 0.6])  # 0.301 prunes again in ratio-0.30
        assert "unused" not in caplog.text
        _say_grid_change(record, [0.6])
    assert "the files of [0.3] stay in grid/ unused" in caplog.text


def test_finished_bench_is_reused_only_for_the_same_candidates_and_settings(tmp_path):
    from yoloslim.budget_mode import _finished_bench

    settings = {"rounds": 2, "runs_per_round": 2, "threads": 1, "data": "d.yaml"}
    x, y, z = (str(tmp_path / "grid" / "ratio-0.00" / f"{n}.xml") for n in "xyz")
    rows = [{"name": "a", "path": x}, {"name": "b", "path": y}]
    saved = tmp_path / "budget.json"
    assert _finished_bench(saved, [x, y], ["a", "b"], settings) is None  # no run
    saved.write_text(json.dumps({"bench": {"rows": rows, "settings": {**settings, "imgsz": 64}}}))
    assert _finished_bench(saved, [x, y], ["a", "b"], settings)["rows"] == rows
    assert _finished_bench(saved, [x, z], ["a", "b"], settings) is None
    assert _finished_bench(saved, [x], ["a"], settings) is None
    assert _finished_bench(saved, [x, y], ["a", "b"], {**settings, "rounds": 3}) is None
    # the record of the folder this one was copied from: its rows name this folder's files
    there = [{**r, "path": r["path"].replace(str(tmp_path), "/elsewhere/run")} for r in rows]
    saved.write_text(json.dumps({"bench": {"rows": there, "settings": settings}}))
    assert _finished_bench(saved, [x, y], ["a", "b"], settings)["rows"] == rows


def test_a_recipe_file_the_run_would_delete_or_replace_is_refused(base, tmp_path):
    # a recipe kept in a stage folder was deleted with it; a user's OUT/recipe.yaml replaced
    ckpt, data = base
    text = f"# mine\nstages:\n  - export: {{formats: [onnx], imgsz: {S}}}\n"
    for where in (tmp_path / "a" / "01-export" / "my.yaml", tmp_path / "b" / "recipe.yaml"):
        where.parent.mkdir(parents=True)
        where.write_text(text)
        with pytest.raises(ConfigError, match=r"recipe=.*this run writes .*choose another"):
            run_recipe(
                ckpt, data, where, out=where.parents[1] if "01-" in str(where) else where.parent
            )
        assert where.read_text() == text
    # the run's own resolved recipe, given back on resume, is its record: accepted
    run_recipe(ckpt, data, yaml.safe_load(text), out=tmp_path / "c")
    run_recipe(ckpt, data, tmp_path / "c" / "recipe.yaml", out=tmp_path / "c", resume=True)


def _stop_distill_after_epoch_0(ckpt, data, recipe: dict, out: Path) -> None:
    """Run ``recipe`` into ``out``, stopped (KeyboardInterrupt) after its distill stage's
    first epoch."""
    import yoloslim.compress.distill as distill_mod

    real = distill_mod.train

    def stopped_after_epoch_0(*a, **k):
        def stop(epoch, row):
            if epoch == 0:
                raise KeyboardInterrupt

        return real(*a, **k, on_epoch_end=stop)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(distill_mod, "train", stopped_after_epoch_0)
        with pytest.raises(KeyboardInterrupt):
            run_recipe(ckpt, data, recipe, out=out)


def test_an_interrupted_distill_stage_goes_on_from_its_last_epoch(base, tmp_path, monkeypatch):
    import yoloslim.compress.distill as distill_mod

    ckpt, data = base
    train = {"epochs": 2, "imgsz": S, "batch": 4, "workers": 0}
    recipe = {"stages": [{"distill": {"train": train}}]}
    out = tmp_path / "run"
    real = distill_mod.train
    _stop_distill_after_epoch_0(ckpt, data, recipe, out)
    metrics = out / "01-distill" / "metrics.jsonl"
    assert [json.loads(x)["epoch"] for x in metrics.read_text().splitlines()] == [0]
    trained = []

    def recorded(*a, **k):
        return real(*a, **k, on_epoch_end=lambda epoch, row: trained.append(epoch))

    monkeypatch.setattr(distill_mod, "train", recorded)
    run_recipe(ckpt, data, recipe, out=out, resume=True)
    # only epoch 1 was trained, on top of epoch 0, not the stage again from its start
    assert trained == [1]
    assert [json.loads(x)["epoch"] for x in metrics.read_text().splitlines()] == [0, 1]
    assert (out / "01-distill" / "stage.json").is_file()


def test_the_front_table_heads_every_column_and_says_what_drop_is_from(capsys):
    from yoloslim.cli.compress_cmd import _front_table

    cands = [(0.0, "float", "a"), (0.5, "int8", "b")]
    front, best = select_candidate(
        cands, [_row("a", 0.30, 10.0), _row("b", 0.297, 6.0)], max_drop=0.5, target_latency=None
    )
    _front_table({"front": front, "selected": best})
    out = " ".join(capsys.readouterr().out.split())
    assert "drop vs baseline (pts)" in out and "┃ selected ┃" in out  # a column without a head
    assert "drop: from the baseline row's mAP as bench measured it" in out
    assert "0.300 │ 6.000 │ yes │ yes" in out  # b: within budget, and the one selected


def test_budget_mode_without_resume_says_it_makes_an_interrupted_runs_files_again(
    base, tmp_path, monkeypatch, caplog
):
    # the same command without --resume deleted the finished candidates without a word
    ckpt, data = base
    out = tmp_path / "b"
    marker = out / "grid" / "ratio-0.30" / "pruned.txt"
    marker.parent.mkdir(parents=True)
    marker.write_text("pruned.pt\n")

    def stop(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr("yoloslim.compress.prune.prune", stop)
    monkeypatch.setattr("yoloslim.compress.quantize.quantize", stop)
    with caplog.at_level("WARNING", logger="yoloslim"), pytest.raises(KeyboardInterrupt):
        run_budget(ckpt, data, BUDGET_RECIPE, out=out, max_drop=1.0, ratios=(0.3,))
    assert "an interrupted run made 1 candidate file(s) here; this run starts afresh" in (
        caplog.text
    )
    assert not marker.exists()


def test_budget_mode_says_a_prune_target_of_the_recipe_is_not_used(
    base, tmp_path, monkeypatch, caplog
):
    # the grid's ratios replaced a recipe's prune target_flops without a word
    ckpt, data = base
    recipe = json.loads(json.dumps(BUDGET_RECIPE))
    recipe["stages"][0]["prune"]["target_flops"] = 0.05

    def stop(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr("yoloslim.compress.prune.prune", stop)
    monkeypatch.setattr("yoloslim.compress.quantize.quantize", stop)
    said = "the recipe's prune stage sets target_flops=0.05: budget mode prunes each"
    # not before a refusal of the folder (another run holds it): audit45 review2 N6
    from yoloslim.fileio import folder_lock

    with caplog.at_level("WARNING", logger="yoloslim"):
        with folder_lock(tmp_path / "b", "test"), pytest.raises(ConfigError, match="another"):
            run_budget(ckpt, data, recipe, out=tmp_path / "b", max_drop=1.0, ratios=(0.3,))
        assert said not in caplog.text
        with pytest.raises(KeyboardInterrupt):
            run_budget(ckpt, data, recipe, out=tmp_path / "b", max_drop=1.0, ratios=(0.3,))
    assert said in caplog.text


def test_a_stage_file_changed_since_the_run_restarts_its_stage_or_is_refused(
    base, tmp_path, caplog
):
    # audit44 compress F2: a distill stage's teacher replaced after the run: --resume kept the
    # stage made with the old one, without a word (a changed --model was refused). Review F6:
    # an unfinished stage starts afresh with the new file, as for a recipe change there
    import os
    import shutil

    ckpt, data = base
    teacher = shutil.copy(ckpt, tmp_path / "teacher.pt")
    train = {"epochs": 2, "imgsz": S, "batch": 4, "workers": 0}
    recipe = {"stages": [{"distill": {"teacher": str(teacher), "train": train}}]}
    out = tmp_path / "run"
    _stop_distill_after_epoch_0(ckpt, data, recipe, out)
    saved = json.loads((out / "inputs.json").read_text())["stage_files"]
    assert saved["01-distill"]["path"] == str(Path(teacher).resolve())
    st = os.stat(teacher)
    os.utime(teacher, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched: the same file
    first = Path(teacher).read_bytes()
    ck = torch.load(teacher, weights_only=True)
    ck["meta"] = {**(ck.get("meta") or {}), "retrained": 1}
    torch.save(ck, teacher)  # another teacher at the same path
    import yoloslim.compress.distill as distill_mod

    real, trained = distill_mod.train, []

    def recorded(*a, **k):
        return real(*a, **k, on_epoch_end=lambda epoch, row: trained.append(epoch))

    with (
        caplog.at_level(logging.WARNING, logger="yoloslim"),
        pytest.MonkeyPatch.context() as mp,
    ):
        mp.setattr(distill_mod, "train", recorded)
        run_recipe(ckpt, data, recipe, out=out, resume=True)
    assert "the stage had not finished, and starts afresh with it" in caplog.text
    assert trained == [0, 1]  # from its start, not on from epoch 0's last.pt
    Path(teacher).write_bytes(first)  # another file than the run's now
    with pytest.raises(ConfigError, match=r"stage 01-distill's teacher .*teacher\.pt changed"):
        run_recipe(ckpt, data, recipe, out=out, resume=True)
