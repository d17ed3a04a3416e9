"""Distillation: losses, align convs, teacher isolation, progressive schedule, errors, a run."""

import json

import pytest
import torch
import yaml
from torch import nn

import yoloslim.compress.distill as distill_mod
from yoloslim.compress.distill import AdvancedDistillConfig, DistillConfig, Distiller, distill
from yoloslim.compress.distill_losses import (
    FeatureAdapters,
    attention_transfer,
    channel_wise_divergence,
    logit_kd,
    mimic,
)
from yoloslim.data import load_data_config
from yoloslim.data.synth import synthesize
from yoloslim.errors import ConfigError
from yoloslim.models import build_model
from yoloslim.models.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from yoloslim.train import TrainConfig


def _arch(widths, neck, nc=2, strides=(8, 16, 32)):
    stages = [
        {
            "block": "conv",
            "out": widths[0],
            "depth": 0,
            "kernel": 3,
            "stride": strides[0] // 4,
            "ratio": 1.0,
        }
    ]
    stages += [
        {"block": "csp", "out": w, "depth": 1, "kernel": 3, "stride": 2, "ratio": 0.5}
        for w in widths[1:]
    ]
    return {
        "nc": nc,
        "backbone": {"stages": stages, "out_indices": [2, 3, 4]},
        "neck": {"out": list(neck), "depth": 1, "kernel": 3, "ratio": 0.5},
        "head": {"width": [16, 16, 16], "num_convs": 1, "reg_max": 16, "strides": list(strides)},
    }


STUDENT = _arch([8, 8, 16, 16, 32], [16, 16, 32])
TEACHER = _arch([8, 16, 16, 32, 32], [16, 24, 32])  # wider middle scale


def _models(seed=0):
    torch.manual_seed(seed)
    return build_model(STUDENT), build_model(TEACHER)


def _feats(seed, shapes=((2, 16, 8, 8), (2, 24, 4, 4))):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g) for s in shapes]


@pytest.mark.parametrize("fn", [mimic, channel_wise_divergence, attention_transfer])
def test_feature_losses_zero_iff_equal(fn):
    a, b = _feats(0), _feats(1)
    for x, y in zip(a, b, strict=True):
        assert fn(x, x.clone()).item() == pytest.approx(0.0, abs=1e-6)
        assert fn(x, y).item() > 1e-4


@pytest.mark.parametrize("loss", ["cwd", "mimic", "at"])
def test_adapter_losses_zero_for_identical_widths_and_maps(loss):
    t = _feats(0, ((2, 16, 8, 8), (2, 32, 4, 4)))
    ad = FeatureAdapters([16, 32], [16, 32], loss)
    assert ad(t, [x.clone() for x in t]).item() == pytest.approx(0.0, abs=1e-6)
    assert ad(_feats(3, ((2, 16, 8, 8), (2, 32, 4, 4))), t).item() > 1e-3


def test_mgd_is_generative_and_trains_its_generator():
    s, t = _feats(0, ((2, 16, 8, 8),)), _feats(1, ((2, 24, 8, 8),))
    ad = FeatureAdapters([16], [24], "mgd")
    assert len(ad.generators) == 1 and isinstance(ad.align[0], nn.Conv2d)
    torch.manual_seed(0)
    value = ad(s, t)
    value.backward()
    assert value.item() > 0
    assert all(p.grad is not None for p in ad.generators.parameters())


def test_logit_kd_zero_iff_equal():
    torch.manual_seed(0)
    nc, reg_max = 3, 16
    t = [torch.randn(2, 4 * (reg_max + 1) + nc, h, h) for h in (8, 4, 2)]
    t[0][:, -nc:] += 3.0  # some confident (foreground) anchors
    cls, dfl = logit_kd([x.clone() for x in t], t, reg_max, temperature=2.0)
    assert cls.item() == pytest.approx(0.0, abs=1e-6)
    assert dfl.item() == pytest.approx(0.0, abs=1e-6)
    s = [x + 0.5 * torch.randn_like(x) for x in t]
    cls, dfl = logit_kd(s, t, reg_max, temperature=2.0)
    assert cls.item() > 1e-5 and dfl.item() > 1e-3
    # no teacher foreground: the box term vanishes, the class term does not
    cls, dfl = logit_kd(s, t, reg_max, fg_threshold=0.9999)
    assert dfl.item() == 0.0 and cls.item() > 0


