"""Recipe validation: every mistake is a ConfigError naming the file and the stage."""

import json
import re
from pathlib import Path

import pytest
import yaml
from PIL import Image

from yoloslim.errors import ConfigError
from yoloslim.models import build_model
from yoloslim.pipeline import STAGES, load_recipe

RECIPES = sorted((Path(__file__).parents[2] / "recipes").glob("*.yaml"))


def _write(tmp_path: Path, data) -> Path:
    p = tmp_path / "r.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_shipped_recipes_validate(path):
    rec = load_recipe(path)
    assert rec.stages and all(s.name in STAGES for s in rec.stages)
    # the resolved form is plain YAML and parses back to the same recipe
    again = load_recipe(yaml.safe_load(yaml.safe_dump(rec.resolved())))
    assert again.resolved() == rec.resolved()


def test_a_prune_stage_records_the_ratio_it_runs_at():
    # no goal: the 0.5 default is what runs, and recipe.yaml / prune_report.json say so
    stages = [
        {"prune": {}},
        {"prune": {"ratio": 0.3}},
        {"prune": {"target_flops": 0.6}},
        {"prune": {"method": "depth", "depth_ratio": 0.5}},
    ]
    rec = load_recipe({"stages": stages})
    got = [s["prune"]["ratio"] for s in rec.resolved()["stages"]]
    assert got == [0.5, 0.3, None, None]
    again = load_recipe(yaml.safe_load(yaml.safe_dump(rec.resolved())))
    assert again.resolved() == rec.resolved()
    # a run that recorded `ratio: null` (before this rule) is still the same recipe on resume
    from yoloslim.pipeline import _same_recipe

    old = yaml.safe_load(yaml.safe_dump(rec.resolved()))
    old["stages"][0]["prune"]["ratio"] = None
    now = yaml.safe_dump(rec.resolved(), sort_keys=False)
    assert _same_recipe(yaml.safe_dump(old, sort_keys=False), now, ())
    old["stages"][0]["prune"]["ratio"] = 0.4
    assert not _same_recipe(yaml.safe_dump(old, sort_keys=False), now, ())


def test_shipped_recipes_are_the_four_named():
    assert {p.stem for p in RECIPES} >= {"cpu-int8", "gpu-fp16", "max-accuracy", "edge-tiny"}


def test_a_shipped_recipe_is_found_by_its_name_from_anywhere(tmp_path, monkeypatch, caplog):
    # they are package data: an installed yoloslim has no recipes/ folder beside the user
    from yoloslim.recipe import recipe_path, shipped_recipes

    monkeypatch.chdir(tmp_path)
    assert shipped_recipes() == sorted(p.stem for p in RECIPES)
    for name in ("cpu-int8", "cpu-int8.yaml"):
        assert (
            load_recipe(name).resolved()
            == load_recipe(RECIPES[0].parent / "cpu-int8.yaml").resolved()
        )
    (tmp_path / "cpu-int8.yaml").write_text("stages: [bench]\n")  # a file of that name wins
    assert [s.name for s in load_recipe("cpu-int8.yaml").stages] == ["bench"]
    # the bare name is the shipped recipe: said, as an edited copy here was run unsaid
    # (audit47 recipes L)
    with caplog.at_level("WARNING", "yoloslim"):
        assert [s.name for s in load_recipe("cpu-int8").stages] != ["bench"]
    assert "recipe 'cpu-int8' is the shipped cpu-int8.yaml, not cpu-int8.yaml in this folder" in (
        caplog.text
    )
    with pytest.raises(ConfigError, match=r"cpu-int9: recipe file does not exist \(shipped "):
        recipe_path("cpu-int9")


@pytest.mark.parametrize(
    ("stages", "match"),
    [
        ([{"export": {"formats": ["onnx"], "half": True}}], r"half: true: none of onnx stores"),
        ([{"prnue": {}}], r"stage 1 \(prnue\): unknown stage 'prnue'"),
        (  # the fine-tuning's settings, read with the recipe, not after the pruning
            [{"prune": {"ratio": 0.5, "advanced": {"finetune": {"epochz": 1}}}}],
            r"stage 1 \(prune\): unknown key\(s\) \['epochz'\] in PruneConfig.advanced.finetune",
        ),
        (
            [{"export": {"formats": ["onnx"]}}, {"bench": {"batchez": [1]}}],
            r"stage 2 \(bench\).*batchez",
        ),
        ([{"prune": {"ratio": 0.5, "ratoi": 0.3}}], r"stage 1 \(prune\).*ratoi"),
        ([{"prune": {"ratio": "half"}}], r"stage 1 \(prune\).*ratio='half' must be float"),
        ([{"prune": {"ratio": 1.5}}], r"stage 1 \(prune\).*ratio"),
        ([{"train": {"epochs": "ten"}}], r"stage 1 \(train\).*epochs='ten' must be int"),
        ([{"export": {"half": "yes"}}], r"stage 1 \(export\).*half='yes' must be bool"),
        ([{"quantize": {"backend": "tflite"}}], r"stage 1 \(quantize\).*tflite"),
        ([{"distill": {"loss": "cwd", "train": {"epochz": 1}}}], r"stage 1 \(distill\).*epochz"),
        (  # a string counted as true: augmentation stayed on
            [{"prune": {"advanced": {"finetune": {"augment": {"enabled": "false"}}}}}],
            r"stage 1 \(prune\).*TrainConfig.augment.enabled='false' must be true or false",
        ),
        ([{"export": ["onnx"]}], r"stage 1 \(export\): config must be a mapping"),
        ([{"export": {"formats": ["onxx"]}}], r"stage 1 \(export\): formats=\['onxx'\]: unknown"),
        ([{"export": {"formats": "onnx"}}], r"stage 1 \(export\): formats='onnx' must be list or"),
        ([{"export": {"formats": []}}], r"stage 1 \(export\): formats=\[\]"),
        ([{"export": {"imgsz": 100}}], r"stage 1 \(export\): imgsz=100 must be a multiple of 32"),
        (
            [{"export": {"formats": ["openvino"], "nms": True}}],
            r"stage 1 \(export\): nms: true needs the onnx format",
        ),
        ([{"export": {"nms": True, "nms_conf": 2.0}}], r"stage 1 \(export\): nms_conf=2.0 must be"),
        ([{"export": {"nms_conf": None}}], r"stage 1 \(export\): nms_conf=None must be a number"),
        # YAML 1.1 reads 1e-3 as text: the hint TrainConfig's fields give, for every stage
        (
            [{"export": {"nms": True, "nms_conf": "1e-3"}}],
            r"stage 1 \(export\): nms_conf='1e-3' must be float \(YAML reads 1e-3 as a string; "
            r"write 1.0e-3\)",
        ),
        ([{"quantize": {"max_drop": "5e-1"}}], r"max_drop='5e-1' must be float \(YAML reads 1e-3"),
        ([{"prune": {"target_flops": "5e-1"}}], r"target_flops='5e-1' must be float \(YAML reads"),
        (
            [{"nas": {"budget": {"flops": "5e-1"}}}],
            r"stage 1 \(nas\): budget.flops='5e-1' \(--budget-flops\) must be a finite number "
            r"\(YAML ",
        ),
        ([{"export": {"nms_iou": 0.0}}], r"stage 1 \(export\): nms_iou=0.0 must be in \(0, 1\]"),
        ([{"export": {"triton_max_batch": 0}}], r"stage 1 \(export\): triton_max_batch: 0 must"),
        ([{"bench": {"batches": [0]}}], r"stage 1 \(bench\): batches=\[0\] must be positive"),
        ([{"bench": {"batches": []}}], r"stage 1 \(bench\): batches=\[\] must be positive"),
        ([{"bench": {"batches": [1, 8, 1]}}], r"stage 1 \(bench\): batches=\[1, 8, 1\]: each"),
        ([{"bench": {"rounds": 0}}], r"stage 1 \(bench\): rounds=0 must be a positive"),
        # null passed, and failed at the bench stage, after the others, naming --rounds
        ([{"bench": {"rounds": None}}], r"stage 1 \(bench\): rounds=None must be a positive"),
        ([{"bench": {"runs_per_round": None}}], r"stage 1 \(bench\): runs_per_round=None must"),
        ([{"bench": {"batches": None}}], r"stage 1 \(bench\): batches=None must be a list of"),
        ([{"bench": {"imgsz": 96.0}}], r"stage 1 \(bench\): imgsz=96.0 must be int"),
        ([{"bench": {"imgsz": 48}}], r"stage 1 \(bench\): imgsz=48 must be a multiple of 32"),
        ([{"export": {}, "bench": {}}], r"stage 1 must be a one-key mapping"),
        ([], r"'stages' must be a non-empty list"),
        (
            [
                {
                    "nas": {
                        "budget": {"flops": 1.0},
                        "space": {"template": "damo-nano", "kernel": [3]},
                    }
                }
            ],
            r"stage 1 \(nas\).*unknown key.*kernel",
        ),
        (
            [{"nas": {"budget": {"flops": 1.0}, "space": {"template": "damo-x"}}}],
            r"stage 1 \(nas\).*damo-x",
        ),
        # nested settings are typed too (it said "'>=' not supported between str and int")
        (
            [{"prune": {"advanced": {"round_to": "eight"}}}],
            r"stage 1 \(prune\): advanced: round_to='eight' must be int",
        ),
        # every nas value is checked at load (imgsz "big" crashed at run time)
        ([{"nas": {"imgsz": "big", "budget": {"flops": 1.0}}}], r"stage 1 \(nas\).*imgsz='big'"),
        ([{"nas": {"budget": {"flops": 1.0}, "iterations": -3}}], r"stage 1 \(nas\).*iterations"),
        ([{"nas": {"imgsz": 64}}], r"stage 1 \(nas\).*'budget' is required"),
        # a path that is not one failed as a TypeError inside Path() once the run started
        ([{"distill": {"teacher": 5}}], r"stage 1 \(distill\): teacher=5: expected a checkpoint"),
        ([{"train": {"model": 5}}], r"stage 1 \(train\): model=5: expected a checkpoint"),
        ([{"train": {"model": ["damo-nano"]}}], r"stage 1 \(train\): model=\['damo-nano'\]"),
        ([{"nas": {"budget": {"flops": 1.0}, "init": 5}}], r"stage 1 \(nas\): init=5 must be"),
        ([{"nas": {"budget": {"flops": 1.0}, "init": [5]}}], r"stage 1 \(nas\): init=\[5\]"),
        (
            [{"nas": {"budget": {"flops": 1.0}, "latency_cache": 5}}],
            r"stage 1 \(nas\): latency_cache=5 must be a file path",
        ),
        # a searched architecture is untrained: only a train stage may take it
        (
            [{"nas": {"budget": {"flops": 1.0}}}, {"prune": {"ratio": 0.3}}],
            r"stage 2 \(prune\) follows nas, whose architecture is untrained",
        ),
    ],
)
def test_bad_recipes_name_file_and_stage(tmp_path, stages, match):
    p = _write(tmp_path, {"name": "bad", "stages": stages})
    with pytest.raises(ConfigError, match=match) as e:
        load_recipe(p)
    assert str(p) in str(e.value)
    assert str(e.value).count(str(p)) == 1 and "\n" not in str(e.value)
    assert " or list" not in str(e.value)  # was "must be list or list or tuple"


