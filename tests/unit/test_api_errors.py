"""Wrong-typed arguments to the public API are ConfigError/DataError naming the argument,
not a TypeError or AttributeError from deep inside (each is refused before any file is read)."""

import json
from pathlib import Path

import pytest
import torch
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
        (
            lambda: ys.export(build_model("damo-nano"), None),
            ConfigError,
            r"^out=None: expected the output",
        ),
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
        (lambda: ys.load(nn.Identity()), ConfigError, r"^load\(\): path=Identity: expected an"),
        (lambda: ys.load_checkpoint(nn.Identity()), ModelError, r"^path=Identity: expected a"),
        (lambda: ys.train("damo-nano", "d.yaml", out=5), ConfigError, r"^out=5: expected the run"),
        # audit51 api F3: "a checkpoint or artifact path", though train refuses an artifact
        (
            lambda: ys.train(object(), "d.yaml"),
            ConfigError,
            r"^model=.*expected a registered name, an arch \.yaml or dict, a \.pt checkpoint",
        ),
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
        # audit18: flags taken by truthiness ("no" replaced a training run), raw TypeErrors
        (lambda: ys.train("damo-nano", "d.yaml", exist_ok="no"), ConfigError, r"^exist_ok='no'"),
        (lambda: ys.train(None, None, out="r", resume="no"), ConfigError, r"^resume='no' must"),
        (lambda: ys.distill("s", "t", "d.yaml", progress=1), ConfigError, r"^progress=1 must be"),
        (lambda: ys.prune("m.pt", "d.yaml", exist_ok="yes"), ConfigError, r"^exist_ok='yes'"),
        (lambda: ys.reparameterize(nn.Identity(), measure="no"), ConfigError, r"^measure='no'"),
        (lambda: ys.run_recipe("m.pt", "d", "r", out="o", resume=0), ConfigError, r"^resume=0 "),
        (
            lambda: ys.run_budget("m.pt", "d", "r", out="o", max_drop=1, resume=0),
            ConfigError,
            r"^resume=0",
        ),
        (lambda: ys.quantize("m.pt", "d.yaml", progress="y"), ConfigError, r"^progress='y' must"),
        (lambda: ys.distill("s", "t", "d.yaml", out=None), ConfigError, r"^out=None: expected"),
        (lambda: ys.run_recipe("m.pt", None, "r", out="o"), ConfigError, r"^data=None: expected"),
        (lambda: ys.run_recipe("m.pt", "d", "r", out=None), ConfigError, r"^out=None: expected"),
        (
            lambda: ys.run_budget("m.pt", None, "r", out="o", max_drop=1),
            ConfigError,
            r"^data=None: exp",
        ),
        (
            lambda: ys.run_budget("m.pt", "d", "r", out=None, max_drop=1),
            ConfigError,
            r"^out=None: expec",
        ),
        (
            lambda: ys.run_budget(build_model("damo-nano"), "d", "r", out="o", max_drop=1),
            ConfigError,
            r"^run_budget takes the model as a checkpoint file",
        ),
        (
            lambda: ys.reparameterize(build_model("damo-nano"), example_input=[1.0]),
            ConfigError,
            r"^example_input: expected a tensor .*, got list",
        ),
        (
            lambda: ys.reparameterize(
                build_model("damo-nano"), example_input=torch.zeros(1, 1, 64, 64)
            ),
            ConfigError,
            r"^example_input of shape \(1, 1, 64, 64\) does not fit the model: ",
        ),
        (
            lambda: ys.save_checkpoint("x.pt", build_model("damo-nano"), imgsz=64, meta="note"),
            ConfigError,
            r"^meta='note': expected a mapping",
        ),
        (  # the arguments the other way round was a TypeError from pathlib
            lambda: ys.save_checkpoint(build_model("damo-nano"), "x.pt", imgsz=64),
            ConfigError,
            r"^save_checkpoint\(Detector, 'x.pt'\): the file comes first",
        ),
        (lambda: ys.save_checkpoint("x.pt", {}, imgsz=64), ModelError, r"model is a dict, not a"),
        (
            lambda: ys.LatencyConfig(ov_hint="fp64"),
            ConfigError,
            r"^ov_hint='fp64' \(--ov-precision\): expected one",
        ),
        (lambda: ys.register_model("x1")(5), ModelError, r"decorates a function .*not a int"),
        (lambda: build_model("damo-nano", names="abc"), ModelError, r"^names='abc': expected a"),
        (lambda: build_model("damo-nano", names=[1, 2]), ModelError, r"^names: 1 is no class"),
        # audit51 api F1, F2: a pathlib TypeError; "path=NoneType ... needs no loading"
        (lambda: ys.prune(None, None), ConfigError, r"^model=None: expected a registered name"),
        (lambda: ys.export(None, "out"), ConfigError, r"^model=None: expected a checkpoint or"),
        (lambda: ys.reparameterize(None), ConfigError, r"^model=None: expected a checkpoint"),
        (
            lambda: ys.quantize(None, "d.yaml"),
            ConfigError,
            r"^model_or_artifact=None: expected a checkpoint",
        ),
        (lambda: build_model("out/model.onnx"), ModelError, r"model.onnx: is an exported artifact"),
        (lambda: build_model(Path("m.xml")), ModelError, r"^m.xml: is an exported artifact; "),
        (lambda: build_model("runs/best.pt"), ModelError, r"best.pt: a checkpoint is no model to"),
        # audit22: an artifact that "passed" its check, and that no predict could decode
        (
            lambda: ys.export(nn.Conv2d(3, 3, 1), "out"),
            ModelError,
            r"^model: export needs a yoloslim Detector or checkpoint, got Conv2d",
        ),
        (lambda: ys.PruneConfig(ignore=5), ConfigError, r"^PruneConfig.ignore=5: must be a list"),
        (  # ignored without a word; the command line refused it
            lambda: ys.export("m.pt", "out", nms_conf=0.5),
            ConfigError,
            r"^nms_conf \(--nms-conf\) set the thresholds of the NMS graph, and nms=False: add",
        ),
        (lambda: ys.validate("m.pt", "d.yaml", progress="no"), ConfigError, r"^progress='no'"),
        (
            lambda: ys.reparameterize(
                build_model("damo-nano"), example_input=torch.zeros(3, 64, 64)
            ),
            ConfigError,
            r"^example_input of shape \(3, 64, 64\) does not fit the model: expected 4D",
        ),
        (
            lambda: ys.load("x.pt", confidence=0.3),
            ConfigError,
            r"^load\(\): unknown option confidence; the options are imgsz, conf, iou",
        ),
        # audit48 api: a TypeError after the first epoch's files were written (F1); "a fuse()
        # method is wrong" (F2); bare TypeErrors (F4, F5); accepted (F6, F7)
        (
            lambda: ys.train("damo-nano", "d.yaml", on_epoch_end=5),
            ConfigError,
            r"^on_epoch_end=5 must be a function of \(epoch, metrics row\) or None",
        ),
        (
            lambda: ys.reparameterize(
                build_model("damo-nano"), example_input=torch.full((1, 3, 64, 64), float("nan"))
            ),
            ConfigError,
            r"^example_input holds 12288 non-finite value\(s\) \(nan or inf\)",
        ),
        (
            lambda: ys.TrainConfig.from_dict(None),
            ConfigError,
            r"^train config: expected a mapping, got NoneType",
        ),
        (lambda: ys.load_checkpoint("m.pt", mmap="yes"), ConfigError, r"^mmap='yes' must be"),
        (lambda: ys.train("damo-nano", "d.yaml", hook=5), ConfigError, r"^hook=5 is no TrainHook"),
        (
            lambda: ys.train("damo-nano", "d.yaml", resume=True, exist_ok=True),
            ConfigError,
            r"^resume=True continues the run in out, exist_ok=True replaces it",
        ),
        (
            lambda: ys.distill("t.pt", "damo-nano", "d.yaml", resume=True, exist_ok=True),
            ConfigError,
            r"^resume=True continues the run in out, exist_ok=True replaces it",
        ),
        (lambda: build_model("damo-nano", names=["a", "a"]), ModelError, r"duplicates: \['a'\]"),
        (lambda: ys.LatencyConfig(imgsz=65), ConfigError, r"^imgsz=65 must be a multiple of 32"),
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