def test_logit_kd_is_per_image_whatever_the_batch_and_the_teachers_confidence():
    # a batch-wide foreground weight clamped at 1 made an unsure teacher's terms a batch
    # sum: linear in the batch size (then times it again by the Distiller)
    torch.manual_seed(0)
    nc, reg_max = 3, 16
    t = [torch.randn(1, 4 * (reg_max + 1) + nc, h, h) for h in (8, 4, 2)]
    s = [x + 0.5 * torch.randn_like(x) for x in t]
    for lift in (-6.0, 3.0):  # an unsure teacher (no anchor over the threshold), a sure one
        tb = [x.clone() for x in t]
        tb[0][:, -nc:] += lift
        one = logit_kd(s, tb, reg_max)
        for b in (2, 8):
            many = logit_kd(
                [x.repeat(b, 1, 1, 1) for x in s], [x.repeat(b, 1, 1, 1) for x in tb], reg_max
            )
            torch.testing.assert_close(torch.stack(many), torch.stack(one))
    # two different images: the mean of their own per-image terms
    t2 = [torch.cat([x, x.flip(0) + 2.0]) for x in t]
    s2 = [torch.cat([x, x + 0.3]) for x in s]
    both = torch.stack(logit_kd(s2, t2, reg_max))
    alone = [
        torch.stack(logit_kd([x[i : i + 1] for x in s2], [x[i : i + 1] for x in t2], reg_max))
        for i in (0, 1)
    ]
    torch.testing.assert_close(both, (alone[0] + alone[1]) / 2)


def test_a_teacher_in_memory_is_named_by_what_was_done_to_it(tmp_path):
    """audit50 chain F2: a Detector loaded from a checkpoint was recorded as "a Detector"."""
    model = build_model("damo-nano", nc=2)
    assert Distiller(model, DistillConfig()).history["teacher"] == "a Detector"
    model.history = [{"stage": "train"}, {"stage": "prune", "method": "width"}]
    hook = Distiller(model, DistillConfig())
    assert hook.history == {"stage": "distill", "teacher": "a Detector (train, then prune)"}
    assert Distiller(model, DistillConfig(), "t.pt").history["teacher"] == "t.pt"


def test_align_convs_only_where_widths_differ():
    student, teacher = _models()
    hook = Distiller(teacher, DistillConfig(loss="cwd"))
    ad = hook.attach(student, torch.device("cpu"))
    kinds = [type(m) for m in ad.align]
    assert kinds == [nn.Identity, nn.Conv2d, nn.Identity]
    assert ad.align[1].in_channels == 16 and ad.align[1].out_channels == 24
    at = FeatureAdapters([16, 16, 32], [16, 24, 32], "at")
    assert all(isinstance(m, nn.Identity) for m in at.align)
    hook.detach()


def _step(student, hook, seed=0, epoch=0.5):
    student.train()
    torch.manual_seed(seed)
    imgs = torch.rand(2, 3, 64, 64)
    raw = student(imgs)
    return hook.loss(imgs, raw, torch.zeros(0, 6), epoch)


def test_gradients_reach_student_and_align_not_teacher():
    student, teacher = _models()
    hook = Distiller(teacher, DistillConfig(loss="mimic"))
    ad = hook.attach(student, torch.device("cpu"))
    total, parts = _step(student, hook)
    assert set(parts) == {"kd_cls", "kd_dfl", "kd_feat"} and parts["kd_feat"] > 0
    total.backward()
    assert all(p.grad is None for p in hook.teacher.parameters())
    assert all(not p.requires_grad for p in hook.teacher.parameters())
    assert not hook.teacher.training
    assert ad.align[1].weight.grad is not None
    assert student.neck.fuse_p3.parameters().__next__().grad is not None
    # the caller's teacher is not touched; the hook's copy runs in deploy form
    assert all(p.requires_grad for p in teacher.parameters()) and teacher.training
    assert hook.teacher.deploy and not teacher.deploy


@pytest.mark.parametrize("rank", ["0", "1"])
def test_an_epoch_without_teacher_foreground_is_warned_about_once(rank, caplog, monkeypatch):
    # a random teacher scores no anchor over fg_threshold: kd_dfl was 0 for a whole run,
    # unsaid; under torchrun, said by the first process alone (audit45 dist F5)
    monkeypatch.setenv("RANK", rank)
    student, teacher = _models()
    for threshold, warned in ((0.25, rank == "0"), (1e-6, False)):
        cfg = DistillConfig.from_dict({"advanced": {"fg_threshold": threshold}})
        hook = Distiller(teacher, cfg)
        hook.attach(student, torch.device("cpu"))
        caplog.clear()
        with caplog.at_level("WARNING", logger="yoloslim.compress.distill"):
            for epoch in (0, 1, 2):
                hook.epoch_start(student, epoch)
                dfl = [_step(student, hook, seed=k)[1]["kd_dfl"] for k in range(2)]
                assert (max(dfl) == 0.0) is (threshold == 0.25)
            hook.detach()
        said = [r for r in caplog.records if "the teacher scored no anchor" in r.getMessage()]
        assert len(said) == (1 if warned else 0)
        if warned:
            assert "in 2 batches" in said[0].getMessage()


