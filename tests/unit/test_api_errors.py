"""Wrong-typed arguments to the public API are ConfigError/DataError naming the argument,
not a TypeError or AttributeError from deep inside (each is refused before any file is read)."""

import json

import pytest
from torch import nn

import yoloslim as ys
from yoloslim.bench.flops import model_profile
from yoloslim.errors import ConfigError, DataError, ModelError
from yoloslim.models import build_model


@pytest.mark.parametrize(
    ("call", "err", "match"),
    [
        (
            lambda: ys.train("damo-nano", "data.yaml", config={"epochs": 1}),
            ConfigError,
            r"config must be a TrainConfig, got dict \(TrainConfig.from_dict\(d\) reads",
        ),
        (
            lambda: ys.benchmark("model.onnx", latency={"rounds": 1}),
            ConfigError,
            r"latency must be a LatencyConfig, got dict \(LatencyConfig\(\*\*d\) reads",
        ),
        (lambda: ys.quantize("m.pt", "d.yaml", config=3), ConfigError, r"QuantConfig, got int$"),
        (lambda: ys.validate("m.pt", "d.yaml", batch="8"), ConfigError, r"batch='8' must be"),
        (lambda: ys.validate("m.pt", "d.yaml", batch=0), ConfigError, r"^batch=0 must be >= 1"),
        (lambda: ys.validate(5, "d.yaml"), ConfigError, r"^model=5: expected a checkpoint"),
        (lambda: ys.quantize(3.0, "d.yaml"), ConfigError, r"^model_or_artifact=3.0: expected"),
        (lambda: ys.export("m.pt", "out", formats=None), ConfigError, r"^formats=None: give"),
        (lambda: ys.export("m.pt", "out", formats=[1]), ConfigError, r"^formats=\[1\]: give"),
        # "no" is truthy: it exported a dynamic batch and recorded "dynamic": "no"
        (lambda: ys.export("m.pt", "out", dynamic="no"), ConfigError, r"^dynamic='no' must be"),
        (lambda: ys.export("m.pt", "out", half=1), ConfigError, r"^half=1 must be True or False"),
        (lambda: ys.export("m.pt", "out", nms="yes"), ConfigError, r"^nms='yes' must be True or"),
        (lambda: ys.export("m.pt", "out", verify=None), ConfigError, r"^verify=None must be"),
        (lambda: ys.BatchingPredictor("m.pt"), ConfigError, r"^predictor='m.pt': expected a"),
        (lambda: ys.synthesize(None), ConfigError, r"^out=None: expected the dataset folder"),
        (lambda: ys.validate(nn.Identity(), None), DataError, r"^data=None: expected the path"),
        (lambda: model_profile("damo-nano", imgsz=100), ConfigError, r"^imgsz=100 must be a"),
        (lambda: ys.validate(None, "d.yaml"), ConfigError, r"^model=None: expected a checkpoint"),
        (lambda: ys.export(nn.Identity(), None), ConfigError, r"^out=None: expected the output"),
        (lambda: ys.describe(3), ConfigError, r"^path=3: expected a file's path"),
        (lambda: ys.quantize("m.pt", "d.yaml", out=None), ConfigError, r"^out=None: expected"),
        (lambda: ys.search(budget={"flops": 1}), ConfigError, r"Budget.from_dict\(d\) reads"),
        (  # measured batches [1, 8] at the artifact's size without a word
            lambda: ys.benchmark("m.onnx", latency=ys.LatencyConfig(batch=4)),
            ConfigError,
            r"^latency.batch=4: benchmark takes it as batches=",
        ),
        (
            lambda: ys.benchmark("m.onnx", latency=ys.LatencyConfig(imgsz=64)),
            ConfigError,
            r"^latency.imgsz=64: benchmark takes it as imgsz=",
        ),
        # these were TypeErrors from inside Path() or int(), or a module's whole printout
        (lambda: ys.describe(nn.Identity()), ConfigError, r"^path=Identity\(\): expected a file's"),
        (lambda: ys.load(nn.Identity()), ModelError, r"^artifact=Identity: expected an artifact"),
        (lambda: ys.load_checkpoint(nn.Identity()), ModelError, r"^path=Identity: expected a"),
        (lambda: ys.train("damo-nano", "d.yaml", out=5), ConfigError, r"^out=5: expected the run"),
        (lambda: ys.train(object(), "d.yaml"), ConfigError, r"^model=.*expected a checkpoint"),
        (
            lambda: ys.run_recipe("m.pt", "d.yaml", [{"export": {}}]),
            ConfigError,
            r"^recipe: a list of stages; give it as a mapping \{'stages': \[\.\.\.\]\}",
        ),
        (
            lambda: ys.save_checkpoint("x.pt", build_model("damo-nano"), imgsz=None),
            ConfigError,
            r"^imgsz=None: a checkpoint records the size",
        ),
    ],
)
def test_wrong_types_name_the_argument(call, err, match):
    with pytest.raises(err, match=match):
        call()


