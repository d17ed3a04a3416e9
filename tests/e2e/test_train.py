"""End-to-end training: overfitting, exact resume, torchrun with gloo."""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from yoloslim.data.synth import synthesize
from yoloslim.errors import ConfigError
from yoloslim.eval.val import validate
from yoloslim.models.checkpoint import read_checkpoint
from yoloslim.train import TrainConfig, train

NO_AUG = {"mosaic": 0.0, "hflip": 0.0, "hsv": (0.0, 0.0, 0.0), "scale": 0.0, "translate": 0.0}


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory) -> Path:
    """16 synthetic images at 128 px (12 train, 4 val)."""
    root = tmp_path_factory.mktemp("synth")
    return synthesize(root, images=16, imgsz=128, classes=2, seed=3, val_fraction=0.25)


def test_overfits_tiny_set(tiny_set, tmp_path):
    # val = train: a pure fitting test. The 12 train images are listed 10 times so that an
    # epoch is 10 full-batch steps without augmentation.
    cfg = yaml.safe_load(tiny_set.read_text())
    cfg["path"] = str(tiny_set.parent)
    cfg["val"] = cfg["train"]
    cfg["train"] = [cfg["train"]] * 10
    over = tmp_path / "overfit.yaml"
    over.write_text(yaml.safe_dump(cfg))
    tc = TrainConfig(
        epochs=15,
        batch=12,
        imgsz=128,
        lr0=0.01,
        warmup_epochs=0.5,
        workers=0,
        augment=NO_AUG,
        close_mosaic=0,
        val_interval=15,
        ema_decay=0.0,
        # the loop's fitting, task-aligned throughout: 3 ATSS epochs (auto) slow this
        # 150-step fit (mAP50-95 at epoch 15: 0.86 without, 0.79 with, one run each)
        loss={"static_assigner_epochs": 0},
    )
    res = train("damo-nano", over, config=tc, out=tmp_path / "run")
    metrics = validate(res.best, over)
    assert metrics["map50"] >= 0.8, metrics
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(15))
    assert rows[-1]["box"] < rows[0]["box"]


def test_auto_static_assigner_is_resolved_and_recorded(tiny_set, tmp_path):
    cfg = TrainConfig(epochs=4, batch=4, imgsz=64, workers=0, val_interval=4, close_mosaic=0)
    assert cfg.loss.static_assigner_epochs is None
    res = train("damo-nano", tiny_set, config=cfg, out=tmp_path / "scratch")
    # from random weights: ATSS for min(4, 4 // 4) = 1 epoch; a given model: none
    train(res.model, tiny_set, config=cfg, out=tmp_path / "tuned")
    for run, want in (("scratch", 1), ("tuned", 0)):
        saved = yaml.safe_load((tmp_path / run / "train_config.yaml").read_text())
        assert saved["loss"]["static_assigner_epochs"] == want, run
        state = read_checkpoint(tmp_path / run / "last.pt")["train_state"]["config"]
        assert state["loss"]["static_assigner_epochs"] == want, run


def _weights(path: Path) -> dict:
    return read_checkpoint(path)["train_state"]["raw_state_dict"]