@pytest.mark.parametrize(
    ("stages", "match"),
    [
        (
            [{"export": {"imgsz": 320}}, {"bench": {"imgsz": 256}}],
            r"stage 2 \(bench\) has imgsz=256 but stage 1 \(export\) imgsz=320.*give stage 2 "
            r"imgsz=320",
        ),
        (
            [{"export": {}}, {"quantize": {"imgsz": 256}}, {"bench": {}}],
            r"stage 1 \(export\) has no imgsz \(the checkpoint's\) but stage 2 \(quantize\) "
            r"imgsz=256.*give stage 1 imgsz=256",
        ),
    ],
)
def test_sizes_a_bench_stage_cannot_measure_together_are_refused_at_load(tmp_path, stages, match):
    p = _write(tmp_path, {"stages": stages})
    with pytest.raises(ConfigError, match=match):
        load_recipe(p)


def test_bench_takes_the_size_of_the_static_artifacts_before_it():
    r = load_recipe(
        {"stages": [{"export": {"imgsz": 256}}, {"quantize": {"imgsz": 256}}, {"bench": {}}]}
    )
    assert r.stages[2].config.imgsz == 256
    assert r.resolved()["stages"][2]["bench"]["imgsz"] == 256  # recipe.yaml records it
    # a dynamic export runs at any size, and sizes after the bench stage are not its concern
    r = load_recipe(
        {
            "stages": [
                {"export": {"dynamic": True}},
                {"bench": {"imgsz": 256}},
                {"export": {"imgsz": 320}},
            ]
        }
    )
    assert [s.config.imgsz for s in r.stages] == [None, 256, 320]


def test_a_key_given_twice_or_a_file_that_is_not_text_is_refused_by_name(tmp_path):
    twice = tmp_path / "twice.yaml"
    twice.write_text("stages:\n  - prune: {ratio: 0.3, ratio: 0.6}\n")
    with pytest.raises(ConfigError, match=r"twice.yaml: .*line 2, column 25: .*'ratio' twice"):
        load_recipe(twice)
    binary = tmp_path / "photo.yaml"
    binary.write_bytes(b"\x89PNG\x00\x01")
    with pytest.raises(ConfigError, match=r"photo.yaml: not a text file"):
        load_recipe(binary)


def test_a_teacher_of_another_class_count_or_no_checkpoint_is_refused_before_any_stage(
    tmp_path, ran
):
    # audit25 distill M1: found only when the distill stage began, after a whole prune
    from yoloslim.data import load_data_config
    from yoloslim.data.synth import synthesize
    from yoloslim.models.checkpoint import save_checkpoint
    from yoloslim.pipeline import run_recipe

    data = synthesize(tmp_path / "d", images=4, imgsz=64, classes=2, seed=0, val_fraction=0.5)
    names = list(load_data_config(data).names)
    model = save_checkpoint(tmp_path / "m.pt", build_model("damo-nano", names=names), imgsz=64)
    three = build_model("damo-nano", names=["a", "b", "c"])
    teacher3 = save_checkpoint(tmp_path / "t3.pt", three, imgsz=64)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    for teacher, match in (
        (teacher3, r"stage 2 \(distill\): teacher .*t3.pt has 3 classes but .* has 2"),
        (data, r"stage 2 \(distill\): teacher .*data.yaml: expected a yoloslim .pt checkpoint"),
        (junk, r"stage 2 \(distill\): teacher: .*junk.pt"),
    ):
        stages = [{"prune": {"ratio": 0.3}}, {"distill": {"teacher": str(teacher)}}]
        with pytest.raises(ConfigError, match=match):
            run_recipe(model, data, {"stages": stages}, out=tmp_path / "out")
        assert ran == [] and not (tmp_path / "out").exists()
    stages = [{"prune": {"ratio": 0.3}}, {"distill": {"teacher": str(model)}}]
    run_recipe(model, data, {"stages": stages}, out=tmp_path / "ok")  # the right one runs
    assert [name for name, _ in ran] == ["prune", "distill"]


def test_what_a_stage_would_find_wrong_after_a_train_stage_is_refused_before_any(
    tmp_path, ran, monkeypatch
):
    # audit26 recipe H1: each was found only when its stage began, after the train before it
    import sys

    from yoloslim.data import load_data_config
    from yoloslim.data.synth import synthesize
    from yoloslim.models.checkpoint import save_checkpoint
    from yoloslim.pipeline import run_recipe

    data = synthesize(tmp_path / "d", images=4, imgsz=64, classes=2, seed=0, val_fraction=0.5)
    names = list(load_data_config(data).names)
    model = save_checkpoint(tmp_path / "m.pt", build_model("damo-nano", names=names), imgsz=64)
    three = save_checkpoint(
        tmp_path / "t3.pt", build_model("damo-nano", names=["a", "b", "c"]), imgsz=64
    )
    train = {"train": {"epochs": 1}}
    cases = [
        (
            [{"train": {"model": str(three), "epochs": 1}}],
            r"stage 1 \(train\): model .*t3.pt has 3",
        ),
        ([train, {"prune": {"target_flops": 100.0}}], r"stage 2 \(prune\): .*target_flops=100.0"),
        ([train, {"prune": {"ratio": 0.3, "ignore": ["nekc.*"]}}], r"stage 2 \(prune\): .*'nekc"),
    ]
    for stages, match in cases:
        with pytest.raises(ConfigError, match=match):
            run_recipe(model, data, {"stages": stages}, out=tmp_path / "out")
        assert ran == [] and not (tmp_path / "out").exists()
    # a target measured at the size the train stage before it trains at, not --model's
    # (damo-nano: 0.04 GFLOPs at 64 px, about 1 at 320)
    stages = [{"train": {"epochs": 1, "imgsz": 320}}, {"prune": {"target_flops": 0.5}}]
    run_recipe(model, data, {"stages": stages}, out=tmp_path / "sized")
    assert [name for name, _ in ran] == ["train", "prune"]
    ran.clear()
    monkeypatch.setitem(sys.modules, "nncf", None)  # not installed
    with pytest.raises(ConfigError, match=r"stage 2 \(quantize\): nncf is not installed"):
        run_recipe(model, data, {"stages": [train, {"quantize": {}}]}, out=tmp_path / "out")
    assert ran == []


