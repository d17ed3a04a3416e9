"""train(): what it refuses before any work, a finished run's resume, the run folder's files,
and the train command's messages. No test here trains a model (one takes a single step, into a
diverging loss; one an epoch of a few steps, for a warning): runs are faked with a saved last.pt."""

from __future__ import annotations

import importlib
import json
import logging
import os
import shutil
import signal
import stat
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from yoloslim.cli.main import main
from yoloslim.data.synth import synthesize
from yoloslim.errors import ConfigError, DataError, ModelError
from yoloslim.fileio import apply_umask, remove_stale_temps
from yoloslim.models.checkpoint import save_checkpoint
from yoloslim.models.registry import build_model
from yoloslim.train import TrainConfig, TrainResult, train

NAMES3 = ["circle", "square", "triangle"]
# the package, not the function `yoloslim.train` (yoloslim/__init__ re-exports it)
TRAIN_PKG = importlib.import_module("yoloslim.train")


@pytest.fixture(scope="module")
def sets(tmp_path_factory) -> dict[int, Path]:
    """data.yaml of two tiny synthetic sets: 3 classes and 2 classes."""
    root = tmp_path_factory.mktemp("sets")
    return {
        nc: synthesize(root / f"c{nc}", images=6, imgsz=64, classes=nc, seed=nc, val_fraction=0.34)
        for nc in (3, 2)
    }


def _fake_run(out: Path, data: str | Path, *, last_val: dict | None = None) -> Path:
    """A run folder whose last.pt says it finished its one epoch (no optimizer state)."""
    torch.manual_seed(0)
    model = build_model("damo-nano", names=NAMES3)
    cfg = TrainConfig(epochs=1, imgsz=64, batch=4, workers=0, loss={"static_assigner_epochs": 0})
    ts = {"epoch": 0, "config": cfg.to_dict(), "best_map": 0.25}
    if last_val is not None:
        ts["last_val"] = last_val
    meta = {"epoch": 0, "map": 0.25, "map50": 0.5, "data": str(data)}
    return save_checkpoint(out / "last.pt", model, imgsz=64, meta=meta, train_state=ts)


# --- refused before any work: the data path does not even exist ------------------------