def test_resume_reproduces_uninterrupted_run(tiny_set, tmp_path):
    # ATSS for epoch 0, task-aligned after: the resumed run must switch like the full one
    cfg = TrainConfig(
        epochs=2,
        batch=4,
        imgsz=64,
        workers=0,
        seed=5,
        close_mosaic=1,
        loss={"static_assigner_epochs": 1},
    )
    train("damo-nano", tiny_set, config=cfg, out=tmp_path / "full")

    def interrupt(epoch, row):
        if epoch == 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train("damo-nano", tiny_set, config=cfg, out=tmp_path / "stop", on_epoch_end=interrupt)
    assert read_checkpoint(tmp_path / "stop" / "last.pt")["train_state"]["epoch"] == 0
    before = (tmp_path / "stop" / "last.pt").read_bytes()
    other = TrainConfig(epochs=3, batch=4, imgsz=64, workers=0, seed=5, close_mosaic=1)
    with pytest.raises(ConfigError, match=r"stop is a run of another training config \(epochs: 2"):
        train(None, tiny_set, config=other, out=tmp_path / "stop", resume=True)
    assert (tmp_path / "stop" / "last.pt").read_bytes() == before
    # the same config, passed again, resumes
    train(None, tiny_set, config=cfg, out=tmp_path / "stop", resume=True)
    a, b = _weights(tmp_path / "full" / "last.pt"), _weights(tmp_path / "stop" / "last.pt")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    rows = [json.loads(x) for x in (tmp_path / "stop" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1]


def test_a_validation_cut_short_keeps_the_epoch_and_the_resume_validates_it(
    tiny_set, tmp_path, monkeypatch, capsys
):
    import importlib

    from yoloslim.errors import DataError

    trainer = importlib.import_module("yoloslim.train.trainer")

    cfg = TrainConfig(epochs=2, batch=4, imgsz=64, workers=0, seed=5, close_mosaic=0)
    train("damo-nano", tiny_set, config=cfg, out=tmp_path / "full")
    real = trainer.evaluate
    calls = []

    def broken_image_at_the_end(*args, **kwargs):  # an image that will not decode, say
        calls.append(1)
        if len(calls) == 2:
            raise DataError("val/x.png: cannot load image")
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer, "evaluate", broken_image_at_the_end)
    run = tmp_path / "run"
    with pytest.raises(
        DataError, match=r"x.png: cannot load image \(validating epoch 2, whose"
    ) as e:
        train("damo-nano", tiny_set, config=cfg, out=run)
    assert f"`yoloslim train --resume {run}`" in str(e.value)
    ckpt = read_checkpoint(run / "last.pt")  # the trained epoch is kept, validation pending
    assert ckpt["train_state"]["epoch"] == 1 and ckpt["train_state"]["val_pending"]
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0]
    ended = []
    capsys.readouterr()
    res = train(  # validates epoch 1, trains nothing
        None,
        tiny_set,
        out=run,
        resume=True,
        on_epoch_end=lambda e, row: ended.append(e),
        progress=True,
    )
    assert len(calls) == 3 and ended == [1]
    # its mAP is said as after any epoch (audit50 resume F2: it was not)
    assert "epoch 2/2: mAP50-95" in capsys.readouterr().err
    assert "val_pending" not in read_checkpoint(run / "last.pt")["train_state"]
    full = [json.loads(x) for x in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1]
    assert rows[1]["map"] == full[1]["map"] and res.report["best_map"] == max(
        r["map"] for r in full
    )
    assert train(None, tiny_set, out=run, resume=True).report["best_map"] == res.report["best_map"]
    assert len(calls) == 3  # now finished: nothing more


@pytest.mark.filterwarnings("ignore:CUDA is not available")
def test_resume_restores_the_mixed_precision_loss_scale(tiny_set, tmp_path, monkeypatch):
    # CUDA's GradScaler grows its scale as it trains: a resumed run must go on from the
    # saved scale. Stood in for here by an enabled CPU scaler that doubles every step.
    real = torch.amp.GradScaler
    monkeypatch.setattr(
        torch.amp,
        "GradScaler",
        lambda device, enabled=True: real("cpu", init_scale=2.0**20, growth_interval=1),
    )
    cfg = TrainConfig(epochs=2, batch=4, imgsz=64, workers=0, seed=5, close_mosaic=0)
    train("damo-nano", tiny_set, config=cfg, out=tmp_path / "full")

    def interrupt(epoch, row):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train("damo-nano", tiny_set, config=cfg, out=tmp_path / "stop", on_epoch_end=interrupt)
    train(None, tiny_set, config=cfg, out=tmp_path / "stop", resume=True)
    full, stop = (
        read_checkpoint(tmp_path / r / "last.pt")["train_state"] for r in ("full", "stop")
    )
    assert full["scaler"]["scale"] > 2.0**20  # it grew
    assert stop["scaler"] == full["scaler"]