def test_student_equal_to_teacher_gives_zero_loss():
    torch.manual_seed(0)
    student = build_model(STUDENT)
    teacher = build_model(STUDENT)
    teacher.load_state_dict(student.state_dict())
    # same BN statistics in both: the teacher runs in eval mode, so do the student's BNs
    for loss in ("cwd", "mimic", "at"):
        hook = Distiller(teacher, DistillConfig(loss=loss))
        ad = hook.attach(student, torch.device("cpu"))
        assert all(isinstance(m, nn.Identity) for m in ad.align)
        student.train()
        for m in student.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
        imgs = torch.rand(2, 3, 64, 64)
        total, parts = hook.loss(imgs, student(imgs), torch.zeros(0, 6), 3.0)
        assert total.item() == pytest.approx(0.0, abs=1e-5), (loss, parts)
        hook.detach()


def test_progressive_freezing_and_warmup():
    student, teacher = _models()
    cfg = DistillConfig(progressive=True, freeze_epochs=2, warmup_epochs=2.0)
    hook = Distiller(teacher, cfg)
    hook.attach(student, torch.device("cpu"))
    for epoch, frozen in [(0, True), (1, True), (2, False), (3, False)]:
        student.train()
        hook.epoch_start(student, epoch)
        assert all(p.requires_grad != frozen for p in student.backbone.parameters())
        assert all(p.requires_grad for p in student.neck.parameters())
        assert all(p.requires_grad for p in student.head.parameters())
        assert student.backbone.training != frozen and student.neck.training
    assert hook.weight_scale(0.0) == pytest.approx(0.0, abs=1e-6)
    assert hook.weight_scale(1.0) == pytest.approx(0.5)
    assert hook.weight_scale(5.0) == 1.0
    plain = Distiller(teacher, DistillConfig(progressive=False))
    assert not plain.frozen(0) and plain.weight_scale(0.0) == 1.0


def test_frozen_backbone_gets_no_gradient():
    student, teacher = _models()
    hook = Distiller(teacher, DistillConfig(progressive=True, freeze_epochs=1))
    hook.attach(student, torch.device("cpu"))
    student.train()
    hook.epoch_start(student, 0)
    total, _ = hook.loss(
        *(lambda x: (x, student(x)))(torch.rand(2, 3, 64, 64)), torch.zeros(0, 6), 0.5
    )
    total.backward()
    assert all(p.grad is None for p in student.backbone.parameters())
    assert any(p.grad is not None for p in student.neck.parameters())