def test_out_that_is_a_file_is_refused_first(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("mine")
    with pytest.raises(ConfigError, match=r"out='.*afile' is an existing file"):
        train("damo-nano", tmp_path / "no-such.yaml", out=afile)
    assert afile.read_text() == "mine"


@pytest.mark.parametrize("marker", ["last.pt", "metrics.jsonl", "best.pt"])
def test_out_holding_a_run_is_refused_without_resume(tmp_path, marker):
    (tmp_path / marker).write_text("old run")
    want = rf"{tmp_path} holds a training run \({marker}\); resume it \(--resume {tmp_path}, "
    if marker != "last.pt":  # nothing to resume: --resume would say last.pt does not exist
        want = rf"{tmp_path} holds a training run that cannot be resumed \({marker} but no last"
    with pytest.raises(ConfigError, match=want):
        train("damo-nano", tmp_path / "no-such.yaml", out=tmp_path)
    assert (tmp_path / marker).read_text() == "old run"


def test_a_resume_of_a_run_stopped_before_its_first_last_pt_says_to_start_it_again(tmp_path):
    # audit28 chaos L1: "last.pt does not exist", without a word of what to do
    (tmp_path / "train_config.yaml").write_text("epochs: 1\n")  # what a started run wrote
    with pytest.raises(ConfigError, match=r"last.pt does not exist \(the run there stopped "):
        train(None, None, out=tmp_path, resume=True)
    with pytest.raises(ConfigError, match=r"last.pt does not exist$"):  # no run at all there
        train(None, None, out=tmp_path / "empty", resume=True)


def test_train_resume_refuses_a_distillation_run(sets, tmp_path):
    last = _fake_run(tmp_path, sets[3])
    state = torch.load(last, weights_only=True)
    state["train_state"]["hook"] = {"config": {}}  # what a distill run's last.pt holds
    torch.save(state, last)
    before = last.read_bytes()
    with pytest.raises(ConfigError, match=r"is a distillation .* distill --resume"):
        train(None, None, out=tmp_path, resume=True)
    assert last.read_bytes() == before


def test_resume_with_data_of_another_class_count(sets, tmp_path):
    _fake_run(tmp_path, sets[3])
    with pytest.raises(ConfigError, match=r"has 2 classes, the run in .* has 3 \(circle, squ"):
        train(None, sets[2], out=tmp_path, resume=True)


def test_a_model_that_is_no_model_or_of_another_class_count_is_named(sets, tmp_path):
    # "unknown model 'runs/base'", an unknown-keys list for a data.yaml, and "the model has
    # 3 classes but the data has 2" naming neither file
    from yoloslim.models import build_model
    from yoloslim.models.checkpoint import save_checkpoint

    ckpt = save_checkpoint(tmp_path / "run" / "best.pt", build_model("damo-nano", nc=3), imgsz=64)
    with pytest.raises(ModelError, match=r"run: is a folder, not a model; did you mean .*best.pt"):
        train(tmp_path / "run", sets[2], out=tmp_path / "o")
    (tmp_path / "myarch").write_text("nc: 2\n")
    with pytest.raises(ModelError, match=r"myarch: is a file, but a model is a registered name"):
        train(str(tmp_path / "myarch"), sets[2], out=tmp_path / "o")
    with pytest.raises(ModelError, match=r"data.yaml: is a dataset's data.yaml .*not an arch"):
        train(sets[2], sets[2], out=tmp_path / "o")
    with pytest.raises(
        ModelError,
        match=r"best.pt has 3 classes \(0, 1, 2\) but .*c2/data.yaml "
        r"has 2 \(circle, square\): fine-tuning keeps",
    ):
        train(ckpt, sets[2], out=tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_train_refuses_a_train_split_without_instances(sets, tmp_path):
    # nothing to learn (a wrong labels path, almost always): an error before any epoch, not a
    # run that ends without best.pt
    data = tmp_path / "data"
    shutil.copytree(sets[3].parent, data)
    for label in (data / "labels" / "train").iterdir():
        label.write_text("")
    with pytest.raises(DataError, match="the train split has no instance in its 4 images"):
        train("damo-nano", data / "data.yaml", out=tmp_path / "run")
    assert not (tmp_path / "run" / "last.pt").exists()


# --- resuming a finished run -----------------------------------------------------------


@pytest.mark.parametrize("saved_last", [True, False])
def test_resume_of_finished_run_reports_its_last_validation(sets, tmp_path, saved_last):
    last_val = {"map": 0.25, "map50": 0.5, "per_class": {n: 0.25 for n in NAMES3}}
    _fake_run(tmp_path, sets[3], last_val=last_val if saved_last else None)
    before = (tmp_path / "last.pt").read_bytes()
    res = train(None, sets[3], out=tmp_path, resume=True)
    # checkpoints saved before last_val was kept give the map and map50 of their meta
    assert res.report["last"] == (last_val if saved_last else {"map": 0.25, "map50": 0.5})
    assert res.report["images_per_s"] is None and res.report["best_map"] == 0.25
    assert res.last == tmp_path / "last.pt" and res.model.nc == 3
    assert (tmp_path / "last.pt").read_bytes() == before


def test_a_resume_refuses_a_best_pt_not_of_the_last_pts_run(sets, tmp_path):
    # audit50 resume F1: another run's last.pt (3 classes) copied beside a best.pt of 4
    # resumed, and the summary named a best.pt of other classes
    _fake_run(tmp_path, sets[3])
    other = build_model("damo-nano", names=["a", "b"])
    save_checkpoint(tmp_path / "best.pt", other, imgsz=64)
    with pytest.raises(ConfigError, match=r"best.pt is not of the run in .*last.pt \(classes "):
        train(None, sets[3], out=tmp_path, resume=True)
    save_checkpoint(tmp_path / "best.pt", build_model("damo-tiny", names=NAMES3), imgsz=64)
    with pytest.raises(ConfigError, match=r"\(another architecture\): one of them was copied"):
        train(None, sets[3], out=tmp_path, resume=True)
    torch.manual_seed(1)  # the run's own arch, other weights: its best epoch's
    save_checkpoint(tmp_path / "best.pt", build_model("damo-nano", names=NAMES3), imgsz=64)
    assert train(None, sets[3], out=tmp_path, resume=True).report["best_map"] == 0.25


def _stopped_after_epoch_0(monkeypatch, data, out, epochs=2):
    """A real run of ``epochs``, stopped right after its first last.pt."""
    from yoloslim.train.run_folder import RunFolder

    save = RunFolder.save

    def stop(self, name, model, **kwargs):
        save(self, name, model, **kwargs)
        if name == "last.pt":
            raise KeyboardInterrupt

    cfg = TrainConfig(epochs=epochs, imgsz=64, batch=4, workers=0, val_interval=epochs)
    monkeypatch.setattr(RunFolder, "save", stop)
    with pytest.raises(KeyboardInterrupt):
        train("damo-nano", data, config=cfg, out=out)
    monkeypatch.setattr(RunFolder, "save", save)


def test_a_resume_refuses_a_settings_file_edited_since_the_run_wrote_it(
    sets, tmp_path, capsys, monkeypatch
):
    """The edit was ignored (the run goes on with last.pt's settings) and then written over."""
    from yoloslim.train.trainer import _refuse_edited_settings_files

    run = tmp_path / "run"
    _stopped_after_epoch_0(monkeypatch, sets[2], run)
    f = run / "train_config.yaml"
    saved = yaml.safe_load(f.read_text())
    cfg = TrainConfig(**{**saved, "loss": saved["loss"]})
    # as written, a file of an older version (fewer keys), a runtime setting changed: no edit
    # ... or an auto setting (null) the run resolved when it began: a compress distill
    # stage's distill_config.yaml holds loss.static_assigner_epochs: null
    auto = {**saved, "imgsz": None, "loss": {**saved["loss"], "static_assigner_epochs": None}}
    for written in (saved, {"epochs": 2, "lr0": saved["lr0"]}, {**saved, "workers": 2}, auto):
        f.write_text(yaml.safe_dump(written, sort_keys=False))
        _refuse_edited_settings_files(run, cfg, {})
    edited = {**saved, "epochs": 5, "loss": {**saved["loss"], "box": 9.0}}
    f.write_text(yaml.safe_dump(edited, sort_keys=False))
    with pytest.raises(ConfigError, match=r"train_config.yaml was edited since the run wrote it "
                       r"\(epochs: 2 in the run, 5 in the file; loss.box: .* in the run, 9.0 in "
                       r"the file\), or the last.pt beside it is another run's; a resume "
                       r"continues"):  # fmt: skip
        train(None, None, out=run, resume=True)
    assert yaml.safe_load(f.read_text()) == edited  # kept as the user left it
    # the CLI passes the run's own settings (plus --device/--workers): refused as well
    assert main(["train", "--resume", str(run)]) == 2
    assert "was edited since the run wrote it (epochs: 2 in the run" in capsys.readouterr().err
    f.write_text("- not\n- settings\n")
    with pytest.raises(ConfigError, match=r"no longer a settings mapping"):
        train(None, None, out=run, resume=True)
    f.write_text(yaml.safe_dump(saved, sort_keys=False))  # undone: the run goes on
    assert train(None, None, out=run, resume=True).report["images_per_s"] is not None
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    # a distillation's distill_config.yaml holds its training settings under train:
    distilled = {"temperature": 2.0, "train": {**saved, "workers": 0}}
    text = yaml.safe_dump(distilled, sort_keys=False)
    for written in (distilled, {**distilled, "train": {**saved, "workers": 3}}):
        (run / "distill_config.yaml").write_text(yaml.safe_dump(written, sort_keys=False))
        _refuse_edited_settings_files(run, cfg, {"distill_config.yaml": text})
    edited = {"temperature": 9.0, "train": {**saved, "lr0": 0.1}}
    (run / "distill_config.yaml").write_text(yaml.safe_dump(edited, sort_keys=False))
    with pytest.raises(ConfigError, match=r"distill_config.yaml was edited .*\(temperature: 2.0 in "
                       r"the run, 9.0 in the file; train.lr0: "):  # fmt: skip
        _refuse_edited_settings_files(run, cfg, {"distill_config.yaml": text})


def test_a_finished_run_with_an_edited_settings_file_is_reported_finished(sets, tmp_path):
    """It changes nothing and writes no file: the edit is no reason to refuse."""
    _fake_run(tmp_path, sets[3])
    f = tmp_path / "train_config.yaml"
    f.write_text("epochs: 5\n")
    assert train(None, sets[3], out=tmp_path, resume=True).report["best_map"] == 0.25
    assert f.read_text() == "epochs: 5\n"


# --- run folder files ----------------------------------------------------------------


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640)])
def test_apply_umask_gives_mkstemp_files_normal_permissions(tmp_path, umask, mode):
    fd, tmp = tempfile.mkstemp(dir=tmp_path)
    os.close(fd)
    assert stat.S_IMODE(os.stat(tmp).st_mode) == 0o600
    old = os.umask(umask)
    try:
        apply_umask(tmp)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp).st_mode) == mode