def test_a_missing_teacher_or_unknown_model_is_refused_before_any_stage(tmp_path, inputs, ran):
    from yoloslim.pipeline import run_recipe

    model, data = inputs
    for stages, match in (
        ([{"prune": {"ratio": 0.3}}, {"distill": {"teacher": "/no/t.pt"}}], "teacher /no/t.pt"),
        ([{"prune": {"ratio": 0.3}}, {"train": {"model": "damo-x"}}], "'damo-x' is neither"),
        (
            [{"prune": {"ratio": 0.3}}, {"nas": {"budget": {"flops": 1.0}, "init": "/no/a.yaml"}}]
            + [{"train": {}}],
            r"stage 2 \(nas\): init '/no/a.yaml' is neither a file nor a registered model",
        ),
    ):
        with pytest.raises(ConfigError, match=match):
            run_recipe(model, data, {"stages": stages}, out=tmp_path / "out")
        assert ran == [] and not (tmp_path / "out").exists()


def test_unknown_top_level_key_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="unknown top-level key"):
        load_recipe(_write(tmp_path, {"stages": [{"bench": {}}], "stagez": []}))
    with pytest.raises(ConfigError, match="does not exist"):
        load_recipe(tmp_path / "nope.yaml")
    bad = tmp_path / "broken.yaml"
    bad.write_text("name: t\nstages:\n  - export: {formats: [onnx]\n  - bench: {}\n")
    with pytest.raises(ConfigError) as e:
        load_recipe(bad)
    # one line naming the file, the line and the column (not PyYAML's "<unicode string>")
    assert str(e.value).startswith(f"{bad}: not valid YAML (line 4, column 3: ")
    assert "\n" not in str(e.value) and "unicode string" not in str(e.value)


def test_nas_stage_takes_a_template_space_and_seeds(tmp_path):
    nas = {"budget": {"flops": 1.0, "layers": 29}, "init": ["damo-nano"]}
    nas["space"] = {"template": "damo-nano", "kernels": [3]}
    nas.update(imgsz=96, iterations=7, seed=5)
    rec = load_recipe(_write(tmp_path, {"name": "nas", "stages": [{"nas": nas}]}))
    assert rec.stages[0].name == "nas"
    assert rec.stages[0].config.options == nas  # kept as the recipe gave it
    # the pipeline's nas runner hands every value to search() unchanged (the recorder keeps
    # search's signature: search_kwargs reads its defaults from it)
    import functools
    import importlib
    from types import SimpleNamespace

    import yoloslim.pipeline as pl
    from yoloslim.data.synth import synthesize
    from yoloslim.nas.budget import Budget
    from yoloslim.nas.space import SearchSpace

    # the module: yoloslim.nas.search, as an attribute, is the function
    nas_search = importlib.import_module("yoloslim.nas.search")
    seen = []

    @functools.wraps(nas_search.search)
    def record(**kw):
        seen.append(kw)
        return SimpleNamespace(report={"recorded": True})

    data = synthesize(tmp_path / "d", images=2, imgsz=64, classes=3, seed=0)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(nas_search, "search", record)
        res = pl._stage_nas(None, rec.stages[0].config, data, tmp_path / "nas", False)
    assert res["model"] == str(tmp_path / "nas" / "arch.yaml")
    assert res["report"] == {"recorded": True}
    [kw] = seen
    assert kw.pop("space") == SearchSpace.from_dict(nas["space"])
    assert kw.pop("budget") == Budget.from_dict(nas["budget"])
    assert kw == {
        "init": ["damo-nano"],
        "imgsz": 96,
        "iterations": 7,
        "seed": 5,
        "nc": 3,  # from the data's class names, as the recipe gives none
        "out": tmp_path / "nas",
        "progress": False,
    }


def test_quantize_before_a_bench_skips_its_own_latency_unless_asked():
    from yoloslim.pipeline import _stage_config

    q = {"quantize": {"calib": 4}}
    qa = {"quantize": {"calib": 4, "advanced": {"latency": True}}}
    rec = load_recipe({"stages": [q, qa, {"bench": {}}]})
    plain, asked, bench = rec.stages
    assert plain.config.advanced.latency  # the recipe's own config is left as parsed
    assert not _stage_config(plain, benched=True).advanced.latency
    assert _stage_config(plain, benched=True).advanced.perf_counters  # bench has no counters
    assert _stage_config(plain, benched=False).advanced.latency
    assert _stage_config(asked, benched=True).advanced.latency
    assert _stage_config(bench, benched=True) is bench.config


# ------------------------------------------------------------------ run_recipe before any stage


@pytest.fixture
def inputs(tmp_path):
    """A model and a data file: the stages below are stubs that never open them."""
    model, data = tmp_path / "m.pt", tmp_path / "data.yaml"
    model.write_bytes(b"checkpoint")
    data.write_text("names: [a]\n")
    return model, data


@pytest.fixture
def ran(monkeypatch):
    """Stub every stage runner; returns the (stage, config) calls."""
    import yoloslim.pipeline as pl

    calls = []

    def stub(name):
        def run(st, cfg, data, out, progress, *rest):
            calls.append((name, cfg))
            made = {f"{name}-x": str(out / "x.onnx")} if name in ("export", "quantize") else {}
            for path in made.values():
                Path(path).write_bytes(b"")  # what it reports exists, as a real stage's does
            return {"model": st.model, "rows": [], "report": {}, "deployable": made}

        return run

    for name in list(pl._RUNNERS):
        monkeypatch.setitem(pl._RUNNERS, name, stub(name))
    monkeypatch.setattr(pl, "_stage_bench", stub("bench"))
    # the stand-in data.yaml has no split to read: the stubs never read it
    monkeypatch.setattr("yoloslim.eval.val.require_boxes", lambda data, split="val": None)
    return calls


def _no_engine(monkeypatch):
    import dataclasses

    from yoloslim.export import EXPORTERS

    engine = dataclasses.replace(EXPORTERS["engine"], unavailable=lambda: "no TensorRT here")
    monkeypatch.setitem(EXPORTERS, "engine", engine)