def test_bad_pairs_raise(tmp_path):
    student = build_model(STUDENT)
    other_nc = build_model(_arch([8, 16, 16, 32, 32], [16, 24, 32], nc=3))
    with pytest.raises(ConfigError, match="3 classes but the student has 2"):
        Distiller(other_nc, DistillConfig()).attach(student, torch.device("cpu"))
    other_scales = build_model(_arch([8, 16, 16, 32, 32], [16, 24, 32], strides=(4, 8, 16)))
    with pytest.raises(ConfigError, match="scales"):
        Distiller(other_scales, DistillConfig()).attach(student, torch.device("cpu"))
    data = synthesize(tmp_path / "d", images=4, imgsz=64, classes=2, seed=1)
    with pytest.raises(ConfigError, match="teacher has 3 classes"):
        distill(student, other_nc, data, out=tmp_path / "run")
    # given as files, both are named
    save_checkpoint(tmp_path / "t3.pt", other_nc, imgsz=64)
    save_checkpoint(tmp_path / "s2.pt", student, imgsz=64)
    with pytest.raises(ConfigError, match=r"teacher \S*t3\.pt has 3 classes but .*d/data\.yaml"):
        distill(tmp_path / "s2.pt", tmp_path / "t3.pt", data, out=tmp_path / "run")
    save_checkpoint(tmp_path / "t_scales.pt", other_scales, imgsz=64)
    with pytest.raises(
        ConfigError, match=r"teacher \S*t_scales\.pt's scales .* student \S*s2\.pt's"
    ):
        distill(tmp_path / "s2.pt", tmp_path / "t_scales.pt", data, out=tmp_path / "run")
    with pytest.raises(ConfigError, match="scales"):
        distill(student, other_scales, data, out=tmp_path / "run")
    names = load_data_config(data).names
    permuted = build_model(_arch([8, 16, 16, 32, 32], [16, 24, 32]), names=names[::-1])
    with pytest.raises(ConfigError, match="orders them"):
        distill(student, permuted, data, out=tmp_path / "run")
    save_checkpoint(tmp_path / "t_order.pt", permuted, imgsz=64)  # named (audit45 distill L2)
    with pytest.raises(ConfigError, match=r"teacher \S*t_order\.pt's classes are .* orders them"):
        distill(tmp_path / "s2.pt", tmp_path / "t_order.pt", data, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_config_validation():
    with pytest.raises(ConfigError, match="loss='kl'"):
        DistillConfig(loss="kl")
    with pytest.raises(ConfigError, match="temperature"):
        DistillConfig(temperature=0)
    # inf passed, then "diverged" at the first batch, pointing at lr0 and the labels
    for field in ("logit_weight", "feature_weight", "temperature"):
        with pytest.raises(ConfigError, match=f"{field}=inf must be finite"):
            DistillConfig(**{field: float("inf")})
    with pytest.raises(ConfigError, match="feature_temperature=inf must be finite"):
        AdvancedDistillConfig(feature_temperature=float("inf"))
    with pytest.raises(ConfigError, match=r"\['tempreature'\]"):
        DistillConfig.from_dict({"tempreature": 2})
    with pytest.raises(ConfigError, match=r"\['epoch'\]"):
        DistillConfig.from_dict({"train": {"epoch": 3}})
    with pytest.raises(ConfigError, match=r"\['tau'\]"):
        DistillConfig.from_dict({"advanced": {"tau": 3}})
    cfg = DistillConfig.from_dict(
        {"loss": "at", "train": {"epochs": 3, "imgsz": 64}, "advanced": {"fg_threshold": 0.5}}
    )
    assert cfg.train == TrainConfig(epochs=3, imgsz=64)
    assert cfg.advanced == AdvancedDistillConfig(fg_threshold=0.5)
    assert DistillConfig.from_dict(cfg.to_dict()) == cfg


def _distill_stopped_after_epoch_0(monkeypatch, teacher, data, cfg, out) -> None:
    """A distill run of STUDENT interrupted (Ctrl-C) once its first epoch is saved."""

    def interrupt(epoch, row):
        raise KeyboardInterrupt

    real_train = distill_mod.train
    monkeypatch.setattr(
        distill_mod, "train", lambda *a, **k: real_train(*a, **k, on_epoch_end=interrupt)
    )
    with pytest.raises(KeyboardInterrupt):
        distill(STUDENT, teacher, data, config=cfg, out=out)
    monkeypatch.setattr(distill_mod, "train", real_train)


def test_distill_run_checkpoints_and_exact_resume(tmp_path, monkeypatch):
    data = synthesize(tmp_path / "d", images=8, imgsz=64, classes=2, seed=3, val_fraction=0.25)
    torch.manual_seed(0)
    teacher = build_model(TEACHER, names=["a", "b"])
    save_checkpoint(tmp_path / "teacher.pt", teacher, imgsz=64)
    train_cfg = TrainConfig(
        epochs=2, batch=3, imgsz=64, workers=0, seed=1, close_mosaic=1, val_interval=2
    )
    cfg = DistillConfig(loss="cwd", progressive=True, freeze_epochs=1, train=train_cfg)
    res = distill(STUDENT, tmp_path / "teacher.pt", data, config=cfg, out=tmp_path / "full")
    assert res.report["distill"]["align_convs"] == [False, True, False]
    assert res.report["train"]["epochs"] == 2
    best = load_checkpoint(res.artifacts["best"])[0]
    assert not any("align" in k for k in best.state_dict())
    rows = [json.loads(x) for x in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1] and all("kd_feat" in r for r in rows)
    assert (tmp_path / "full" / "distill_config.yaml").is_file()

    _distill_stopped_after_epoch_0(monkeypatch, teacher, data, cfg, tmp_path / "stop")
    assert read_checkpoint(tmp_path / "stop" / "last.pt")["train_state"]["epoch"] == 0
    other = DistillConfig(loss="mimic", progressive=True, freeze_epochs=1, train=train_cfg)
    with pytest.raises(ConfigError, match=r"stop is a distill run of other settings \(loss: 'cwd'"):
        distill(None, teacher, data, config=other, out=tmp_path / "stop", resume=True)
    with pytest.raises(ConfigError, match="does not record its teacher"):
        distill(None, None, data, out=tmp_path / "stop", resume=True)  # given as a Detector
    distill(None, teacher, data, out=tmp_path / "stop", resume=True)
    a = read_checkpoint(tmp_path / "full" / "last.pt")["train_state"]
    b = read_checkpoint(tmp_path / "stop" / "last.pt")["train_state"]
    for k in a["raw_state_dict"]:
        torch.testing.assert_close(a["raw_state_dict"][k], b["raw_state_dict"][k], rtol=0, atol=0)
    for k in a["hook"]["adapters"]:
        torch.testing.assert_close(
            a["hook"]["adapters"][k], b["hook"]["adapters"][k], rtol=0, atol=0
        )


def test_cli_resumes_a_student_that_started_from_random_weights(tmp_path, monkeypatch, capsys):
    # an auto static_assigner_epochs (None in the distill config) is resolved to 1 by the
    # trainer for 4 epochs from scratch; --resume used to compare that 1 with a 0
    from yoloslim.cli.main import main

    data = synthesize(tmp_path / "d", images=6, imgsz=64, classes=2, seed=2, val_fraction=0.34)
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "t.pt", build_model(TEACHER, names=["a", "b"]), imgsz=64)
    cfg = DistillConfig(train=TrainConfig(epochs=4, batch=4, imgsz=64, workers=0))

    _distill_stopped_after_epoch_0(monkeypatch, tmp_path / "t.pt", data, cfg, tmp_path / "run")
    saved = read_checkpoint(tmp_path / "run" / "last.pt")["train_state"]["config"]
    assert saved["loss"]["static_assigner_epochs"] == 1
    # both settings files say so (distill_config.yaml said null, and a resume rewrote it)
    written = yaml.safe_load((tmp_path / "run" / "distill_config.yaml").read_text())
    assert written["train"] == yaml.safe_load((tmp_path / "run" / "train_config.yaml").read_text())
    assert written["train"]["loss"]["static_assigner_epochs"] == 1
    # the run records its teacher's file: a resume needs no --teacher, unless the file moved
    (tmp_path / "t.pt").rename(tmp_path / "moved.pt")
    assert main(["distill", "--resume", str(tmp_path / "run")]) == 2
    assert f"the run's teacher {tmp_path / 't.pt'} no longer exists" in capsys.readouterr().err
    # another model given as the teacher is refused: the run would change teachers mid-way
    torch.manual_seed(1)
    save_checkpoint(tmp_path / "other.pt", build_model(TEACHER, names=["a", "b"]), imgsz=64)
    argv = ["distill", "--resume", str(tmp_path / "run"), "--teacher", str(tmp_path / "other.pt")]
    assert main(argv) == 2
    assert "other.pt is not the model" in capsys.readouterr().err
    (tmp_path / "moved.pt").rename(tmp_path / "t.pt")
    rc = main(["distill", "--resume", str(tmp_path / "run"), "--json", str(tmp_path / "r.json")])
    assert rc == 0
    # the student as first given, which last.pt keeps (not the resumed run's last.pt)
    student = json.loads((tmp_path / "r.json").read_text())["distill"]["student"]
    assert student == f"arch {STUDENT.get('name', '(unnamed)')}"
    assert read_checkpoint(tmp_path / "run" / "last.pt")["train_state"]["epoch"] == 3
    capsys.readouterr()
    assert main(["distill", "--resume", str(tmp_path / "run")]) == 0  # finished: says so
    assert "already finished 4/4 epochs; nothing to do" in capsys.readouterr().err