def test_remove_stale_temps_only_touches_its_own_patterns(tmp_path):
    stale = [".last.pt.4l3e63g7.tmp", ".best.pt.a_b1c2d3.tmp", ".train_config.yaml.tmp"]
    kept = [
        "last.pt",
        ".last.pt.abc.tmp",  # not an 8-character mkstemp name
        ".other.pt.4l3e63g7.tmp",
        ".last.pt.4l3e63g7.tmp.bak",
        "notes.tmp",
    ]
    for name in stale + kept:
        (tmp_path / name).write_text("x")
    removed = remove_stale_temps(tmp_path, ["last.pt", "best.pt", "train_config.yaml"])
    assert sorted(p.name for p in removed) == sorted(stale)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)


def test_a_temp_of_a_long_name_is_found_again(tmp_path):
    # a name near the 255-byte limit is cut in its temp (.NAME.XXXXXXXX.tmp adds 14 bytes):
    # the stale-temp pattern cuts it the same way (it looked for the whole name)
    from yoloslim.fileio import temp_beside

    name = "v" * 245 + ".mp4"
    fd, tmp = temp_beside(tmp_path / name)
    os.close(fd)
    assert len(Path(tmp).name.encode()) <= 255
    assert remove_stale_temps(tmp_path, [name]) == [Path(tmp)]


# --- the train command ---------------------------------------------------------------