def test_a_checkpoint_takes_numpy_values_as_plain_ones_and_refuses_what_would_not_load(tmp_path):
    # an np.float64 metric or numpy-string names were saved, replacing a good checkpoint,
    # and then refused on load as "pickled Python objects"
    import numpy as np

    model = build_model("damo-nano", names=list(np.array(["cat", "dog"])))
    path = ys.save_checkpoint(tmp_path / "m.pt", model, imgsz=64)
    meta = {"map": np.mean([0.25, 0.5]), "epoch": np.int64(3), "ok": np.bool_(True), "p": tmp_path}
    ys.save_checkpoint(path, model, imgsz=64, meta={**meta, "per_class": (np.float32(0.5),)})
    loaded, ckpt = ys.load_checkpoint(path)
    assert loaded.names == ["cat", "dog"] and type(loaded.names[0]) is str
    assert ckpt["meta"] == {
        "yoloslim_version": ys.__version__,  # which yoloslim wrote it
        "map": 0.375,
        "epoch": 3,
        "ok": True,
        "p": str(tmp_path),
        "per_class": (0.5,),
    }
    assert type(ckpt["meta"]["map"]) is float and type(ckpt["meta"]["epoch"]) is int
    before = path.read_bytes()
    with pytest.raises(ConfigError, match=r"^meta\['arr'\]: a ndarray cannot be stored"):
        ys.save_checkpoint(path, model, imgsz=64, meta={"arr": np.zeros(3)})
    assert path.read_bytes() == before  # the good one is kept