def test_align_convs_follow_real_widths_of_resized_models():
    student, teacher = _models()
    student.neck.out_channels = [99, 99, 99]  # a pruned model's spec no longer tells the truth
    ad = Distiller(teacher, DistillConfig()).attach(student, torch.device("cpu"))
    assert [type(m) for m in ad.align] == [nn.Identity, nn.Conv2d, nn.Identity]


def test_cli_distill(tmp_path):
    from yoloslim.cli.main import main

    data = synthesize(tmp_path / "d", images=6, imgsz=64, classes=2, seed=2, val_fraction=0.34)
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "t.pt", build_model(TEACHER, names=["a", "b"]), imgsz=64)
    save_checkpoint(tmp_path / "t3.pt", build_model(_arch([8] * 5, [8] * 3, nc=3)), imgsz=64)
    arch = tmp_path / "student.yaml"
    arch.write_text(yaml.safe_dump(STUDENT))
    common = ["--data", str(data), "--student", str(arch), "--epochs", "1", "--imgsz", "64"]
    common += ["--batch", "4", "--workers", "0"]
    assert main(["distill", "--teacher", str(tmp_path / "t3.pt"), *common]) == 2
    assert main(["distill", "--teacher", str(tmp_path / "t.pt"), "--loss", "kl", *common]) == 2
    # the progressive schedule's settings without it were ignored without a word
    off = ["distill", "--teacher", str(tmp_path / "t.pt"), *common, "--out", str(tmp_path / "o")]
    assert main([*off, "--freeze-epochs", "2"]) == 2 and not (tmp_path / "o").exists()
    out = tmp_path / "run"
    rc = main(
        ["distill", "--teacher", str(tmp_path / "t.pt"), *common, "--loss", "at"]
        + ["--progressive", "--freeze-epochs", "1", "--threads", "1"]
        + ["--out", str(out), "--json", str(tmp_path / "r.json")]
    )
    assert rc == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["distill"]["loss"] == "at" and report["distill"]["progressive"] is True
    assert report["distill"]["student"] == str(arch.resolve())  # not its arch's name alone
    assert yaml.safe_load((out / "distill_config.yaml").read_text())["train"]["threads"] == 1
    assert load_checkpoint(out / "last.pt")[0].nc == 2
    from yoloslim.compress.prune_width import profile  # deploy form, as everywhere else

    student = load_checkpoint(out / "last.pt")[0]
    assert report["distill"]["student_params"] == profile(student, 64)["params"]
    assert report["distill"]["student_params"] < sum(p.numel() for p in student.parameters())