def test_resume_with_a_relative_data_path_from_another_folder(sets, tmp_path, monkeypatch, capsys):
    # last.pt files written before the path was made absolute hold it as given: relative to
    # the folder the run was started from (here, the one holding c3/)
    started_in = sets[3].parent.parent
    run = tmp_path / "run"
    _fake_run(run, "c3/data.yaml")
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert "last.pt records its data.yaml as 'c3/data.yaml'" in err and "(--data, data=)" in err
    monkeypatch.chdir(started_in)
    assert main(["train", "--resume", str(run)]) == 0
    assert "already finished" in capsys.readouterr().err
    # an absolute one, moved since: said to be the run's, with --data to give
    _fake_run(tmp_path / "moved", tmp_path / "gone" / "data.yaml")
    assert main(["train", "--resume", str(tmp_path / "moved")]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "the run's data.yaml" in err and "is gone; give where it is now (--data, data=)" in err


def test_python_resume_takes_the_runs_data_and_refuses_another_model(sets, tmp_path):
    _fake_run(tmp_path, sets[3].resolve())
    res = train(None, None, out=tmp_path, resume=True)  # finished: returned as it is
    assert res.report["best_map"] == 0.25
    with pytest.raises(ConfigError, match=r"continues the model in its last.pt; pass model=None"):
        train("damo-tiny", sets[3], out=tmp_path, resume=True)
    with pytest.raises(ConfigError, match=r"train needs a model and a data.yaml"):
        train(None, sets[3], out=tmp_path / "new")


def test_a_checkpoint_is_fine_tuned_and_threads_are_restored(sets, tmp_path):
    torch.manual_seed(123)  # not the run's seed, so a model rebuilt at random would differ
    base = save_checkpoint(tmp_path / "base.pt", build_model("damo-nano", names=NAMES3), imgsz=64)
    before = torch.get_num_threads()
    # no imgsz: the checkpoint's own (64), as the command line and recipes do
    cfg = TrainConfig(epochs=1, batch=4, workers=0, threads=1, lr0=1e-9, warmup_epochs=0)
    # called inside a caller's inference_mode (audit29 api L1: "element 0 of tensors does not
    # require grad"): it trains all the same, and the caller's mode is back afterwards
    with torch.inference_mode():
        res = train(str(base), sets[3], config=cfg, out=tmp_path / "ft")
        assert torch.is_inference_mode_enabled() and not torch.is_grad_enabled()
    assert torch.get_num_threads() == before
    # fine-tuned from base.pt's weights (a tiny learning rate keeps them), not rebuilt at random
    start = torch.load(base, weights_only=True)["state_dict"]
    w = "backbone.stages.0.down.conv.weight"
    got = torch.load(tmp_path / "ft" / "last.pt", weights_only=True)["state_dict"][w]
    torch.testing.assert_close(got, start[w], atol=1e-4, rtol=0)
    assert res.report["epochs"] == 1
    # and with the task-aligned assigner from the start, as any model given with weights
    saved = yaml.safe_load((tmp_path / "ft" / "train_config.yaml").read_text())
    assert saved["loss"]["static_assigner_epochs"] == 0
    assert saved["imgsz"] == 64 and torch.load(res.best, weights_only=True)["imgsz"] == 64


def test_settings_that_quietly_do_less_are_warned_about(sets, tmp_path, caplog):
    # batch 1000 on 32 images trained one step an epoch; the LR never left a long warm-up
    cfg = TrainConfig(epochs=1, batch=16, workers=0, warmup_epochs=3, imgsz=64)
    with caplog.at_level("WARNING", logger="yoloslim.train"):
        train("damo-nano", sets[3], config=cfg, out=tmp_path / "r")
    said = " ".join(caplog.text.split())
    assert "batch=16 is larger than the 4 training images: each epoch is one step" in said
    assert "warmup_epochs=3 is longer than the run (3 epochs of 1 step each: 3 warm-up" in said
    assert "the learning rate never leaves its warm-up" in said
    # a warm-up as long as the run, and a mosaic closed for all of it (the defaults' 1 and
    # 2 epochs, at --epochs 1 or 2): the decay and the mosaic were skipped without a word
    from yoloslim.train.trainer import _warn_idle_settings

    def warned(n_batches=7, **kw):
        caplog.clear()
        with caplog.at_level("WARNING", logger="yoloslim.train"):
            _warn_idle_settings(TrainConfig(**kw), n_train=100, n_batches=n_batches)
        return " ".join(caplog.text.split())

    said = warned(epochs=2, warmup_epochs=2, augment={"mosaic": 0.0})
    assert "warmup_epochs=2 is the whole run (2 epochs of 7 steps each: 14 warm-up steps" in said
    assert "the learning rate ends at lr0=" in said and len(caplog.records) == 1
    said = warned(epochs=2)
    assert said.count("close_mosaic=2 turns mosaic off for the last 2 epochs, and the run has 2")
    assert len(caplog.records) == 1
    assert warned(epochs=3) == ""  # no mosaic to skip, and room for both: no word
    # augmentation switched off: no mosaic to miss (audit47 train L2)
    assert warned(epochs=2, augment={"enabled": False}) == ""
    # audit43 train F2: epochs compared before the warm-up was rounded to whole steps: 2.95
    # epochs of 6 steps is 18 steps, the whole run of 3 epochs (not a word), and 3.05 too
    # (said to never reach lr0, which its last step does)
    for w in (2.95, 3.05):
        said = warned(6, epochs=3, warmup_epochs=w)
        assert f"warmup_epochs={w} is the whole run (" in said and len(caplog.records) == 1
    assert "is longer than the run" in warned(6, epochs=3, warmup_epochs=3.1)
    # audit51 api F5: "1 epochs of 2 steps each"
    said = warned(2, epochs=1, warmup_epochs=1, close_mosaic=1)
    assert "is the whole run (1 epoch of 2 steps each: 2 warm-up steps of the run's 2)" in said
    assert "turns mosaic off for the last 1 epoch, and the run has 1" in said


def test_resume_of_a_finished_run_says_so(sets, tmp_path, capsys):
    _fake_run(tmp_path, sets[3].resolve())
    assert main(["train", "--resume", str(tmp_path)]) == 0
    said = capsys.readouterr()
    assert f"warning: {tmp_path} already finished 1/1 epochs; nothing to do" in said.err
    assert "best mAP50-95 25.0%" in said.out


def test_a_damaged_run_folder_is_one_line_naming_the_file(sets, tmp_path, capsys):
    # audit42 corrupt F3, F4, F7: a damaged best.pt failed the resume after its last epoch;
    # last.pt a folder was "does not exist", with an --exist-ok hint that deletes the run; a
    # damaged train_state was a traceback in info and train --resume
    run = tmp_path / "run"
    _fake_run(run, sets[3].resolve())
    (run / "best.pt").write_bytes(b"PK\x03\x04 cut short")
    assert main(["train", "--resume", str(run)]) == 2
    assert f"error: ModelError: {run / 'best.pt'}: not a yoloslim checkpoint" in (
        capsys.readouterr().err
    )
    (run / "best.pt").unlink()
    (run / "best.pt").mkdir()
    assert main(["train", "--resume", str(run)]) == 2
    assert f": {run / 'best.pt'} is not a file" in capsys.readouterr().err
    (run / "best.pt").rmdir()
    ckpt = torch.load(run / "last.pt", weights_only=True)
    (run / "last.pt").unlink()
    (run / "last.pt").mkdir()
    assert main(["train", "--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert f": {run / 'last.pt'} is not a file" in err and "--exist-ok" not in err
    (run / "last.pt").rmdir()
    for damage, said in (
        ({"train_state": 3}, "train_state is int, not a mapping"),
        ({"epoch": "0"}, "train_state.epoch='0' is not an epoch number"),
        (
            {"config": {**ckpt["train_state"]["config"], "epochs": "x"}},
            "train_state.config.epochs='x'",
        ),
    ):
        ts = damage.get("train_state", {**ckpt["train_state"], **damage})
        torch.save({**ckpt, "train_state": ts}, run / "last.pt")
        for argv in (["info", str(run / "last.pt")], ["train", "--resume", str(run)]):
            assert main(argv) == 2
            assert f"{run / 'last.pt'}: damaged checkpoint: {said}" in capsys.readouterr().err
    # an unfinished run without its weights' and optimizer's state
    unfinished = {**ckpt["train_state"], "config": {**ckpt["train_state"]["config"], "epochs": 2}}
    torch.save({**ckpt, "train_state": unfinished}, run / "last.pt")
    assert main(["train", "--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert f"{run / 'last.pt'}: damaged training state (no 'raw_state_dict')" in err


def test_a_resume_whose_last_pt_changed_meanwhile_or_that_ran_out_of_memory(
    sets, tmp_path, monkeypatch
):
    import shutil

    import yoloslim.train.trainer as trainer

    run = tmp_path / "run"
    train("damo-nano", sets[3], config=TrainConfig(epochs=1, imgsz=64, batch=4, workers=0), out=run)
    ckpt = torch.load(run / "last.pt", weights_only=True)
    config = {**ckpt["train_state"]["config"], "epochs": 2}  # one more epoch to go
    torch.save({**ckpt, "train_state": {**ckpt["train_state"], "config": config}}, run / "last.pt")
    (run / "train_config.yaml").unlink()  # (its epochs: 1 would refuse the resume)
    before = (run / "last.pt").read_bytes()
    # review2 F2: another resume of the run went on while this one built its model: this
    # one trained again from its stale state, over the other's checkpoints and rows
    fit = trainer._fit

    def another_resume_meanwhile(*args, **kwargs):
        got = fit(*args, **kwargs)
        shutil.copy(run / "last.pt", run / "other.pt")
        (run / "other.pt").replace(run / "last.pt")  # a newer file, as a save writes it
        return got

    monkeypatch.setattr(trainer, "_fit", another_resume_meanwhile)
    with pytest.raises(ConfigError, match=r"last.pt changed since this resume read it"):
        train(None, None, out=run, resume=True)
    assert (run / "last.pt").read_bytes() == before
    monkeypatch.undo()
    # review2 F1: a machine's error while loading the state is said as itself, not as a
    # damaged last.pt with advice that deletes the run

    def out_of_memory(self, state):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(torch.optim.Optimizer, "load_state_dict", out_of_memory)
    with pytest.raises(torch.OutOfMemoryError):
        train(None, None, out=run, resume=True)
    assert (run / "last.pt").read_bytes() == before


def test_a_damaged_metrics_file_is_read_around(tmp_path, caplog):
    # audit42 corrupt F2: bytes that are not UTF-8, or a row whose epoch is no number, were a
    # traceback of the resume
    from yoloslim.train.run_folder import RunFolder

    run = RunFolder(tmp_path, TrainConfig(), progress=False)
    rows = b'{"epoch": 0, "map": 0.1}\n\x00\xff\xfe garbage\n{"epoch": "x"}\n[1]\n{"epoch": 1}\n'
    rows += b'{"noepoch": 1}\n{"epoch": -5}\n'
    (tmp_path / "metrics.jsonl").write_bytes(rows)
    with caplog.at_level(logging.WARNING, "yoloslim"):
        run.trim_metrics(1)
    assert (tmp_path / "metrics.jsonl").read_text() == '{"epoch": 0, "map": 0.1}\n'
    assert "metrics.jsonl:2: skipped a line that is not JSON" in caplog.text
    assert "metrics.jsonl:3: skipped a line that is no epoch's row" in caplog.text
    assert "metrics.jsonl:4: skipped a line that is no epoch's row" in caplog.text
    for n in (6, 7):  # no epoch, a negative one (review2 F5: kept, read as epoch 0)
        assert f"metrics.jsonl:{n}: skipped a line that is no epoch's row" in caplog.text


def test_config_file_with_unknown_key_is_named(sets, tmp_path, capsys):
    cfg = tmp_path / "badcfg.yaml"
    cfg.write_text("epochz: 3\n")
    rc = main(["train", "--data", str(sets[3]), "--config", str(cfg), "--out", str(tmp_path)])
    assert rc == 2
    assert f"unknown key(s) ['epochz'] in --config {cfg};" in capsys.readouterr().err


def test_a_config_file_the_run_would_replace_is_refused(sets, tmp_path, capsys):
    # an earlier run's train_config.yaml, edited and given to run anew there: the run
    # replaces its files first, so the user's edits (and comments) were lost
    run = tmp_path / "exp"
    run.mkdir()
    mine = "# lr tried last week\nepochs: 1\n"
    (run / "train_config.yaml").write_text(mine)
    (run / "distill_config.yaml").write_text(mine)
    for cmd in (["train"], ["distill", "--teacher", str(run / "t.pt")]):
        name = "distill_config.yaml" if cmd[0] == "distill" else "train_config.yaml"
        args = [*cmd, "--data", str(sets[3]), "--config", str(run / name), "--out", str(run)]
        assert main([*args, "--exist-ok"]) == 2
        err = " ".join(capsys.readouterr().err.split())
        assert f"this run writes {run / name}, which would overwrite it; copy it out" in err
        assert (run / name).read_text() == mine


def _argv(data: Path, out: Path) -> list[str]:
    return ["train", "--data", str(data), "--imgsz", "64", "--out", str(out)]


def test_final_line_rounds_the_map_like_val(sets, tmp_path, monkeypatch, capsys):
    report = {"best_map": 0.0042904290429042905}
    monkeypatch.setattr(
        TRAIN_PKG, "train", lambda *a, **k: TrainResult(None, report, tmp_path / "best.pt")
    )
    assert main(_argv(sets[3], tmp_path / "r")) == 0
    out = capsys.readouterr().out
    assert "best mAP50-95 0.4%  ->" in out and "0.00429" not in out


@pytest.mark.parametrize(("how", "code"), [("interrupted", 130), ("terminated", 143)])
@pytest.mark.parametrize("checkpointed", [True, False])
def test_ctrl_c_or_sigterm_prints_how_to_resume(
    sets, tmp_path, monkeypatch, capsys, checkpointed, how, code
):
    run = tmp_path / "r"

    def stopped(*args, **kwargs):
        run.mkdir()
        if checkpointed:
            (run / "last.pt").write_bytes(b"")
        if how == "interrupted":
            raise KeyboardInterrupt
        os.kill(os.getpid(), signal.SIGTERM)  # the CLI's handler raises in this thread
        time.sleep(30)
        raise AssertionError("SIGTERM did not stop the command")

    monkeypatch.setattr(TRAIN_PKG, "train", stopped)
    before = signal.getsignal(signal.SIGTERM)
    assert main(_argv(sets[3], run)) == code
    err = capsys.readouterr().err
    if checkpointed:
        assert f"{how}; continue with `yoloslim train --resume {run}`" in err
    else:
        assert f"{how} before last.pt was written; nothing to resume" in err
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is the command's only


def test_a_reparameterised_model_is_refused_before_any_epoch(tmp_path):
    # it used to train a whole epoch, then fail to save, leaving a config behind
    from yoloslim.compress.distill import distill
    from yoloslim.compress.reparam import reparameterize
    from yoloslim.errors import ModelError

    data = synthesize(tmp_path / "d", images=4, imgsz=64, classes=1, seed=0, val_fraction=0.5)
    model = build_model("damo-nano", names=["c0"])
    fused = reparameterize(model, measure=False).model
    cfg = TrainConfig(epochs=1, imgsz=64, batch=2, workers=0)
    with pytest.raises(ModelError, match="cannot train a re-parameterised"):
        train(fused, data, config=cfg, out=tmp_path / "t")
    with pytest.raises(ModelError, match="cannot distill into a re-parameterised"):
        distill(fused, model, data, out=tmp_path / "k")
    assert not (tmp_path / "t").exists() and not (tmp_path / "k").exists()


def test_an_artifact_given_as_the_model_is_refused_before_the_runs_warnings(sets, tmp_path, caplog):
    """audit50 chain F5: close_mosaic's warning came before the refusal of model.onnx."""
    cfg = TrainConfig(epochs=1, imgsz=64, batch=2, workers=0)
    with caplog.at_level("WARNING"), pytest.raises(ModelError, match="is an exported artifact"):
        train(tmp_path / "model.onnx", sets[3], config=cfg, out=tmp_path / "t")
    assert caplog.text == "" and not (tmp_path / "t").exists()


@pytest.mark.parametrize("block", ["RepConv", "ConvBNAct"])
def test_a_model_fused_block_by_block_is_refused_as_a_fused_one(tmp_path, block):
    # audit29 reparam M1: a block's own fuse() left the model's deploy flag off: it was saved
    # and trained into checkpoints that could not be loaded
    from yoloslim.compress.distill import distill
    from yoloslim.compress.prune import PruneConfig, prune
    from yoloslim.errors import ModelError
    from yoloslim.models import blocks
    from yoloslim.models.checkpoint import save_checkpoint

    data = synthesize(tmp_path / "d", images=4, imgsz=64, classes=1, seed=0, val_fraction=0.5)
    model = build_model("damo-nano", names=["c0"])
    assert not blocks.is_fused(model)
    next(m for m in model.modules() if type(m).__name__ == block).fuse()  # one block alone
    assert blocks.is_fused(model) and not model.deploy
    with pytest.raises(ModelError, match="cannot checkpoint a re-parameterised"):
        save_checkpoint(tmp_path / "m.pt", model, imgsz=64)
    cfg = TrainConfig(epochs=1, imgsz=64, batch=2, workers=0)
    with pytest.raises(ModelError, match="cannot train a re-parameterised"):
        train(model, data, config=cfg, out=tmp_path / "t")
    with pytest.raises(ModelError, match="cannot distill into a re-parameterised"):
        distill(model, build_model("damo-nano", names=["c0"]), data, out=tmp_path / "k")
    with pytest.raises(ModelError, match="cannot prune a re-parameterised"):
        prune(model, data, config=PruneConfig(ratio=0.3, finetune_epochs=0), out=tmp_path / "p")
    assert not [p.name for p in tmp_path.iterdir() if p.name != "d"]


def test_a_diverging_loss_is_a_one_line_error_naming_lr0(sets, tmp_path, monkeypatch, capsys):
    trainer = importlib.import_module("yoloslim.train.trainer")

    class Diverging(trainer.DetectionLoss):
        def __call__(self, *args, **kwargs):
            loss, parts = super().__call__(*args, **kwargs)
            return loss * float("nan"), parts

    monkeypatch.setattr(trainer, "DetectionLoss", Diverging)
    args = ["--data", str(sets[3]), "--epochs", "1", "--imgsz", "64", "--batch", "4"]
    torch.manual_seed(11)
    rng = torch.get_rng_state()
    rc = main(["train", "--model", "damo-nano", *args, "--out", str(tmp_path / "r")])
    # the run seeded the global generators for itself; the caller's states are back
    assert torch.equal(torch.get_rng_state(), rng)
    err = capsys.readouterr().err
    assert rc == 2 and "TrainingError" in err and "Traceback" not in err
    assert "loss is nan at epoch 0, batch 0" in err and "lower lr0 (now 0.004)" in err


def test_an_epoch_where_no_object_got_a_positive_anchor_is_warned(
    sets, tmp_path, monkeypatch, caplog
):
    # audit25 train M1: a short run from scratch logged box 0, dfl 0 (no positive anchor all
    # epoch: the boxes learned nothing) without a word
    trainer = importlib.import_module("yoloslim.train.trainer")

    class NoPositives(trainer.DetectionLoss):
        def __call__(self, *args, **kwargs):
            loss, parts = super().__call__(*args, **kwargs)
            return loss, parts * torch.tensor([0.0, 1.0, 0.0])  # as with no positive

    monkeypatch.setattr(trainer, "DetectionLoss", NoPositives)
    cfg = TrainConfig(epochs=1, imgsz=64, batch=4, workers=0, threads=1)
    with caplog.at_level(logging.WARNING, logger="yoloslim"):
        train("damo-nano", sets[3], config=cfg, out=tmp_path / "r")
    said = [r.getMessage() for r in caplog.records if "positive anchor" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("epoch 1: none of its ")
    assert "loss.static_assigner_epochs, now 1" in said[0]  # auto: at least 1 from scratch


def test_a_run_into_the_folder_of_its_own_input_checkpoint_is_refused(sets, tmp_path):
    from yoloslim.compress.distill import distill

    model = save_checkpoint(tmp_path / "best.pt", build_model("damo-nano", names=NAMES3), imgsz=64)
    before = model.read_bytes()
    with pytest.raises(ConfigError, match=r"model=.*best.pt: this run writes .*best.pt"):
        train(model, sets[3], config=TrainConfig(epochs=1), out=tmp_path)
    with pytest.raises(ConfigError, match=r"teacher=.*best.pt: this run writes"):
        distill("damo-nano", model, sets[3], out=tmp_path)
    with pytest.raises(ConfigError, match=r"student=.*best.pt: this run writes"):
        distill(model, model, sets[3], out=tmp_path)
    assert model.read_bytes() == before


def test_a_run_that_began_in_the_folder_meanwhile_is_not_joined(sets, tmp_path, monkeypatch):
    # audit42 corrupt F1: two runs into one new folder, the second started while the first
    # trained: the second's check came before its lock, and it went on once the first had
    # finished, replacing its checkpoints and adding its rows to the first's metrics.jsonl
    import yoloslim.train.trainer as trainer

    begin = trainer._begin
    out = tmp_path / "run"

    def another_run_meanwhile(*args, **kwargs):
        got = begin(*args, **kwargs)
        out.mkdir()
        _fake_run(out, sets[3])  # what the other run left once it had finished
        (out / "metrics.jsonl").write_text('{"epoch": 0}\n')
        return got

    monkeypatch.setattr(trainer, "_begin", another_run_meanwhile)
    with pytest.raises(ConfigError, match=r"holds a training run \(last.pt\)"):
        train("damo-nano", sets[3], config=TrainConfig(epochs=1, imgsz=64, batch=4), out=out)
    assert (out / "metrics.jsonl").read_text() == '{"epoch": 0}\n'


def test_json_that_is_an_input_and_unwritable_outputs_are_one_line_errors(sets, tmp_path, capsys):
    data_yaml = sets[3]
    before = data_yaml.read_bytes()
    assert main(["models", "--imgsz", "64", "--json", str(data_yaml)]) == 2
    assert ".yaml is a kind of file yoloslim runs write or read" in capsys.readouterr().err
    assert data_yaml.read_bytes() == before
    notes = tmp_path / "notes.json"  # a name a report could have, but no JSON in it
    notes.write_text("my notes")
    assert main(["models", "--imgsz", "64", "--json", str(notes)]) == 2
    assert "holds no JSON" in capsys.readouterr().err and notes.read_text() == "my notes"
    # JSON the report must not replace either: a dataset's COCO annotations, a JSON-lines
    # cache, another command's run file; a report of the same command's run is replaced
    kept = {
        "instances_val.json": ('{"images": [], "annotations": []}', "holds COCO annotations"),
        "nas_latency_cache.jsonl": ('{"ms": 1.0}', ".jsonl is a kind of file yoloslim runs"),
        "export_report.json": ('{"formats": {}}', "is the export run's own export_report.json"),
        # records a compress run reads back on --resume
        "stage.json": (
            '{"stage": "prune", "model": "m", "rows": []}',
            "is a compress run's record",
        ),
        "inputs.json": ('{"model": "m.pt", "data": "d.yaml"}', "is a compress run's record of"),
    }
    for name, (text, why) in kept.items():
        (tmp_path / name).write_text(text)
        assert main(["models", "--imgsz", "64", "--json", str(tmp_path / name)]) == 2
        assert why in capsys.readouterr().err and (tmp_path / name).read_text() == text
    # a generic name is a report like any other: the same command writes it again, also a
    # report named like a run's record that holds none
    (tmp_path / "own").mkdir()
    for name in ("report.json", "report.json", "inputs.json", "inputs.json"):
        assert main(["models", "--imgsz", "64", "--json", str(tmp_path / "own" / name)]) == 0
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    rc = main(["data", "synth", str(blocker / "sub"), "--images", "2", "--imgsz", "64"])
    err = capsys.readouterr().err
    assert rc == 2 and "a_file" in err and "Traceback" not in err


def test_printed_resume_commands_survive_a_shell():
    import shlex

    from yoloslim.cli.common import resume_command

    cmd = resume_command("train", "runs/my run é")
    assert shlex.split(cmd) == ["yoloslim", "train", "--resume", "runs/my run é"]


def test_a_torchrun_run_is_told_to_resume_under_torchrun(monkeypatch):
    # one spelling of the relaunch for the stop hint, the trainer's hint and info
    from yoloslim.cli.common import resume_command
    from yoloslim.sysinfo import relaunch

    monkeypatch.setenv("WORLD_SIZE", "4")  # two nodes of two processes: two per node
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert (
        resume_command("distill", "r")
        == "torchrun --nnodes 2 --nproc_per_node 2 (and this run's rendezvous options) -m "
        "yoloslim distill --resume r"
    )
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")  # four nodes of one: torchrun still (review F10)
    assert resume_command("train", "r").startswith("torchrun --nnodes 4 --nproc_per_node 1 (")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # one node
    assert (
        resume_command("train", "r") == "torchrun --nproc_per_node 2 -m yoloslim train --resume r"
    )
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert resume_command("train", "r") == "yoloslim train --resume r"
    assert relaunch("yoloslim x", 3) == "torchrun --nproc_per_node 3 -m yoloslim x"
    assert relaunch("yoloslim x", 1) == "yoloslim x"
    assert relaunch("yoloslim x", 4, 2).startswith("torchrun --nnodes 2 --nproc_per_node 2 (")


def test_other_class_names_in_the_data_are_warned_about(sets, tmp_path, caplog):
    # the count matches, so it trains, but a reordered names list is a silent mAP killer
    from yoloslim.data import load_data_config
    from yoloslim.train.run_folder import check_resume_data
    from yoloslim.train.trainer import _prepare_model

    model = build_model("damo-nano", names=["x", "y", "z"])
    names = load_data_config(sets[3]).names
    with caplog.at_level(logging.WARNING, logger="yoloslim"):
        assert _prepare_model(model, names).names == names
        check_resume_data({"names": ["x", "y", "z"]}, sets[3], 3, tmp_path, names)
    assert "trained with class names ['x', 'y', 'z'], the data names them" in caplog.text
    assert "the run in" in caplog.text and "goes on under the data's names" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="yoloslim"):
        _prepare_model(build_model("damo-nano", nc=3), names)  # no names of its own: quiet
        check_resume_data({"names": list(names)}, sets[3], 3, tmp_path, names)
    assert not caplog.records


def test_a_stop_while_last_pt_is_written_keeps_every_metrics_row(sets, tmp_path, monkeypatch):
    """last.pt keeps its epoch's metrics row: a stop just after last.pt (before the row) is
    mended by the resume, a stop just before it re-runs the epoch; in epoch 0 that leaves a
    folder a new run may use, and after the last epoch the resume that finds it finished
    writes the row. (The old code lost the row; the row first left epoch 0's folder
    neither resumable nor free.)"""
    import json

    from yoloslim.train.run_folder import RunFolder

    save = RunFolder.save
    cfg = TrainConfig(epochs=3, imgsz=64, batch=4, workers=0, val_interval=3)
    for epoch, after in ((1, False), (1, True), (0, True), (2, True), (0, False)):

        def stop(self, name, model, epoch=epoch, after=after, **kwargs):
            hit = name == "last.pt" and kwargs["meta"]["epoch"] == epoch
            if hit and not after:
                raise KeyboardInterrupt
            save(self, name, model, **kwargs)
            if hit:
                raise KeyboardInterrupt

        out = tmp_path / f"{epoch}-{after}"
        monkeypatch.setattr(RunFolder, "save", stop)
        with pytest.raises(KeyboardInterrupt):
            train("damo-nano", sets[2], config=cfg, out=out)
        monkeypatch.setattr(RunFolder, "save", save)
        if (out / "last.pt").exists():
            train(None, None, out=out, resume=True)
        else:  # nothing to resume, and nothing in the way of a new run
            train("damo-nano", sets[2], config=cfg, out=out)
        rows = (out / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(r)["epoch"] for r in rows] == [0, 1, 2], (epoch, after)


def test_a_resumed_run_is_one_step_of_the_history_moved_or_given_other_data(
    sets, tmp_path, monkeypatch
):
    """A run resumed after its folder moved listed two trainings; one resumed with another
    --data named only the new data.yaml, though its first epochs trained on the old one."""
    import shutil

    from yoloslim.cli.info_cmd import _step
    from yoloslim.models.checkpoint import read_checkpoint
    from yoloslim.train.run_folder import RunFolder

    save = RunFolder.save

    def stop_after_epoch_0(self, name, model, **kwargs):
        save(self, name, model, **kwargs)
        if name == "last.pt":
            raise KeyboardInterrupt

    cfg = TrainConfig(epochs=2, imgsz=64, batch=4, workers=0, val_interval=2)
    monkeypatch.setattr(RunFolder, "save", stop_after_epoch_0)
    with pytest.raises(KeyboardInterrupt):
        train("damo-nano", sets[2], config=cfg, out=tmp_path / "a")
    monkeypatch.setattr(RunFolder, "save", save)
    # the stopped run's checkpoint says how far it got (audit27 info M1: "epochs 2" for 1)
    stopped = read_checkpoint(tmp_path / "a" / "last.pt")["meta"]["history"][-1]
    assert stopped["epochs_trained"] == 1 and _step(stopped) == "train (epochs 1 of 2)"
    shutil.move(tmp_path / "a", tmp_path / "b")
    other = shutil.copytree(sets[2].parent, tmp_path / "other") / "data.yaml"
    train(None, other, out=tmp_path / "b", resume=True)
    history = read_checkpoint(tmp_path / "b" / "last.pt")["meta"]["history"]
    assert [(h["stage"], h["out"]) for h in history] == [("train", str(tmp_path / "b"))]
    assert history[0]["data"] == str(other.resolve())
    before = [{"data": str(sets[2].resolve()), "until_epoch": 1}]
    assert history[0]["data_before"] == before
    assert _step(history[0]) == f"train (epochs 2, epochs to 1 on {sets[2].resolve()})"
    assert history[0]["epochs_trained"] == 2


def test_a_folder_holding_only_a_best_pt_is_a_run_a_new_one_would_report_as_its_own(tmp_path):
    # a new run that writes no best.pt (its val split has no box) reported the old one
    from yoloslim.train.run_folder import check_out

    (tmp_path / "best.pt").write_bytes(b"an earlier run's")
    with pytest.raises(ConfigError, match=r"holds a training run that cannot be resumed \(best"):
        check_out(tmp_path, resume=False, exist_ok=False)
    check_out(tmp_path, resume=False, exist_ok=True)  # replacing it is asked for


def test_the_process_group_waits_longer_than_a_long_validation(monkeypatch):
    # rank 0 validates while the others wait at a barrier: the default 30-minute gloo
    # timeout would end a run whose validation takes longer
    from yoloslim.train import distributed

    seen = {}
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda **kw: seen.update(kw))
    monkeypatch.setattr(distributed.dist, "get_rank", lambda: 1)
    monkeypatch.setattr(distributed.dist, "get_world_size", lambda: 2)
    assert distributed.init_distributed(torch.device("cpu")) == (1, 2)
    assert seen["backend"] == "gloo"
    assert seen["timeout"].total_seconds() >= 3 * 3600


def test_a_fresh_run_keeps_a_settings_file_of_the_users_in_its_folder(sets, tmp_path):
    # the user's own train_config.yaml was replaced and distill_config.yaml deleted
    out = tmp_path / "run"
    out.mkdir()
    mine = "epochs: 3  # my notes\n"
    (out / "distill_config.yaml").write_text(mine)
    cfg = TrainConfig(epochs=1, batch=4, workers=0, imgsz=64, threads=1)
    with pytest.raises(ConfigError, match=r"distill_config.yaml is not a settings file a yoloslim"):
        train("damo-nano", sets[3], config=cfg, out=out)
    assert (out / "distill_config.yaml").read_text() == mine
    assert sorted(p.name for p in out.iterdir()) == ["distill_config.yaml"]
    # a run's own (stopped before its first last.pt) goes, as before; --exist-ok replaces
    (out / "distill_config.yaml").unlink()
    train("damo-nano", sets[3], config=cfg, out=out)
    written = (out / "train_config.yaml").read_text()
    assert written.startswith("# yoloslim: the settings of the run in this folder")
    for name in ("last.pt", "best.pt", "metrics.jsonl"):
        (out / name).unlink(missing_ok=True)
    train("damo-nano", sets[3], config=cfg, out=out)  # its own leftover: replaced
    (out / "train_config.yaml").write_text(mine)
    for name in ("last.pt", "best.pt", "metrics.jsonl"):
        (out / name).unlink(missing_ok=True)
    with pytest.raises(ConfigError, match=r"train_config.yaml is not a settings file"):
        train("damo-nano", sets[3], config=cfg, out=out)
    train("damo-nano", sets[3], config=cfg, out=out, exist_ok=True)
    assert (out / "train_config.yaml").read_text().startswith("# yoloslim")


def test_trimming_metrics_that_need_no_trim_leaves_the_file_alone(tmp_path):
    # a finished run's resume rewrote metrics.jsonl (same rows, a new mtime): "changes nothing"
    from yoloslim.train.run_folder import RunFolder

    rows = [{"epoch": 0, "map": 0.1}, {"epoch": 1, "map": 0.2}]
    f = tmp_path / "metrics.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    os.utime(f, ns=(1_000_000_000, 1_000_000_000))
    folder = RunFolder(tmp_path, TrainConfig(), False)
    folder.trim_metrics(2, rows[1])
    assert f.stat().st_mtime_ns == 1_000_000_000
    folder.trim_metrics(1)  # epoch 1 runs again: its row goes
    assert [json.loads(x) for x in f.read_text().splitlines()] == rows[:1]


def test_save_checkpoint_never_replaces_a_file_that_is_no_checkpoint(tmp_path):
    data = tmp_path / "data.yaml"  # the arguments' paths mistyped or swapped
    data.write_text("names: [a]\n")
    model = build_model("damo-nano", nc=1)
    with pytest.raises(ConfigError, match=r"data.yaml exists and is no torch checkpoint"):
        save_checkpoint(data, model, imgsz=64)
    assert data.read_text() == "names: [a]\n"
    ckpt = save_checkpoint(tmp_path / "m.pt", model, imgsz=64)
    assert save_checkpoint(ckpt, model, imgsz=64) == ckpt  # a checkpoint is replaced
    # zip archives that are no checkpoint: an exported TorchScript model, a numpy .npz
    # (audit44 models F4: both were replaced, as they start like one)
    torch.jit.trace(torch.nn.Conv2d(3, 3, 1), torch.zeros(1, 3, 8, 8)).save(tmp_path / "m.ts")
    np.savez(tmp_path / "a.npz", x=np.zeros(3))
    for other in (tmp_path / "m.ts", tmp_path / "a.npz"):
        before = other.read_bytes()
        with pytest.raises(ConfigError, match="exists and is no torch checkpoint"):
            save_checkpoint(other, model, imgsz=64)
        assert other.read_bytes() == before
    torch.save({"w": torch.zeros(2)}, tmp_path / "sd.pt")  # torch.save's: replaced
    save_checkpoint(tmp_path / "sd.pt", model, imgsz=64)
    torch.save({"w": torch.zeros(2)}, tmp_path / "code.pt")  # its zip's root is code/: too
    save_checkpoint(tmp_path / "code.pt", model, imgsz=64)  # (review F4)


def test_a_replaced_run_names_the_files_it_keeps_beside_the_new_one(tmp_path, caplog):
    """--exist-ok deleted the run's own files and kept, unsaid, an export and predict's
    drawings made from the replaced run's weights (audit47 conc F9)."""
    from yoloslim.train import TrainConfig
    from yoloslim.train.run_folder import RunFolder

    for name in ("best.pt", "last.pt", "metrics.jsonl", "model.onnx", "export_report.json"):
        (tmp_path / name).write_text("x")
    (tmp_path / ".hidden").write_text("x")
    with caplog.at_level(logging.WARNING, "yoloslim"):
        RunFolder(tmp_path, TrainConfig(), False).start(None, replace=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".hidden",
        "export_report.json",
        "model.onnx",
    ]
    said = " ".join(caplog.text.split())
    assert f"{tmp_path}: the run there is replaced; kept export_report.json, model.onnx," in said
    caplog.clear()
    with caplog.at_level(logging.WARNING, "yoloslim"):  # no run replaced: nothing to say
        RunFolder(tmp_path, TrainConfig(), False).start(None, replace=True)
    assert "replaced" not in caplog.text