def test_an_invalid_recipe_writes_nothing(tmp_path, inputs):
    from yoloslim.pipeline import run_recipe

    model, data = inputs
    bad = _write(tmp_path, {"stages": [{"export": {"formats": ["onxx"]}}]})
    with pytest.raises(ConfigError, match="onxx"):
        run_recipe(model, data, bad, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(ConfigError, match=r"data .* \(--data\): does not exist"):
        run_recipe(model, tmp_path / "nope.yaml", {"stages": ["bench"]}, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_folder_where_no_stage_finished_can_be_reused(tmp_path, inputs, ran, monkeypatch):
    import yoloslim.pipeline as pl

    model, data = inputs
    out = tmp_path / "out"

    def fails(*a, **k):
        raise ConfigError("the stage failed")

    with monkeypatch.context() as m:
        m.setitem(pl._RUNNERS, "export", fails)
        with pytest.raises(ConfigError, match="the stage failed"):
            pl.run_recipe(model, data, {"stages": [{"export": {}}]}, out=out)
    # another recipe, without --resume: nothing had finished, so nothing is lost
    pl.run_recipe(model, data, {"stages": [{"export": {"formats": ["onnx"]}}]}, out=out)
    assert ran and ran[-1][1].formats == ["onnx"]


def test_engine_is_skipped_with_a_warning_before_any_stage(tmp_path, inputs, ran, monkeypatch):
    from yoloslim.pipeline import run_recipe

    _no_engine(monkeypatch)
    model, data = inputs
    recipe = _write(tmp_path, {"stages": [{"export": {"formats": ["onnx", "engine"]}}]})
    with pytest.raises(ConfigError, match=r"stage 1 \(export\): formats=\['engine'\]: nothing"):
        run_recipe(
            model, data, {"stages": [{"export": {"formats": ["engine"]}}]}, out=tmp_path / "a"
        )
    assert not ran and not (tmp_path / "a").exists()
    res = run_recipe(model, data, recipe, out=tmp_path / "b")
    assert ran == [("export", ran[0][1])] and ran[0][1].formats == ["onnx"]
    assert res.report["skipped"] == [{"stage": 1, "format": "engine", "reason": "no TensorRT here"}]
    # the resolved recipe keeps what the user asked for, so a GPU machine can resume it
    assert "engine" in (tmp_path / "b" / "recipe.yaml").read_text()


def test_shipped_gpu_recipe_runs_without_tensorrt(tmp_path, inputs, ran, monkeypatch):
    from yoloslim.pipeline import run_recipe

    _no_engine(monkeypatch)
    model, data = inputs
    gpu = next(p for p in RECIPES if p.stem == "gpu-fp16")
    res = run_recipe(model, data, gpu, out=tmp_path / "gpu")
    assert [name for name, _ in ran] == ["prune", "export", "bench"]
    assert ran[1][1].formats == ["onnx", "openvino"] and res.report["skipped"][0]["stage"] == 2
    assert "FP16 ONNX" not in load_recipe(gpu).description
    # half with the engine as its only FP16 format: without TensorRT, the rest goes FP32
    fp16_engine = {"stages": [{"export": {"formats": ["onnx", "engine"], "half": True}}]}
    ran.clear()
    run_recipe(model, data, fp16_engine, out=tmp_path / "eng")
    assert ran[0][1].formats == ["onnx"] and ran[0][1].half is False


def test_resume_refuses_another_model_or_data(tmp_path, inputs, ran):
    import os

    from yoloslim.pipeline import run_recipe

    model, data = inputs
    recipe = {"stages": [{"export": {"formats": ["onnx"]}}]}
    out = tmp_path / "out"
    run_recipe(model, data, recipe, out=out)
    other = tmp_path / "other.pt"
    other.write_bytes(b"another checkpoint")
    with pytest.raises(ConfigError, match="made with model .*m.pt, not .*other.pt"):
        run_recipe(other, data, recipe, out=out, resume=True)
    other_data = tmp_path / "d2.yaml"
    other_data.write_text("names: [a]\n")
    with pytest.raises(ConfigError, match="made with data"):
        run_recipe(model, other_data, recipe, out=out, resume=True)
    run_recipe(model, data, recipe, out=out, resume=True)  # the same inputs resume
    st = model.stat()
    # touched, or copied back without its time (a git checkout), it is the same model (its
    # time refused the resume: audit52 scale F4)
    os.utime(model, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    run_recipe(model, data, recipe, out=out, resume=True)
    with model.open("ab") as f:  # retrained in place
        f.write(b"\0")
    with pytest.raises(ConfigError, match=r"model .*m\.pt changed since this run \(its contents"):
        run_recipe(model, data, recipe, out=out, resume=True)
    model.write_bytes(model.read_bytes()[:-1])
    run_recipe(model, data, recipe, out=out, resume=True)


def test_data_digest_is_of_the_val_images_bytes_not_their_times(tmp_path):
    # a val image touched refused compress --resume as "the data changed" (audit52 scale F4)
    import os

    from yoloslim.pipeline import data_digest

    for split in ("train", "val"):
        (tmp_path / "images" / split).mkdir(parents=True)
        (tmp_path / "labels" / split).mkdir(parents=True)
        Image.new("RGB", (32, 32), (9, 9, 9)).save(tmp_path / "images" / split / "a.png")
        (tmp_path / "labels" / split / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    data = tmp_path / "data.yaml"
    data.write_text(f"path: {tmp_path}\ntrain: images/train\nval: images/val\nnames: [a]\n")
    image = tmp_path / "images" / "val" / "a.png"
    before, legacy = data_digest(data), data_digest(data, content=False)
    assert before is not None and legacy is not None
    st = image.stat()
    os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert data_digest(data) == before and data_digest(data, content=False) != legacy
    Image.new("RGB", (32, 32), (9, 9, 10)).save(image)  # another picture, same size
    assert data_digest(data) != before


def test_a_resume_whose_val_image_cannot_be_read_says_so(tmp_path, monkeypatch):
    # an unreadable val image was "the data changed since this run" (review2 F1)
    import yoloslim.pipeline as pl

    out = tmp_path / "out"
    out.mkdir()
    data = tmp_path / "data.yaml"
    saved = {"model": None, "data": str(data), "data_digest": "abc", "digests": "content"}
    (out / "inputs.json").write_text(json.dumps(saved))
    with pytest.raises(ConfigError, match=r"cannot be read to check it is this run's"):
        pl.check_resume_inputs(out, {**saved, "data_digest": None})
    with pytest.raises(ConfigError, match=r"the data .* changed since this run"):
        pl.check_resume_inputs(out, {**saved, "data_digest": "abd"})
    assert pl.check_resume_inputs(out, saved) == saved


def test_final_artifacts_are_the_last_stage_that_made_any(tmp_path, inputs, ran):
    from yoloslim.pipeline import run_recipe

    model, data = inputs
    stages = [{"export": {"formats": ["onnx"]}}, {"quantize": {"calib": 4}}, {"bench": {}}]
    res = run_recipe(model, data, {"stages": stages}, out=tmp_path / "out")
    assert res.report["deployable"] == {
        "quantize-x": str(tmp_path / "out" / "02-quantize" / "x.onnx")
    }
    saved = json.loads((tmp_path / "out" / "compress.json").read_text())
    assert saved["deployable"] == res.report["deployable"]


def test_saved_recipe_describes_the_run_and_resumes(tmp_path, inputs, ran):
    import yaml

    from yoloslim.pipeline import run_recipe

    model, data = inputs
    out = tmp_path / "out"
    recipe = {"stages": [{"quantize": {"calib": 4}}, {"bench": {}}]}
    run_recipe(model, data, recipe, out=out)
    saved = yaml.safe_load((out / "recipe.yaml").read_text())
    assert saved["stages"][0]["quantize"]["advanced"]["latency"] is False  # the bench measures it
    assert ran[0][1].advanced.latency is False
    run_recipe(model, data, out / "recipe.yaml", out=tmp_path / "again")  # fed back: same run
    assert yaml.safe_load((tmp_path / "again" / "recipe.yaml").read_text()) == saved
    run_recipe(model, data, recipe, out=out, resume=True)  # unchanged: resumes, not refused


def test_a_recipe_that_needs_a_model_is_refused_without_one(tmp_path):
    from yoloslim.pipeline import run_recipe

    data = tmp_path / "data.yaml"
    data.write_text("path: .\ntrain: images\nval: images\nnames: [a]\n")
    with pytest.raises(ConfigError, match=r"starts with prune, which needs a model"):
        run_recipe(None, data, {"stages": [{"prune": {"ratio": 0.5}}]}, out=tmp_path / "r")
    with pytest.raises(ConfigError, match=r"as a checkpoint file"):
        run_recipe(build_model("damo-nano"), data, {"stages": ["reparam"]}, out=tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_train_and_distill_stages_take_the_models_size_unless_given(tmp_path, ran):
    # a 160 px checkpoint distilled at the config's 320 made every later static export 320 px,
    # and the recipe's bench, at 160, failed after hours of work
    import yaml

    from yoloslim.models.checkpoint import save_checkpoint
    from yoloslim.pipeline import run_recipe

    model = save_checkpoint(tmp_path / "m.pt", build_model("damo-nano", names=["a"]), imgsz=64)
    data = tmp_path / "data.yaml"
    data.write_text("names: [a]\n")
    recipe = {
        "stages": [
            {"distill": {"train": {"epochs": 1}}},
            {"train": {"epochs": 1}},
            {"train": {"epochs": 1, "imgsz": 96}},
        ]
    }
    out = tmp_path / "out"
    run_recipe(model, data, recipe, out=out)
    assert [c.config.train.imgsz if n == "distill" else c.config.imgsz for n, c in ran] == [
        64,
        64,
        96,
    ]
    stages = yaml.safe_load((out / "recipe.yaml").read_text())["stages"]
    assert "imgsz" not in stages[0]["distill"]["train"] and "imgsz" not in stages[1]["train"]
    assert stages[2]["train"]["imgsz"] == 96
    run_recipe(model, data, recipe, out=out, resume=True)  # the saved recipe still matches
    run_recipe(model, data, out / "recipe.yaml", out=tmp_path / "again")  # fed back: same sizes
    assert [c.config.imgsz for n, c in ran[-2:]] == [64, 96]


def test_a_train_stage_after_nas_trains_at_the_search_size():
    from yoloslim.pipeline import _model_imgsz

    nas = load_recipe({"stages": [{"nas": {"imgsz": 160, "budget": {"flops": 1.0}}}]}).stages
    assert _model_imgsz("runs/c/01-nas/arch.yaml", nas) == 160
    assert _model_imgsz("damo-nano", nas) is None


def test_a_run_records_absolute_paths_so_it_resumes_from_any_folder(
    tmp_path, inputs, ran, monkeypatch
):
    from yoloslim.pipeline import run_recipe

    model, data = inputs
    monkeypatch.chdir(tmp_path)
    res = run_recipe(model.name, data.name, {"stages": [{"export": {}}]}, out="out")
    assert Path(res.report["final_model"]).is_absolute()
    assert all(Path(s["dir"]).is_absolute() for s in res.report["stages"])
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    again = run_recipe(model, data, {"stages": [{"export": {}}]}, out=tmp_path / "out", resume=True)
    assert again.report["final_model"] == res.report["final_model"] == str(model)


def test_resume_runs_a_stage_again_when_its_output_is_gone_and_the_stages_after_it(
    tmp_path, inputs, ran, monkeypatch
):
    import yoloslim.pipeline as pl

    model, data = inputs
    out = tmp_path / "out"

    def fake_prune(st, cfg, data, sdir, progress):
        ran.append(("prune", cfg))
        (sdir / "pruned.pt").write_bytes(b"x")
        return {"model": str(sdir / "pruned.pt"), "rows": [], "report": {}}

    monkeypatch.setitem(pl._RUNNERS, "prune", fake_prune)
    recipe = {"stages": [{"prune": {"ratio": 0.5}}, {"export": {}}, {"bench": {}}]}
    pl.run_recipe(model, data, recipe, out=out)
    assert [n for n, _ in ran] == ["prune", "export", "bench"]
    pl.run_recipe(model, data, recipe, out=out, resume=True)
    assert len(ran) == 3  # all there: nothing runs
    (out / "01-prune" / "pruned.pt").unlink()
    pl.run_recipe(model, data, recipe, out=out, resume=True)
    assert [n for n, _ in ran[3:]] == ["prune", "export", "bench"]
    assert (out / "01-prune" / "pruned.pt").is_file()


def test_a_stage_folder_another_run_writes_into_is_not_emptied(tmp_path, inputs, ran):
    """A resumed run empties a stage's folder before running it again; an export writing into
    that folder then lost its staging and its ONNX, and compress was refused only after
    (audit47 conc F7): the folder is emptied under its lock, so compress is refused first."""
    from yoloslim.fileio import folder_lock
    from yoloslim.pipeline import run_recipe

    model, data = inputs
    out = tmp_path / "out"
    recipe = {"stages": [{"export": {}}, {"bench": {}}]}
    run_recipe(model, data, recipe, out=out)
    (out / "01-export" / "x.onnx").unlink()  # its output gone: the resume runs it again
    staging = out / "01-export" / ".x.onnx.yoloslim-abcdefgh"  # the running export's
    staging.mkdir()
    refused = pytest.raises(
        ConfigError, match=r"01-export: another yoloslim run .* so this compress \(export stage"
    )
    with folder_lock(out / "01-export", "export"), refused:
        run_recipe(model, data, recipe, out=out, resume=True)
    assert staging.is_dir() and len(ran) == 2
    run_recipe(model, data, recipe, out=out, resume=True)  # free: it runs, and the folder goes
    assert not staging.exists() and [n for n, _ in ran] == ["export", "bench"] * 2


def test_a_stage_thread_count_over_the_cores_is_refused_before_a_fresh_run_only(
    tmp_path, inputs, ran, monkeypatch
):
    """Refused before any stage runs (it was found at the bench stage, after the others:
    audit47 review F1), but a resume on a machine of fewer cores goes on: its finished bench
    stage's setting cannot change (audit47 review2 M)."""
    from yoloslim.pipeline import run_recipe

    model, data = inputs
    recipe = {"stages": [{"export": {}}, {"bench": {"threads": 2}}]}
    monkeypatch.setattr("yoloslim.sysinfo.usable_cores", lambda: 1)
    with pytest.raises(ConfigError, match=r"stage 2 \(bench\): threads=2 is more than the 1"):
        run_recipe(model, data, recipe, out=tmp_path / "small")
    assert ran == [] and not (tmp_path / "small").exists()
    monkeypatch.setattr("yoloslim.sysinfo.usable_cores", lambda: 2)
    run_recipe(model, data, recipe, out=tmp_path / "r")  # made on two cores
    monkeypatch.setattr("yoloslim.sysinfo.usable_cores", lambda: 1)
    run_recipe(model, data, recipe, out=tmp_path / "r", resume=True)  # all finished: goes on
    assert [n for n, _ in ran] == ["export", "bench"]


def test_a_copied_or_moved_run_resumes_on_its_own_files(tmp_path, inputs, ran, monkeypatch):
    # a copy used the original run's files (its report pointed into it); a moved run failed
    # part way, its records naming the old folder
    import shutil

    import yoloslim.pipeline as pl

    model, data = inputs

    def fake_prune(st, cfg, data, sdir, progress):
        ran.append(("prune", cfg))
        (sdir / "pruned.pt").write_bytes(b"x")
        return {"model": str(sdir / "pruned.pt"), "rows": [], "report": {}}

    monkeypatch.setitem(pl._RUNNERS, "prune", fake_prune)
    recipe = {"stages": [{"prune": {"ratio": 0.5}}, {"export": {}}]}
    first = tmp_path / "a"
    pl.run_recipe(model, data, recipe, out=first)
    copy, moved = tmp_path / "b", tmp_path / "c"
    shutil.copytree(first, copy)
    res = pl.run_recipe(model, data, recipe, out=copy, resume=True)
    assert len(ran) == 2  # nothing ran again: the copy's own files are there
    assert res.report["final_model"] == str(copy / "01-prune" / "pruned.pt")
    assert str(first) not in (copy / "01-prune" / "stage.json").read_text()
    first.rename(moved)
    res = pl.run_recipe(model, data, recipe, out=moved, resume=True)
    assert len(ran) == 2 and res.report["final_model"] == str(moved / "01-prune" / "pruned.pt")


def test_a_resume_with_every_stage_done_puts_back_the_runs_report(tmp_path, inputs, ran):
    from yoloslim.pipeline import run_recipe

    model, data = inputs
    out = tmp_path / "out"
    recipe = {"stages": [{"export": {}}, {"bench": {}}]}
    run_recipe(model, data, recipe, out=out)
    (out / "02-bench" / "report.md").write_text("the bench stage's table\n")  # the stub's
    assert not (out / "report.md").exists()
    run_recipe(model, data, recipe, out=out, resume=True)
    assert len(ran) == 2  # nothing ran again
    assert (out / "report.md").read_text() == "the bench stage's table\n"


def test_two_stages_of_one_kind_keep_both_rows(tmp_path, inputs, ran, monkeypatch):
    import yoloslim.pipeline as pl

    model, data = inputs

    def fake_prune(st, cfg, data, sdir, progress):
        (sdir / "pruned.pt").write_bytes(b"x")
        return {
            "model": str(sdir / "pruned.pt"),
            "rows": [["pruned", str(sdir / "pruned.pt"), "ckpt"]],
            "report": {},
        }

    monkeypatch.setitem(pl._RUNNERS, "prune", fake_prune)
    recipe = {"stages": [{"prune": {"ratio": 0.3}}, {"prune": {"ratio": 0.3}}]}
    res = pl.run_recipe(model, data, recipe, out=tmp_path / "out")
    assert set(res.artifacts) == {"pruned", "pruned (stage 2)"}
    assert res.artifacts["pruned"] != res.artifacts["pruned (stage 2)"]


@pytest.mark.parametrize("half", [False, True])
def test_the_bench_stage_measures_an_fp16_ir_as_itself(tmp_path, monkeypatch, half):
    # an export --half IR stood in for the checkpoint's float IR ("pruned (OV bf16)"), so
    # FP16 storage passed for pruning's gain and the deployable IR had no row of its own
    import importlib

    import yoloslim.bench.measure as measure
    import yoloslim.bench.report as report
    from yoloslim import pipeline
    from yoloslim.recipe import BenchStage, ExportStage
    from yoloslim.result import Result

    exported = []

    def fake_export(model, out, formats, imgsz=None, half=False, **kw):
        exported.append((model, half))
        ir = Path(out) / ("model_fp16_openvino" if half else "model_openvino") / "model.xml"
        return Result(model, {}, {"onnx": Path(out) / "model.onnx", "openvino": ir})

    benched = {}

    def fake_benchmark(paths, data, names, **kw):
        benched.update(zip(names, paths, strict=True))
        return Result(None, {"rows": []})

    monkeypatch.setattr(importlib.import_module("yoloslim.export"), "export", fake_export)
    monkeypatch.setattr(measure, "benchmark", fake_benchmark)
    monkeypatch.setattr(report, "write_report", lambda rep, out: {})
    st = pipeline._State(
        baseline="base.pt", model="pruned.pt", rows=[["pruned", "pruned.pt", "ckpt"]]
    )
    done = pipeline._stage_export(st, ExportStage(half=half), "d.yaml", tmp_path / "e", False)
    st.rows += done["rows"]
    pipeline._stage_bench(st, BenchStage(), "d.yaml", tmp_path / "b", False, tmp_path)
    fp32_irs = [p for n, p in benched.items() if re.search(r"\(OV (f32|bf16|f16)\)$", n)]
    assert all("fp16" not in p for p in fp32_irs) and len(fp32_irs) == 2
    if half:  # its own row, and the checkpoint's FP32 IR exported by the bench stage
        assert "fp16" in benched["export-openvino-fp16"] and ("pruned.pt", False) in exported[1:]
        assert set(done["deployable"]) == {"export-onnx", "export-openvino-fp16"}
    else:  # the export stage's FP32 IR is the checkpoint's float form: not exported again
        assert "export-openvino" not in benched and exported[1:] == [("base.pt", False)]
        assert set(done["deployable"]) == {"export-onnx", "export-openvino"}


@pytest.mark.parametrize("name", ["train", "distill"])
def test_an_interrupted_training_stage_resumes_only_on_resume(
    tmp_path, inputs, ran, monkeypatch, name
):
    import yoloslim.pipeline as pl
    from yoloslim.pipeline import run_recipe

    model, data = inputs
    seen = []

    def train_stage(st, cfg, data, out, progress):
        seen.append((out / "last.pt").exists())
        return {"model": st.model, "rows": [], "report": {}}

    monkeypatch.setitem(pl._RUNNERS, name, train_stage)
    settings = {"epochs": 2, "imgsz": 64}
    stage = {"train": settings} if name == "train" else {"distill": {"train": settings}}
    recipe = {"stages": [stage, {"export": {"formats": ["onnx"]}}]}
    out = tmp_path / "out"
    sdir = out / f"01-{name}"

    def interrupted():  # what a stop in the middle of the stage's training leaves
        run_recipe(model, data, recipe, out=out / "seed")
        sdir.mkdir(parents=True, exist_ok=True)
        (sdir / "last.pt").write_bytes(b"epoch 1 of the old run")
        (sdir / "stage.json").unlink(missing_ok=True)

    interrupted()
    (out / "recipe.yaml").write_text((out / "seed" / "recipe.yaml").read_text())
    (out / "inputs.json").write_text((out / "seed" / "inputs.json").read_text())
    # with --resume the stage goes on from its last.pt ...
    run_recipe(model, data, recipe, out=out, resume=True)
    assert seen[-1] is True
    # ... but only with the run's own data, even though no stage finished
    (out / "02-export" / "stage.json").unlink()
    (sdir / "stage.json").unlink()
    other = tmp_path / "d2.yaml"
    other.write_text("names: [a]\n")
    with pytest.raises(ConfigError, match="made with data"):
        run_recipe(model, other, recipe, out=out, resume=True)
    # a run without --resume starts the stage afresh, whatever data it is given
    run_recipe(model, other, recipe, out=out)
    assert seen[-1] is False and not (sdir / "last.pt").exists()


def test_resume_where_no_run_is_refused(tmp_path, inputs, ran):
    # a mistyped --out with --resume started every stage afresh without a word
    from yoloslim.pipeline import run_recipe

    model, data = inputs
    recipe = {"stages": [{"export": {"formats": ["onnx"]}}]}
    for out in (tmp_path / "typo", tmp_path):  # missing, or a folder with no run in it
        with pytest.raises(ConfigError, match=r"no compress run to resume \(no recipe.yaml\)"):
            run_recipe(model, data, recipe, out=out, resume=True)
    assert not ran and not (tmp_path / "typo").exists()
    # a folder with only the user's recipe.yaml: "the recipe changed (name: '<dict>' ...)"
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    with pytest.raises(ConfigError, match=r"no compress run to resume \(a recipe.yaml but no"):
        run_recipe(model, data, mine / "recipe.yaml", out=mine, resume=True)
    assert not ran


def test_an_input_inside_a_stage_folder_is_refused_and_kept(tmp_path, inputs, ran):
    from yoloslim.pipeline import run_recipe

    model, data = inputs
    out = tmp_path / "out"
    inside = out / "01-export" / "best.pt"
    inside.parent.mkdir(parents=True)
    inside.write_bytes(model.read_bytes())
    recipe = {"stages": [{"export": {"formats": ["onnx"]}}]}
    with pytest.raises(ConfigError, match=r"model=.*01-export/best.pt: this run writes"):
        run_recipe(inside, data, recipe, out=out)
    t = out / "01-distill" / "t.pt"
    t.parent.mkdir()
    t.write_bytes(model.read_bytes())
    teacher = {"stages": [{"distill": {"teacher": str(t)}}]}
    with pytest.raises(ConfigError, match=r"stage 1 \(distill\)=.*t.pt: this run writes"):
        run_recipe(model, data, teacher, out=out)
    assert inside.read_bytes() == t.read_bytes() == model.read_bytes() and ran == []


def test_a_users_file_in_a_stage_folder_is_kept_and_a_users_compress_json_refused(
    tmp_path, inputs, ran, caplog
):
    import logging

    from yoloslim.pipeline import run_recipe

    model, data = inputs
    out = tmp_path / "out"
    recipe = {"stages": [{"export": {"formats": ["onnx"]}}]}
    notes = out / "01-export" / "NOTES.md"
    notes.parent.mkdir(parents=True)
    notes.write_text("mine")
    (out / "01-export" / "model.onnx").write_bytes(b"old")  # the stage's own name: it goes
    with caplog.at_level(logging.WARNING, "yoloslim"):
        run_recipe(model, data, recipe, out=out)
    assert notes.read_text() == "mine" and not (out / "01-export" / "model.onnx").exists()
    assert "kept NOTES.md, which no stage writes" in caplog.text
    other = tmp_path / "other"
    other.mkdir()
    (other / "compress.json").write_text('{"mine": 1}')
    with pytest.raises(ConfigError, match=r"compress.json is not a compress run's record"):
        run_recipe(model, data, recipe, out=other)
    assert (other / "compress.json").read_text() == '{"mine": 1}' and len(ran) == 1
    run_recipe(model, data, recipe, out=out, resume=True)  # its own record: resumed
    assert len(ran) == 1


def test_a_stage_record_that_is_not_one_runs_the_stage_again(tmp_path, inputs, ran, caplog):
    from yoloslim.pipeline import run_recipe

    model, data = inputs
    out = tmp_path / "out"
    recipe = {"stages": [{"export": {"formats": ["onnx"]}}]}
    run_recipe(model, data, recipe, out=out)
    (out / "01-export" / "stage.json").write_text('{"map": 0.5}')  # a val report, say
    run_recipe(model, data, recipe, out=out, resume=True)
    assert [n for n, _ in ran] == ["export", "export"]
    assert "is not the record of a finished export stage" in caplog.text


def test_a_distill_stage_may_train_the_searched_architecture():
    nas = {"nas": {"budget": {"flops": 1.0}}}
    assert [s.name for s in load_recipe({"stages": [nas, "distill"]}).stages] == ["nas", "distill"]


def test_set_changes_settings_by_stage_name_or_number_and_is_checked_as_the_file():
    rec = load_recipe(
        "cpu-int8",
        sets=[
            "prune.finetune_epochs=2",
            "prune.advanced.finetune.lr0=0.01",  # a mapping the file does not have yet
            "quantize.calib=64",
            "4.batches=[1]",  # by number
            "export.formats=[onnx]",
        ],
    )
    prune, export, quant, bench = (s.config for s in rec.stages)
    assert prune.finetune_epochs == 2 and prune.advanced.finetune == {"lr0": 0.01}
    assert prune.ratio == 0.5  # the rest as shipped
    assert quant.calib == 64 and list(bench.batches) == [1] and list(export.formats) == ["onnx"]
    assert load_recipe("cpu-int8").stages[0].config.finetune_epochs == 6  # the file unchanged
    # one --set alone, as a string (it was read a character at a time: "--set 'p'")
    assert load_recipe("cpu-int8", sets="4.warmup=3").stages[3].config.warmup == 3
    # a number without a dot in exponent form (YAML 1.1 reads it as a string: refused)
    assert load_recipe("cpu-int8", sets="quantize.max_drop=5e-1").stages[2].config.max_drop == 0.5
    with pytest.raises(ConfigError, match=r"warmup=-1 must be an integer >= 0"):
        load_recipe("cpu-int8", sets="bench.warmup=-1")
    for bad, match in [
        ("prune.finetune_epochs", r"give STAGE.KEY=VALUE"),
        ("prune=3", r"give STAGE.KEY=VALUE"),
        ("nas.iterations=3", r"has no stage 'nas' \(its stages: 1 \(prune\), 2 \(export\)"),
        ("9.imgsz=96", r"has no stage '9'"),
        ("prune.ratio=[", r"--set 'prune.ratio=\[': the value is not YAML"),
        ("prune.ratio.x=1", r"stage 1's prune.ratio is not a mapping"),
        ("prune.finetune_epochz=2", r"stage 1 \(prune\): unknown key\(s\) \['finetune_epochz'\]"),
        ("quantize.calib=many", r"stage 3 \(quantize\).*calib='many'"),
    ]:
        with pytest.raises(ConfigError, match=match):
            load_recipe("cpu-int8", sets=[bad])


def test_compress_set_reaches_the_stages_and_a_resume_needs_the_same(tmp_path, inputs, ran):
    from yoloslim.cli.main import main

    model, data = inputs
    recipe = tmp_path / "r.yaml"
    recipe.write_text("stages:\n  - export: {formats: [onnx, openvino]}\n")
    args = ["compress", "--model", str(model), "--data", str(data), "--recipe", str(recipe)]
    args += ["--out", str(tmp_path / "run")]
    assert main([*args, "--set", "export.formats=[onnx]"]) == 0
    assert [list(cfg.formats) for name, cfg in ran if name == "export"] == [["onnx"]]
    (tmp_path / "run" / "01-export" / "stage.json").unlink()  # as if stopped in the stage
    assert main([*args, "--resume", "--set", "export.formats=[onnx]"]) == 0
    # the recipe as run had formats [onnx], and its stage finished: without the --set, refused
    assert main([*args, "--resume"]) == 2


def test_a_nas_stage_run_again_keeps_the_latencies_its_stopped_search_measured(
    tmp_path, inputs, ran, monkeypatch
):
    """compress --resume emptied the folder of an interrupted nas stage, cache and all, and
    measured every candidate again (a plain `nas` rerun reuses it)."""
    import yoloslim.pipeline as pl
    from yoloslim.nas.latency import CACHE_NAME

    assert pl._KEPT["nas"] == (CACHE_NAME,)
    seen = []

    def stopped_search(st, cfg, data, out, progress):
        seen.append(sorted(p.name for p in out.iterdir()))
        if len(seen) == 1:
            (out / CACHE_NAME).write_text('{"measured": 1}\n')
            (out / "nas_report.json").write_text("{}")  # a partial output of its own
            raise KeyboardInterrupt
        (out / "arch.yaml").write_text("name: found\n")
        return {"model": str(out / "arch.yaml"), "rows": [], "report": {}}

    monkeypatch.setitem(pl._RUNNERS, "nas", stopped_search)
    _, data = inputs
    recipe = _write(tmp_path, {"stages": [{"nas": {"budget": {"flops": 1.0}}}]})
    with pytest.raises(KeyboardInterrupt):
        pl.run_recipe(None, data, recipe, out=tmp_path / "out")
    pl.run_recipe(None, data, recipe, out=tmp_path / "out", resume=True)
    assert seen == [[], [CACHE_NAME]]  # the cache kept, the rest of the stopped stage gone
    assert (tmp_path / "out" / "01-nas" / CACHE_NAME).read_text() == '{"measured": 1}\n'


def test_a_bench_stage_may_leave_threads_to_the_runtime_but_not_its_rounds():
    rec = load_recipe({"stages": [{"bench": {"threads": None, "rounds": 3}}]})
    assert (rec.stages[0].config.threads, rec.stages[0].config.rounds) == (None, 3)
    with pytest.raises(ConfigError, match=r"stage 1 \(bench\): rounds=None must be a positive"):
        load_recipe({"stages": [{"bench": {"threads": None, "rounds": None}}]})


def test_a_set_mistake_is_blamed_on_the_set_not_on_the_file(tmp_path):
    # it named the shipped recipe file alone, which the user did not write
    shipped = str(load_recipe("cpu-int8").source)
    with pytest.raises(ConfigError) as e:
        load_recipe("cpu-int8", sets=["quantize.calib=64", "prune.ratoi=0.3"])
    assert str(e.value).startswith(
        f"--set 'prune.ratoi=0.3' (on {shipped}): stage 1 (prune): unknown key(s) ['ratoi']"
    )
    with pytest.raises(ConfigError, match=r"^--set 'export.imgsz=256' \(on .*stage 3 \(quantize"):
        load_recipe("cpu-int8", sets=["export.imgsz=256"])  # sizes the bench cannot measure
    # two wrong --set: the one that brought the error said (the first to fail was blamed)
    for sets in (["quantize.calib=-1", "prune.ratio=7"], ["prune.ratio=7", "quantize.calib=-1"]):
        with pytest.raises(ConfigError, match=r"^--set 'prune.ratio=7' .*PruneConfig.ratio=7"):
            load_recipe("cpu-int8", sets=sets)
    # a mistake the file holds is the file's, --set or not
    own = _write(tmp_path, {"stages": [{"prune": {"ratoi": 0.3}}]})
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(own))}: stage 1 \(prune\): unknown"):
        load_recipe(own, sets=["prune.ratio=0.3"])


def test_a_quantize_pattern_that_matches_no_layer_is_refused_before_any_stage(tmp_path, ran):
    # it was found when the quantize stage started, after the prune stage's fine-tuning, and
    # named neither the recipe nor the stage
    from yoloslim.models.checkpoint import save_checkpoint
    from yoloslim.models.testing import SMALL_ARCH
    from yoloslim.pipeline import run_recipe

    model = save_checkpoint(tmp_path / "m.pt", build_model(SMALL_ARCH), imgsz=64)
    data = tmp_path / "data.yaml"
    data.write_text("names: [a, b]\n")
    prune = {"prune": {"ratio": 0.3}}
    p = _write(
        tmp_path,
        {"stages": [prune, {"quantize": {"backend": "onnxruntime", "ignored_scope": ["decod"]}}]},
    )
    with pytest.raises(ConfigError) as e:
        run_recipe(model, data, p, out=tmp_path / "out")
    assert str(e.value).startswith(
        f"{p}: stage 2 (quantize): ignored_scope pattern 'decod' matches no node or layer"
    )
    assert ran == [] and not (tmp_path / "out").exists()
    # a pattern of a layer name (the model's module path) or of a node passes, as does the
    # decode keyword, which needs no export
    good = {"backend": "onnxruntime", "ignored_scope": ["decode", r"head\.cls_preds", "Sigmoid"]}
    run_recipe(model, data, {"stages": [prune, {"quantize": good}]}, out=tmp_path / "ok")
    assert [name for name, _ in ran] == ["prune", "quantize"]


def test_a_quantize_pattern_after_another_network_is_checked_when_its_stage_runs(
    tmp_path, inputs, ran, monkeypatch
):
    # a train stage's own model: (or a nas stage) makes a network whose layers are known only
    # once it exists; the late error names the recipe and the stage
    import yoloslim.pipeline as pl

    def quantize(st, cfg, data, out, progress):
        raise ConfigError("ignored_scope pattern 'decod' matches no node or layer of the model")

    monkeypatch.setitem(pl._RUNNERS, "quantize", quantize)
    model, data = inputs  # no checkpoint: an up-front export would fail on it
    stages = [{"train": {"model": "damo-nano"}}, {"quantize": {"ignored_scope": ["decod"]}}]
    p = _write(tmp_path, {"stages": stages})
    with pytest.raises(ConfigError) as e:
        pl.run_recipe(model, data, p, out=tmp_path / "out")
    assert str(e.value) == (
        f"{p}: stage 2 (quantize): ignored_scope pattern 'decod' matches no node or layer of "
        "the model"
    )
    assert [name for name, _ in ran] == ["train"]


def test_a_quantize_pattern_on_an_arch_yaml_model_waits_for_the_train_stage(
    tmp_path, inputs, ran, monkeypatch
):
    """An untrained arch.yaml --model cannot be exported: the up-front check refused the
    run ("train it first"), which is what its train stage does."""
    import importlib

    import yoloslim.pipeline as pl

    export_mod = importlib.import_module("yoloslim.export")  # the package, not ys.export

    def no_export(*a, **k):
        raise AssertionError("an arch.yaml was exported for the up-front check")

    monkeypatch.setattr(export_mod, "export", no_export)
    _, data = inputs
    arch = tmp_path / "nano.yaml"
    arch.write_text("name: nano\n")
    stages = [{"train": {"epochs": 1}}, {"quantize": {"ignored_scope": ["backbone.*"]}}]
    pl.run_recipe(arch, data, _write(tmp_path, {"stages": stages}), out=tmp_path / "out")
    assert [name for name, _ in ran] == ["train", "quantize"]


def test_numpy_numbers_in_a_recipe_built_in_python_are_plain_ones():
    """A sweep's np.arange batches passed the bench check, then saving the recipe was a YAML
    RepresenterError traceback; np.int64 rounds were refused as "must be int"."""
    import numpy as np

    rec = load_recipe({"stages": [{"bench": {"batches": np.arange(1, 3), "rounds": np.int64(2)}}]})
    bench = rec.stages[0].config
    assert (bench.batches, bench.rounds) == ([1, 2], 2) and type(bench.rounds) is int
    assert yaml.safe_load(yaml.safe_dump(rec.resolved()))  # saved as a run saves it


def test_a_stage_after_the_bench_stage_is_said_to_be_in_no_table(tmp_path, inputs, ran, caplog):
    import logging

    from yoloslim.pipeline import run_recipe

    model, data = inputs
    recipe = {"stages": ["bench", {"export": {"formats": ["onnx"]}}]}
    with caplog.at_level(logging.WARNING, "yoloslim"):
        run_recipe(model, data, recipe, out=tmp_path / "out")
    assert "stage 2 (export) comes after the bench stage (1): what it makes is in no table" in (
        caplog.text
    )
    caplog.clear()
    with caplog.at_level(logging.WARNING, "yoloslim"):
        run_recipe(model, data, {"stages": [{"export": {}}, "bench"]}, out=tmp_path / "o2")
    assert "in no table" not in caplog.text
    # two stages: said in the plural (audit47 recipes L)
    caplog.clear()
    two = {"stages": ["bench", {"export": {}}, {"quantize": {}}]}
    with caplog.at_level(logging.WARNING, "yoloslim"):
        run_recipe(model, data, two, out=tmp_path / "o3")
    assert "stages 2 (export), 3 (quantize) come after the bench stage (1): what they make" in (
        " ".join(caplog.text.split())
    )


def test_a_model_stage_after_the_last_export_is_said_not_to_be_deployed(
    tmp_path, inputs, ran, caplog
):
    """bench, export, prune: deployable named the unpruned model's ONNX beside the pruned
    final checkpoint, without a word (audit47 recipes M)."""
    import logging

    from yoloslim.pipeline import run_recipe

    model, data = inputs
    recipe = {"stages": [{"export": {}}, {"prune": {"ratio": 0.5}}]}
    with caplog.at_level(logging.WARNING, "yoloslim"):
        run_recipe(model, data, recipe, out=tmp_path / "out")
    said = " ".join(caplog.text.split())
    assert (
        "stage 2 (prune) comes after the last stage that makes artifacts (1, export): the" in said
    )
    assert "deployable artifacts are of the model before it, not of its final checkpoint" in said
    caplog.clear()
    with caplog.at_level(logging.WARNING, "yoloslim"):
        run_recipe(
            model, data, {"stages": [{"prune": {"ratio": 0.5}}, "export"]}, out=tmp_path / "o"
        )
    assert "last stage that makes artifacts" not in caplog.text


def test_a_rerun_stage_clears_every_folder_quantize_writes_and_keeps_the_users(tmp_path):
    # float_openvino/ and int8_openvino/ were taken for a user's files: warned about and kept
    from yoloslim.pipeline import _empty_stage_folder

    sdir = tmp_path / "03-quantize"
    for name in ("float_openvino", "int8_openvino", "fp16_openvino", "int8", "export"):
        (sdir / name).mkdir(parents=True)
        (sdir / name / "model.xml").write_text("x")
    (sdir / "quant_report.json").write_text("{}")
    (sdir / "notes.txt").write_text("mine")
    _empty_stage_folder(sdir, keep=())
    assert [p.name for p in sdir.iterdir()] == ["notes.txt"]


def test_a_baseline_that_is_no_checkpoint_or_of_other_classes_is_refused_before_any_stage(
    tmp_path,
):
    # an arch.yaml before a prune ran every stage and failed at the bench (or ended with a
    # pruned random network); a checkpoint of 3 classes for 2-class data failed after the
    # stages that did not read it (a whole training, say)
    from yoloslim.data.synth import synthesize
    from yoloslim.errors import ModelError
    from yoloslim.models.checkpoint import save_checkpoint
    from yoloslim.pipeline import run_recipe

    data = synthesize(tmp_path / "d", images=2, imgsz=64, classes=2, seed=0)
    arch = tmp_path / "nano.yaml"
    arch.write_text("name: damo-nano\n")
    three = save_checkpoint(tmp_path / "m3.pt", build_model("damo-nano", nc=3), imgsz=64)
    prune_first = {"stages": [{"prune": {"ratio": 0.3}}, {"export": {}}]}
    train_bench = {"stages": [{"train": {"epochs": 1}}, {"bench": {}}]}
    for model, recipe, said in (
        (arch, prune_first, r"its first stage \(prune\) needs trained weights"),
        (arch, train_bench, r"its bench stage measures the baseline"),
        (three, prune_first, r"m3.pt \(--model\) has 3 classes but .*data.yaml has 2"),
    ):
        out = tmp_path / "out"
        with pytest.raises(ModelError, match=said):
            run_recipe(model, data, recipe, out=out)
        assert not out.exists()  # nothing written
    with pytest.raises(ConfigError, match=r"a registered model's name, with no trained weights"):
        run_recipe("damo-nano", data, prune_first, out=tmp_path / "out")


def test_a_quantize_stage_that_missed_its_budget_is_said_in_the_runs_record(
    tmp_path, inputs, ran, monkeypatch
):
    # said on stderr during the run, above pages of bars, and not in the final summary
    import yoloslim.pipeline as pl
    from yoloslim.pipeline import run_recipe

    missed = {
        "accuracy_aware": {"met": False, "max_drop": 0.5, "steps": [{}, {}], "chosen_step": 1},
        "map_drop_points": 1.2,
    }

    def quantize(st, cfg, data, out, progress, *rest):
        return {"model": st.model, "rows": [], "report": missed, "deployable": {}}

    monkeypatch.setitem(pl._RUNNERS, "quantize", quantize)
    model, data = inputs
    recipe = {"stages": [{"export": {}}, {"quantize": {"max_drop": 0.5}}]}
    res = run_recipe(model, data, recipe, out=tmp_path / "out")
    said = [s.get("warning") for s in res.report["stages"]]
    assert said[0] is None and "budget of 0.5 mAP points was not met: 1.2 points" in said[1]


def test_a_resume_on_data_changed_since_is_refused(tmp_path, inputs, ran):
    # the data regenerated in place: a resume kept the old measurements (the baseline's
    # mAP of the old val split) and said nothing; only the data's path was recorded
    from yoloslim.data.synth import synthesize
    from yoloslim.pipeline import run_recipe

    model, _ = inputs
    data = synthesize(tmp_path / "d", images=6, imgsz=64, classes=2, seed=0)
    recipe = {"stages": [{"export": {"formats": ["onnx"]}}]}
    run_recipe(model, data, recipe, out=tmp_path / "o")
    run_recipe(model, data, recipe, out=tmp_path / "o", resume=True)  # as it was: fine
    synthesize(tmp_path / "d", images=6, imgsz=64, classes=2, seed=1)  # in place
    with pytest.raises(ConfigError, match=r"the data .* changed since this run \(its data.yaml"):
        run_recipe(model, data, recipe, out=tmp_path / "o", resume=True)


def test_an_error_inside_a_stage_names_the_recipe_and_the_stage(tmp_path, inputs, monkeypatch):
    # audit26 recipe M2: only a ConfigError was named so; "ModelError: teacher=..." came bare
    import yoloslim.pipeline as pl
    from yoloslim.errors import ExportError

    def fails(*args):
        err = ExportError("the runtime refused the file")
        err.report = {"kept": True}
        raise err

    monkeypatch.setitem(pl._RUNNERS, "export", fails)
    model, data = inputs
    recipe = _write(tmp_path, {"stages": [{"export": {"formats": ["onnx"]}}]})
    with pytest.raises(ExportError, match=r"r.yaml: stage 1 \(export\): the runtime refused") as e:
        pl.run_recipe(model, data, recipe, out=tmp_path / "out")
    assert e.value.report == {"kept": True}  # the error itself, its fields kept


def test_a_changed_recipe_is_described_by_every_difference_up_to_four():
    # audit30 journey L1: a resume without the run's --set options was refused three times,
    # each naming one more difference
    import yaml

    from yoloslim.pipeline import _as_run, _recipe_change

    def resolved(stages: str) -> str:  # as recipe.yaml records a run's
        return yaml.safe_dump(_as_run(load_recipe(yaml.safe_load(stages))).resolved())

    before = resolved("stages:\n- prune: {finetune_epochs: 3}\n- quantize: {calib: 64}\n")
    now = resolved("stages:\n- prune: {finetune_epochs: 6}\n- quantize: {calib: 300}\n")
    assert _recipe_change(before, now) == (
        "stage 1 (prune) finetune_epochs: 3 then, 6 now; stage 2 (quantize) calib: 64 then, 300 now"
    )
    many = "stages:\n- prune: {finetune_epochs: 1, batch: 1, seed: 1, steps: 1, imgsz: 32, ratio: 0.1}\n"
    other = many.replace(": 1,", ": 2,").replace("32", "64").replace("0.1", "0.2")
    assert _recipe_change(resolved(many), resolved(other)).endswith("; and 2 more")


@pytest.mark.parametrize(
    ("stage", "needle"),
    [
        ({"distill": {"freeze_epochs": 2}}, "stage 2 (distill): DistillConfig.freeze_epochs=2"),
        (
            {"quantize": {"advanced": {"per_channel": False}}},
            "stage 2 (quantize): advanced.per_channel=False is ONNX Runtime's",
        ),
    ],
)
def test_settings_a_stage_would_refuse_are_refused_before_any_stage(tmp_path, ran, stage, needle):
    # audit32 review3 M2: refused only when the stage started, after the stages before it
    from yoloslim.models.checkpoint import save_checkpoint
    from yoloslim.models.testing import SMALL_ARCH
    from yoloslim.pipeline import run_recipe

    model = save_checkpoint(tmp_path / "m.pt", build_model(SMALL_ARCH), imgsz=64)
    data = tmp_path / "data.yaml"
    data.write_text("names: [a, b]\n")
    p = _write(tmp_path, {"stages": [{"prune": {"ratio": 0.3}}, stage]})
    with pytest.raises(ConfigError) as e:
        run_recipe(model, data, p, out=tmp_path / "out")
    assert str(e.value).startswith(f"{p}: {needle}")
    assert ran == [] and not (tmp_path / "out").exists()


@pytest.mark.parametrize("damage", [b"", b"\xff\xfe garbage", b"[1, 2]", b"{cut"])
def test_a_damaged_inputs_record_refuses_the_resume_naming_it(damage, tmp_path):
    # audit42 corrupt F5: an empty, non-UTF-8 or non-object inputs.json (what a killed write
    # or a full disk leaves) was a traceback of compress --resume
    from yoloslim.pipeline import _record_text, check_resume_inputs

    (tmp_path / "inputs.json").write_bytes(damage)
    with pytest.raises(ConfigError, match=r"inputs.json: damaged \(not .*\); the run there cannot"):
        check_resume_inputs(tmp_path, {"model": "m.pt", "data": "d.yaml"})
    (tmp_path / "recipe.yaml").write_bytes(b"stages:\n\xff\n")
    with pytest.raises(ConfigError, match=r"recipe.yaml: damaged \(not UTF-8 text\)"):
        _record_text(tmp_path / "recipe.yaml")