def test_training_keeps_nchw_where_cpu_onednn_crashes_in_nhwc():
    # torch 2.13 CPU: NHWC backward of a 1x1 stride-2 conv with < 16 input channels segfaults
    # on AVX-512 CPUs; these tests' 8-channel archs hit it, damo-* (>= 16 channels) do not
    from yoloslim.train.trainer import _nhwc_safe

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert not _nhwc_safe(build_model(STUDENT, nc=2), cpu)
    assert _nhwc_safe(build_model(STUDENT, nc=2), cuda)
    assert _nhwc_safe(build_model("damo-nano", nc=2), cpu)
    assert _nhwc_safe(nn.Sequential(nn.Conv2d(8, 16, 3, stride=2)), cpu)


def test_distill_and_train_default_to_the_checkpoints_size(tmp_path, monkeypatch):
    import importlib

    import yoloslim.compress.distill as dmod
    from yoloslim.cli.main import main
    from yoloslim.data.synth import synthesize

    save_checkpoint(tmp_path / "s.pt", build_model("damo-nano", names=["c0"]), imgsz=96)
    save_checkpoint(tmp_path / "t.pt", build_model("damo-nano", names=["c0"]), imgsz=128)
    data = synthesize(tmp_path / "d", images=4, imgsz=64, classes=1, seed=0)
    seen = []

    def capture(*args, config, **kwargs):  # distill's call to train
        seen.append(config.imgsz)
        raise KeyboardInterrupt  # stop before any work: the config is what is checked

    def capture_train(cfg, **kwargs):  # the trainer, right after it resolved its config
        seen.append(cfg.imgsz)
        raise KeyboardInterrupt

    monkeypatch.setattr(dmod, "train", capture)
    trainer = importlib.import_module("yoloslim.train.trainer")
    monkeypatch.setattr(trainer, "static_assigner_for", capture_train)
    common = ["--data", str(data), "--out", str(tmp_path / "o")]
    main(
        ["distill", "--teacher", str(tmp_path / "t.pt"), "--student", str(tmp_path / "s.pt")]
        + common
    )
    main(["distill", "--teacher", str(tmp_path / "t.pt"), "--student", "damo-nano"] + common)
    main(["distill", "--teacher", str(tmp_path / "t.pt"), "--imgsz", "64"] + common)
    main(["train", "--model", str(tmp_path / "s.pt")] + common)
    main(["train", "--model", "damo-nano"] + common)
    assert seen == [96, 128, 64, 96, 320]
    # the library itself, as the command line: the student's size, else the teacher's
    with pytest.raises(KeyboardInterrupt):
        dmod.distill("damo-nano", tmp_path / "t.pt", data, out=tmp_path / "lib")
    assert seen[-1] == 128


def test_a_refused_distill_leaves_the_running_ones_settings(tmp_path):
    """distill_config.yaml is written under the run folder's lock, so a second distillation
    into a folder another run writes into is refused before it replaces that run's settings."""
    from yoloslim.fileio import folder_lock
    from yoloslim.train.run_folder import SETTINGS_HEADER

    data = synthesize(tmp_path / "d", images=4, imgsz=64, classes=2, seed=1)
    student, teacher = _models()
    out = tmp_path / "run"
    out.mkdir()
    running = SETTINGS_HEADER + "loss: cwd\n"  # the running distillation's, as it wrote it
    (out / "distill_config.yaml").write_text(running)
    cfg = DistillConfig(loss="mimic", train=TrainConfig(epochs=1, batch=2, imgsz=64, workers=0))
    refused = pytest.raises(ConfigError, match=r"another yoloslim run .* so this distill cannot")
    with folder_lock(out, "train"), refused:
        distill(student, teacher, data, config=cfg, out=out)
    assert (out / "distill_config.yaml").read_text() == running