def _torchrun_train(data, out, *extra, port="29533"):
    """``yoloslim train`` of damo-nano for one epoch at 64 px in two gloo processes."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        port,
        "-m",
        "yoloslim.cli.main",
        "train",
        "--model",
        "damo-nano",
        "--data",
        str(data),
        "--epochs",
        "1",
        "--imgsz",
        "64",
        "--batch",
        "4",
        "--workers",
        "0",
        "--device",
        "cpu",
        "--out",
        str(out),
        *extra,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)


def test_torchrun_two_processes_gloo(tiny_set, tmp_path):
    out = tmp_path / "ddp"
    proc = _torchrun_train(tiny_set, out, "--json", str(tmp_path / "ddp.json"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "last.pt").is_file() and (out / "best.pt").is_file()
    rows = (out / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 1  # rank 0 alone writes logs
    # and --json: rank 1, which never validates, wrote a report without mAP over it
    assert json.loads((tmp_path / "ddp.json").read_text())["best_map"] is not None
    # last.pt records the two processes (a resume warns when its process count differs)
    from yoloslim.models.checkpoint import load_checkpoint

    _, ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["train_state"]["world"] == 2 and ckpt["train_state"]["epoch"] == 0


def test_torchrun_into_a_held_folder_is_one_refusal(tiny_set, tmp_path):
    # the second process learned of the first's refusal as a lost peer and sent the user
    # to resume the folder the other run was writing (audit45 dist F1)
    from yoloslim.fileio import folder_lock

    out = tmp_path / "held"
    with folder_lock(out, "test"):
        proc = _torchrun_train(tiny_set, out, port="29534")
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr[-3000:]
    assert "another yoloslim run is writing into this folder" in errors[0]
    assert "continue with" not in proc.stderr and not (out / "last.pt").exists()


def test_run_folder_after_interrupt_resume_and_replace(tiny_set, tmp_path, monkeypatch, caplog):
    cfg = TrainConfig(epochs=2, batch=4, imgsz=64, workers=0, val_interval=2, close_mosaic=0)
    run = tmp_path / "run"

    def interrupt(epoch, row):
        raise KeyboardInterrupt

    old_umask = os.umask(0o022)
    try:
        monkeypatch.chdir(tiny_set.parent)  # data given relative to the working directory
        with pytest.raises(KeyboardInterrupt):
            train("damo-nano", "data.yaml", config=cfg, out=run, on_epoch_end=interrupt)
        # a SIGTERM in the middle of a checkpoint write leaves its temp file behind
        stale = [run / ".last.pt.4l3e63g7.tmp", run / ".best.pt.q_9xk2ab.tmp"]
        for p in stale:
            p.write_bytes(b"half a checkpoint")
        (run / "notes.tmp").write_text("not ours")
        with (run / "metrics.jsonl").open("a") as f:  # a row the stop cut short
            f.write('{"epoch": 1, "bo')
        # as if torchrun had run it in two processes: the resume says it will not match
        ckpt = torch.load(run / "last.pt", weights_only=True)
        assert ckpt["train_state"]["world"] == 1
        ckpt["train_state"]["world"] = 2
        torch.save(ckpt, run / "last.pt")
        monkeypatch.chdir(tmp_path)
        train(None, tiny_set, out=run, resume=True)
    finally:
        os.umask(old_umask)
    assert "was trained in 2 process(es) and resumes in 1" in caplog.text
    assert "(resume with torchrun --nproc_per_node 2 for that)" in caplog.text
    assert not any(p.exists() for p in stale) and (run / "notes.tmp").exists()
    for name in ("last.pt", "best.pt"):  # mkstemp's 0600, then the umask applied
        assert stat.S_IMODE((run / name).stat().st_mode) == 0o644, name
    assert read_checkpoint(run / "last.pt")["meta"]["data"] == str(tiny_set.resolve())
    rows = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in rows] == [0, 1]
    assert "metrics.jsonl:2: skipped a line that is not JSON" in caplog.text

    # another run into the same folder: refused, unless exist_ok asks to replace it
    one = TrainConfig(epochs=1, batch=4, imgsz=64, workers=0, close_mosaic=0)
    with pytest.raises(ConfigError, match=r"holds a training run \(last\.pt\)"):
        train("damo-nano", tiny_set, config=one, out=run)
    train("damo-nano", tiny_set, config=one, out=run, exist_ok=True)
    rows = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in rows] == [0]  # not appended to the old run's
    assert read_checkpoint(run / "last.pt")["train_state"]["config"]["epochs"] == 1