def test_latency_config_is_public():
    from yoloslim.bench.latency import LatencyConfig

    assert ys.LatencyConfig is LatencyConfig and "LatencyConfig" in ys.__all__


def test_save_report_never_replaces_what_is_not_a_report(tmp_path):
    # it turned a checkpoint and a data.yaml into JSON, and changed a run's own record
    from yoloslim.result import Result

    res = Result(model=None, report={"a": 1})
    for name, text in (("best.pt", "weights"), ("data.yaml", "names: [a]\n")):
        (tmp_path / name).write_text(text)
        with pytest.raises(ConfigError, match=r"a report is JSON; name the file \*.json"):
            res.save_report(tmp_path / name)
        assert (tmp_path / name).read_text() == text
    run = tmp_path / "q"
    run.mkdir()
    (run / "quant_report.json").write_text('{"int8": {}}')
    with pytest.raises(ConfigError, match=r"quant_report.json is a run's record"):
        res.save_report(run / "quant_report.json")
    (tmp_path / "notes.json").write_text("not json")
    with pytest.raises(ConfigError, match=r"notes.json holds no JSON"):
        res.save_report(tmp_path / "notes.json")
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(ConfigError, match=r"dir.json is a folder"):
        res.save_report(tmp_path / "dir.json")
    (tmp_path / "mine.json").write_text('{"old": true}')  # a JSON file of the user's: replaced
    assert json.loads(res.save_report(tmp_path / "mine.json").read_text())["report"] == {"a": 1}


def test_a_leading_tilde_is_the_home_folder_in_every_path_the_api_writes(tmp_path, monkeypatch):
    """prune(out=), save_checkpoint and save_report wrote into a folder named '~' in the
    working directory; quantize('~/...onnx') said an existing file did not exist."""
    from yoloslim.models.testing import SMALL_ARCH

    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir(), work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    ckpt = ys.save_checkpoint("~/m.pt", build_model(SMALL_ARCH), imgsz=64)
    assert ckpt == home / "m.pt" and ckpt.is_file()
    cfg = ys.PruneConfig(ratio=0.3, finetune_epochs=0, latency=False, imgsz=64)
    res = ys.prune("~/m.pt", None, config=cfg, out="~/pr")
    assert res.artifacts["checkpoint"] == home / "pr" / "pruned.pt"
    assert res.save_report("~/r.json") == home / "r.json" and (home / "r.json").is_file()
    assert not (work / "~").exists()
    from yoloslim.compress.quantize import _given_onnx  # quantize's look at its model

    with pytest.raises(ModelError, match=rf"^{home}/none.onnx: file does not exist"):
        _given_onnx("~/none.onnx", None)


def test_a_model_cast_frozen_or_compiled_is_taken_or_refused_by_name(tmp_path):
    """A .half() model crashed train, distill (as teacher) and reparameterize inside torch; an
    all-frozen one crashed train; prune(torch.compile(model)) died inside torch_pruning."""
    import copy

    import torch

    from yoloslim.models.testing import SMALL_ARCH

    data = ys.synthesize(tmp_path / "d", images=6, imgsz=64, classes=2)
    model = build_model(SMALL_ARCH, nc=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fused = ys.reparameterize(copy.deepcopy(model).half(), measure=False).model
    assert next(fused.parameters()).dtype == torch.float16  # folded in float32, given back
    cfg = ys.TrainConfig(epochs=1, imgsz=64, batch=4, workers=0)
    res = ys.train(copy.deepcopy(model).half(), data, config=cfg, out=tmp_path / "t")
    assert next(res.model.parameters()).dtype == torch.float32  # trained as float32
    teacher = copy.deepcopy(model).half()  # guides as float32
    ys.distill(model, teacher, data, config=ys.DistillConfig(train=cfg), out=tmp_path / "di")
    assert next(teacher.parameters()).dtype == torch.float16  # the caller's, untouched
    with pytest.raises(ModelError, match=r"no parameter of the model requires grad"):
        ys.train(copy.deepcopy(model).requires_grad_(False), data, config=cfg, out=tmp_path / "f")
    pruned = ys.prune(
        torch.compile(model),
        None,
        config=ys.PruneConfig(ratio=0.3, finetune_epochs=0, latency=False, imgsz=64),
    )
    assert sum(p.numel() for p in pruned.model.parameters()) < sum(
        p.numel() for p in model.parameters()
    )
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # untouched


def test_a_model_given_as_a_path_is_named_by_its_type_not_its_whole_printout():
    with pytest.raises(ConfigError, match=r"^path=Detector: expected a file's path") as e:
        ys.describe(build_model("damo-nano"))
    assert "\n" not in str(e.value)


def test_save_report_knows_every_record_the_command_line_guards():
    from yoloslim.cli.common import REPORT_OWNERS, RUN_RECORDS
    from yoloslim.result import RUN_RECORD_NAMES

    assert set(REPORT_OWNERS) | set(RUN_RECORDS) == RUN_RECORD_NAMES