def test_a_run_replaced_with_exist_ok_loses_its_distill_settings(tmp_path):
    from yoloslim.train.run_folder import RunFolder

    (tmp_path / "distill_config.yaml").write_text("loss: cwd\n")
    (tmp_path / "notes.txt").write_text("mine")
    RunFolder(tmp_path, TrainConfig(), False).start(None, replace=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


_RANK_DIGESTS = """
import hashlib, importlib, json, os, sys
loop = importlib.import_module("yoloslim.train.loop")  # yoloslim.train is also a function
from yoloslim.compress.distill import DistillConfig, distill
from yoloslim.train import TrainConfig

def digest(tensors):
    h = hashlib.sha1()
    for t in tensors:
        h.update(t.detach().contiguous().numpy().tobytes())
    return h.hexdigest()

real = loop.Fit.run_epoch
def run_epoch(self, epoch, loader, progress):
    out = real(self, epoch, loader, progress)
    with open(os.path.join(out_dir, "..", f"rank{os.environ['RANK']}.txt"), "a") as f:
        f.write(f"{epoch} {digest(self.net.parameters())} {digest(self.trainable[1].parameters())}\\n")
    return out
loop.Fit.run_epoch = run_epoch
student, teacher, data, out = sys.argv[1:]
out_dir = out
cfg = DistillConfig(train=TrainConfig(epochs=1, batch=4, imgsz=64, workers=0, device="cpu"))
distill(json.load(open(student)), teacher, data, config=cfg, out=out)
"""


def test_under_torchrun_every_process_keeps_the_same_student_and_align_convs(tmp_path):
    # only the student was in DDP: each process trained its own align convs, and clipping
    # over both gave each process its own factor, so the students drifted apart too
    import os
    import subprocess
    import sys

    data = synthesize(tmp_path / "d", images=12, imgsz=64, classes=2, seed=3, val_fraction=0.25)
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "t.pt", build_model(TEACHER, names=["a", "b"]), imgsz=64)
    (tmp_path / "student.json").write_text(json.dumps(STUDENT))
    (tmp_path / "run.py").write_text(_RANK_DIGESTS)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    cmd += ["--standalone", str(tmp_path / "run.py"), str(tmp_path / "student.json")]
    cmd += [str(tmp_path / "t.pt"), str(data), str(tmp_path / "run")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rank0, rank1 = ((tmp_path / f"rank{r}.txt").read_text().split() for r in (0, 1))
    assert len(rank0) == 3 and rank0 == rank1  # epoch, student digest, align convs digest


def test_a_teacher_of_another_size_is_warned_about_and_files_are_named(tmp_path, caplog):
    from yoloslim.errors import ModelError

    data = synthesize(tmp_path / "d", images=6, imgsz=64, classes=2, seed=3, val_fraction=0.5)
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "t.pt", build_model(TEACHER, names=["a", "b"]), imgsz=96)
    cfg = DistillConfig(train=TrainConfig(epochs=1, batch=3, imgsz=64, workers=0))
    with caplog.at_level("WARNING", logger="yoloslim.compress.distill"):
        distill(STUDENT, tmp_path / "t.pt", data, config=cfg, out=tmp_path / "run")
    assert "t.pt was trained at 96 px and is distilled from at 64 px" in caplog.text
    # the Python API resumes on the run's own data.yaml, as train() does
    distill(None, None, None, out=tmp_path / "run", resume=True)
    # an exported teacher, or a run folder, is named as load_checkpoint names it
    (tmp_path / "t.onnx").write_bytes(b"onnx")
    with pytest.raises(ModelError, match="exported"):
        distill(STUDENT, tmp_path / "t.onnx", data, config=cfg, out=tmp_path / "r2")
    with pytest.raises(ModelError, match=r"run/best\.pt"):
        distill(STUDENT, tmp_path / "run", data, config=cfg, out=tmp_path / "r2")


@pytest.mark.parametrize(
    ("values", "match"),
    [
        # the string 'false' is true: the backbone stayed frozen for the whole run
        ({"progressive": "false"}, r"DistillConfig.progressive='false' must be true or false"),
        ({"advanced": {"normalize_features": "no"}}, r"normalize_features='no' must be true"),
        ({"freeze_epochs": 1.5}, r"DistillConfig.freeze_epochs=1.5 must be an integer"),
        ({"logit_weight": "1"}, r"DistillConfig.logit_weight='1' must be a number"),
        ({"temperature": "1e-3"}, r"temperature='1e-3' must be a number \(YAML reads 1e-3"),
        ({"advanced": 3}, r"advanced: expected a mapping, got int"),
        ({"train": {"loss": 3}}, r"loss: expected a mapping, got int"),
    ],
)
def test_distill_settings_of_the_wrong_type_are_named(values, match):
    with pytest.raises(ConfigError, match=match):
        DistillConfig.from_dict(values)