def test_a_later_format_says_a_newer_yoloslim_wrote_it(tmp_path):
    import torch

    path = ys.save_checkpoint(tmp_path / "m.pt", build_model("damo-nano", nc=2), imgsz=64)
    ckpt = torch.load(path, weights_only=True)
    ckpt["format"], ckpt["meta"]["yoloslim_version"] = "yoloslim/2", "9.0"
    torch.save(ckpt, path)
    with pytest.raises(
        ModelError, match=r"format 'yoloslim/2', written by yoloslim 9.0; .*upgrade"
    ):
        ys.load_checkpoint(path)


def test_validate_names_a_module_whose_output_is_no_detectors(tmp_path):
    data = ys.synthesize(tmp_path / "d", images=4, imgsz=64, classes=2)
    with pytest.raises(ModelError, match=r"^model: Conv2d gives \(1, 3, 64, 64\), not a detector"):
        ys.validate(nn.Conv2d(3, 3, 1), data, imgsz=64, batch=1)


def test_the_callers_random_draws_are_where_they_were_after_a_call(tmp_path):
    # describe, load, validate, export... built a Detector (a random init) before loading its
    # weights: the caller's next torch.rand differed with and without the call
    import random

    import numpy as np

    data = ys.synthesize(tmp_path / "d", images=4, imgsz=64, classes=2)
    ckpt = ys.save_checkpoint(tmp_path / "m.pt", build_model("damo-nano", nc=2), imgsz=64)
    calls = [
        lambda: ys.describe(ckpt),
        lambda: ys.load(ckpt),
        lambda: ys.load_checkpoint(ckpt),
        lambda: ys.validate(ckpt, data, batch=2),
        lambda: ys.reparameterize(ckpt, measure=False),
        lambda: ys.export(ckpt, tmp_path / "e", formats=["onnx"], verify=False),
    ]
    for call in calls:
        torch.manual_seed(0), np.random.seed(0), random.seed(0)
        call()
        drawn = torch.rand(1), np.random.rand(), random.random()
        torch.manual_seed(0), np.random.seed(0), random.seed(0)
        assert (torch.rand(1), np.random.rand(), random.random()) == drawn


def test_validate_runs_a_checkpoint_in_its_deploy_form(tmp_path, monkeypatch):
    # as predict, bench and a Predictor do (audit45 reparam F1: the training form here, the
    # deploy form when val's --threads loaded a Predictor; README said deploy form)
    data = ys.synthesize(tmp_path / "d", images=4, imgsz=64, classes=2)
    ckpt = ys.save_checkpoint(tmp_path / "m.pt", build_model("damo-nano", nc=2), imgsz=64)
    calls, forward = [], nn.BatchNorm2d.forward
    monkeypatch.setattr(nn.BatchNorm2d, "forward", lambda m, x: calls.append(1) or forward(m, x))
    ys.validate(ckpt, data, batch=2)
    assert calls == []
    ys.validate(ys.load_checkpoint(ckpt)[0], data, batch=2)  # a module: run as given
    assert calls


def test_a_wrong_value_for_a_model_is_named_briefly_not_printed_whole(tmp_path):
    # audit45 docs F1: load_checkpoint's (model, checkpoint) tuple given to validate was a
    # 600 KB message (every weight)
    ckpt = ys.save_checkpoint(tmp_path / "m.pt", build_model("damo-nano", nc=2), imgsz=64)
    pair = ys.load_checkpoint(ckpt)
    for call in (lambda: ys.validate(pair, "d.yaml"), lambda: ys.train(pair, None)):
        with pytest.raises(ConfigError, match=r"model=a tuple of Detector, dict") as e:
            call()
        assert len(str(e.value)) < 300