def test_settings_under_which_nothing_is_distilled_are_warned_of(caplog):
    from yoloslim.compress.distill import _warn_idle

    with caplog.at_level("WARNING", logger="yoloslim"):
        _warn_idle(DistillConfig(logit_weight=0, feature_weight=0))
        _warn_idle(DistillConfig(progressive=True, freeze_epochs=3, train=TrainConfig(epochs=3)))
        _warn_idle(DistillConfig(progressive=True, freeze_epochs=1, train=TrainConfig(epochs=3)))
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 2
    assert "teacher teaches nothing" in said[0] and "frozen for the whole run" in said[1]


def test_cli_a_config_whose_train_section_is_no_mapping_names_the_file(tmp_path, capsys):
    from yoloslim.cli.main import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("train: 3\n")
    argv = ["distill", "--teacher", "t.pt", "--data", "d.yaml", "--config", str(bad)]
    assert main([*argv, "--epochs", "2", "--out", str(tmp_path / "o")]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert (
        f"train: must be a mapping (key: value lines), got 3 (settings read from --config {bad})"
        in err
    )
    # a bad flag beside a good file is the flag's: it was blamed on the file (as train's was)
    bad.write_text("loss: cwd\n")
    assert main([*argv, "--epochs", "0", "--out", str(tmp_path / "o")]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "--epochs 0 must be >= 1" in err and str(bad) not in err


def test_the_schedules_settings_without_it_are_refused_for_a_new_run_only(tmp_path):
    # audit30 configs M2: a config file's or the API's were kept, recorded and never used;
    # review2 M1: a run that began with them (before the check) still resumes, so its saved
    # settings load
    from yoloslim.compress.distill import _refuse_unused_settings

    data = synthesize(tmp_path / "d", images=4, imgsz=64, classes=2, seed=1)
    teacher = build_model(TEACHER, names=["a", "b"])
    for name, value in (("freeze_epochs", 2), ("warmup_epochs", 3.0)):
        saved = DistillConfig.from_dict({name: value})  # as last.pt's settings load
        with pytest.raises(ConfigError, match=rf"DistillConfig.{name}={value} is the progressive"):
            _refuse_unused_settings(saved)
        with pytest.raises(ConfigError, match=rf"{name}={value} is the progressive"):
            distill(STUDENT, teacher, data, config=saved, out=tmp_path / "r")
    assert not (tmp_path / "r").exists()
    _refuse_unused_settings(DistillConfig(progressive=True, freeze_epochs=2))  # used: fine
    # audit51 distill F5: a term's settings with the term off, or another loss chosen
    for settings, match in (
        ({"logit_weight": 0, "temperature": 4.0}, r"^DistillConfig.temperature=4.0 is the logit"),
        (
            {"loss": "mimic", "advanced": {"feature_temperature": 2.0}},
            r"^advanced.feature_temperature=2.0 is the cwd loss's, and the feature loss is mimic",
        ),
        (
            {"feature_weight": 0, "advanced": {"feature_temperature": 2.0}},
            r"feature_temperature=2.0 is the cwd loss's, and feature_weight is 0: give it a",
        ),
        ({"advanced": {"mgd_mask_ratio": 0.5}}, r"^advanced.mgd_mask_ratio=0.5 is the mgd loss"),
    ):
        with pytest.raises(ConfigError, match=match):
            _refuse_unused_settings(DistillConfig.from_dict(settings))
    # compress checks them when its run begins: a stage not yet started of a run begun before
    # a check was added goes on (audit51 review M1); refused past that point, the student is
    from yoloslim.compress.distill import settings_checked
    from yoloslim.compress.reparam import reparameterize
    from yoloslim.errors import ModelError

    fused = reparameterize(build_model(STUDENT, names=["a", "b"]), measure=False).model
    unused = DistillConfig.from_dict({"logit_weight": 0, "temperature": 4.0})
    with pytest.raises(ConfigError, match="temperature=4.0 is the logit"):
        distill(fused, teacher, data, config=unused, out=tmp_path / "r")
    with settings_checked(), pytest.raises(ModelError, match="re-parameterised"):
        distill(fused, teacher, data, config=unused, out=tmp_path / "r")
    for used in (
        {"temperature": 4.0},
        {"loss": "mgd", "advanced": {"mgd_mask_ratio": 0.5}},
        {"advanced": {"feature_temperature": 2.0}},
    ):
        _refuse_unused_settings(DistillConfig.from_dict(used))
