"""TrainConfig: validation and what a resumed run may change."""

import dataclasses
import types

import pytest

from yoloslim.errors import ConfigError
from yoloslim.train.config import (
    TrainConfig,
    config_from_dict,
    resume_config,
    static_assigner_for,
)


def test_bad_values_name_the_field():
    with pytest.raises(ConfigError, match=r"TrainConfig.imgsz=100 must be a multiple of 32"):
        TrainConfig(imgsz=100)
    # inference takes 32, training does not: a batch of one image crashed in BatchNorm on
    # the 1x1 map (a traceback after a whole epoch, with a last batch of one)
    with pytest.raises(ConfigError, match=r"TrainConfig.imgsz=32 must be >= 64 to train"):
        TrainConfig(imgsz=32)
    with pytest.raises(ConfigError, match=r"TrainConfig.optimizer='lion'"):
        TrainConfig(optimizer="lion")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        # a negative max norm would flip every gradient: training would climb the loss
        ({"grad_clip": -1}, r"TrainConfig.grad_clip=-1 must be >= 0"),
        ({"weight_decay": -0.1}, r"TrainConfig.weight_decay=-0.1 must be >= 0"),
        ({"momentum": 1.5}, r"TrainConfig.momentum=1.5 must be in \[0, 1\)"),
        ({"close_mosaic": -1}, r"TrainConfig.close_mosaic=-1 must be >= 0"),
        ({"threads": 0}, r"TrainConfig.threads=0 must be >= 1"),
        ({"amp": "yes"}, r"TrainConfig.amp='yes' must be true or false"),
        ({"cache": 1}, r"TrainConfig.cache=1 must be true or false"),
        # an empty "device:" or "device: 0" was an AttributeError traceback
        ({"device": None}, r"TrainConfig.device=None must be auto, cpu or cuda\[:N\]"),
        ({"device": 0}, r"TrainConfig.device=0 must be auto, cpu or cuda\[:N\]"),
        # numpy refused it at the first batch, with a traceback
        ({"warmup_epochs": float("inf")}, r"TrainConfig.warmup_epochs=inf must be finite"),
        ({"weight_decay": float("inf")}, r"TrainConfig.weight_decay=inf must be finite"),
        ({"lr0": float("nan")}, r"TrainConfig.lr0=nan must be finite"),
        ({"seed": -1}, r"TrainConfig.seed=-1 must be in \[0, 2\*\*32\)"),
        ({"seed": 2**64}, r"TrainConfig.seed=18446744073709551616 must be in"),
    ],
)
def test_out_of_range_optimizer_and_loader_settings_are_refused(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**kwargs)
    # the edge of each range is allowed
    TrainConfig(grad_clip=0, weight_decay=0, momentum=0, close_mosaic=0, threads=1, amp=False)


def test_augment_is_checked_when_the_config_is_made():
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['mosaicc'\] in TrainConfig.augment"):
        TrainConfig(augment={"mosaicc": 0.5})
    with pytest.raises(ConfigError, match=r"TrainConfig.augment: expected a mapping"):
        TrainConfig(augment="mosaic")
    with pytest.raises(ConfigError, match=r"TrainConfig.augment.mosaic=2 must be a probability"):
        TrainConfig(augment={"mosaic": 2})
    # a quoted 'false' is a string, which counted as true: augmentation stayed on
    for enabled in ("false", 0):
        with pytest.raises(
            ConfigError, match=rf"^TrainConfig.augment.enabled={enabled!r} must be true or false$"
        ):
            TrainConfig(augment={"enabled": enabled})
    from yoloslim.data import AugmentConfig

    assert TrainConfig(augment=AugmentConfig(mosaic=0.5)).augment["mosaic"] == 0.5


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"epochs": "2"}, r"TrainConfig.epochs='2' must be an integer"),
        ({"batch": 8.0}, r"TrainConfig.batch=8.0 must be an integer"),
        ({"lr0": "1e-3"}, r"TrainConfig.lr0='1e-3' must be a number \(YAML reads 1e-3"),
        ({"threads": True}, r"TrainConfig.threads=True must be an integer"),
        ({"lr0": "one"}, r"TrainConfig.lr0='one' must be a number$"),  # no YAML hint
    ],
)
def test_wrong_types_name_the_field(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**kwargs)


def test_from_dict_is_config_from_dict():
    assert TrainConfig.from_dict({"epochs": 7}) == TrainConfig(epochs=7)
    # any mapping, not a dict only (audit48 review: a mappingproxy "expected a mapping")
    read_only = types.MappingProxyType({"epochs": 7, "loss": types.MappingProxyType({"box": 3.0})})
    assert TrainConfig.from_dict(read_only) == TrainConfig.from_dict(
        {"epochs": 7, "loss": {"box": 3.0}}
    )
    with pytest.raises(ConfigError, match="epochz"):
        TrainConfig.from_dict({"epochz": 7})


def test_train_result_reports_like_every_stage(tmp_path):
    import json

    from yoloslim.train import TrainResult

    res = TrainResult(None, {"best_map": 0.5}, tmp_path / "best.pt", tmp_path / "last.pt")
    saved = json.loads(res.save_report(tmp_path / "r.json").read_text())
    assert saved == json.loads(res.to_json())
    assert saved["report"] == {"best_map": 0.5}
    assert saved["artifacts"] == {
        "best": str(tmp_path / "best.pt"),
        "last": str(tmp_path / "last.pt"),
    }
    assert TrainResult(None, {}, None, tmp_path / "last.pt").artifacts == {
        "last": tmp_path / "last.pt"
    }


def test_round_trips_through_a_dict():
    cfg = TrainConfig(epochs=7, optimizer="sgd", augment={"mosaic": 0.5}, threads=2)
    assert config_from_dict(cfg.to_dict()) == cfg


SA4 = {"static_assigner_epochs": 4}  # a saved config holds the number train() resolved


def test_resume_without_a_config_keeps_the_saved_one():
    saved = TrainConfig(epochs=16, seed=3, loss=SA4)
    assert resume_config(saved, None, "runs/a") is saved


def test_resume_takes_only_the_runtime_settings_from_the_caller():
    saved = TrainConfig(epochs=16, seed=3, workers=1, threads=None, cache=False, loss=SA4)
    given = TrainConfig(epochs=16, seed=3, workers=4, threads=2, cache=True, device="cpu")
    got = resume_config(saved, given, "runs/a")
    assert (got.workers, got.threads, got.cache, got.device) == (4, 2, True, "cpu")
    assert got == TrainConfig(
        epochs=16, seed=3, workers=4, threads=2, cache=True, device="cpu", loss=SA4
    )


def test_resume_takes_the_saved_config_back_from_yaml():
    # a tuple given from Python comes back from train_config.yaml as a list: the same setting
    import yaml

    saved = config_from_dict(TrainConfig(epochs=4, augment={"hsv": (0.01, 0.5, 0.3)}).to_dict())
    given = config_from_dict(yaml.safe_load(yaml.safe_dump(saved.to_dict())))
    assert resume_config(saved, given, "runs/a").augment == saved.augment
    other = config_from_dict({**saved.to_dict(), "augment": {"hsv": [0.02, 0.5, 0.3]}})
    with pytest.raises(ConfigError, match="augment"):
        resume_config(saved, other, "runs/a")
    # the defaults written out are the defaults (audit30 configs L1: {} saved was "another
    # training config" than {hflip: 0.5, mosaic: 1.0} given), and the saved config says them
    from yoloslim.data import AugmentConfig

    plain = TrainConfig(epochs=4)
    assert plain.augment == dataclasses.asdict(AugmentConfig())
    spelled = TrainConfig(epochs=4, augment={"hflip": AugmentConfig().hflip, "mosaic": 1.0})
    assert resume_config(plain, spelled, "runs/a").augment == plain.augment  # not refused


def test_resume_refuses_a_config_that_changes_what_is_learned():
    saved = TrainConfig(epochs=16, seed=3, loss=SA4)
    given = TrainConfig(epochs=32, seed=3, lr0=0.002, workers=4)
    with pytest.raises(ConfigError) as e:
        resume_config(saved, given, "runs/a")
    msg = str(e.value)
    assert "runs/a" in msg
    assert "epochs: 16 saved, 32 given" in msg and "lr0: 0.004 saved, 0.002 given" in msg
    assert "workers" not in msg


def _sa(cfg: TrainConfig) -> int | None:
    return cfg.loss.static_assigner_epochs


# at least 1: with none, a random head's wide boxes left small objects with no positive
@pytest.mark.parametrize(("epochs", "want"), [(30, 4), (16, 4), (8, 2), (3, 1), (1, 1)])
def test_auto_static_assigner_from_scratch_is_a_quarter_of_the_epochs_up_to_4(epochs, want):
    assert _sa(TrainConfig(epochs=epochs)) is None  # auto until train() resolves it
    assert _sa(static_assigner_for(TrainConfig(epochs=epochs), from_scratch=True)) == want
    # a model given with its weights is fine-tuned: task-aligned from the start
    assert _sa(static_assigner_for(TrainConfig(epochs=epochs), from_scratch=False)) == 0


def test_an_explicit_static_assigner_is_kept():
    cfg = TrainConfig(epochs=16, loss={"static_assigner_epochs": 1})
    assert static_assigner_for(cfg, from_scratch=True) is cfg
    assert _sa(static_assigner_for(TrainConfig(loss={"static_assigner_epochs": 6}), False)) == 6


def test_resume_resolves_the_static_assigner_like_the_run_did():
    # a run saved before the option existed trained without ATSS: it resumes without it
    old = TrainConfig(epochs=16)
    assert _sa(resume_config(old, None, "runs/a")) == 0
    # auto in the given config matches whatever the run resolved
    saved = static_assigner_for(TrainConfig(epochs=16), from_scratch=True)
    assert _sa(resume_config(saved, TrainConfig(epochs=16), "runs/a")) == 4
    # an explicit other number does not
    with pytest.raises(ConfigError, match="static_assigner_epochs': 4"):
        resume_config(saved, TrainConfig(epochs=16, loss={"static_assigner_epochs": 2}), "r")


def test_unknown_key_names_where_the_values_came_from():
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['epochz'\] in --config cfg\.yaml;"):
        config_from_dict({"epochz": 3}, where="--config cfg.yaml")
    with pytest.raises(ConfigError, match=r"in train config;"):
        config_from_dict({"epochz": 3})


def test_imgsz_defaults_to_the_models_own_training_size(tmp_path):
    from yoloslim.models import build_model
    from yoloslim.models.checkpoint import load_checkpoint, save_checkpoint
    from yoloslim.train.config import sized_for

    ckpt = save_checkpoint(tmp_path / "m.pt", build_model("damo-nano", nc=2), imgsz=96)
    assert TrainConfig().imgsz is None
    assert sized_for(TrainConfig(), ckpt).imgsz == 96  # a checkpoint file
    assert sized_for(TrainConfig(), load_checkpoint(ckpt)[0]).imgsz == 96  # a Detector from one
    assert sized_for(TrainConfig(), "damo-nano", ckpt).imgsz == 96  # the first that has one
    assert sized_for(TrainConfig(), "damo-nano").imgsz == 320
    assert sized_for(TrainConfig(imgsz=128), ckpt).imgsz == 128  # given: kept
    with pytest.raises(ConfigError, match="imgsz=100"):
        TrainConfig(imgsz=100)


def test_default_workers_follow_the_cores(monkeypatch):
    import yoloslim.sysinfo as sysinfo
    from yoloslim.train.config import loader_workers

    assert TrainConfig().workers is None
    monkeypatch.setattr(sysinfo, "usable_cores", lambda: 2)
    assert loader_workers(None) == 0  # a worker would compete with torch's two threads
    monkeypatch.setattr(sysinfo, "usable_cores", lambda: 8)
    assert loader_workers(None) == 1
    assert loader_workers(3) == 3 and loader_workers(0) == 0
    with pytest.raises(ConfigError, match=r"TrainConfig.workers=-1 must be >= 0"):
        TrainConfig(workers=-1)
    with pytest.raises(ConfigError, match=r"TrainConfig.workers='2' must be an integer"):
        TrainConfig(workers="2")


def test_an_unknown_key_in_a_section_names_the_file_it_came_from():
    from yoloslim.train.config import config_from_dict

    for section in ({"loss": {"bogus": 1}}, {"augment": {"bogus": 1}}):
        with pytest.raises(ConfigError, match=r"^--config c\.yaml: unknown key\(s\) \['bogus'\]"):
            config_from_dict(section, where="--config c.yaml")


@pytest.mark.parametrize(
    ("loss", "match"),
    [
        ({"topk": 0}, r"LossConfig.topk=0 must be >= 1"),  # no positives: a run that learnt nothing
        ({"topk": -1}, r"LossConfig.topk=-1 must be >= 1"),  # failed in the first step
        ({"topk": 2.5}, r"LossConfig.topk=2.5 must be an integer"),
        ({"dfl": "x"}, r"LossConfig.dfl='x' must be a number"),
        ({"box": -7.5}, r"LossConfig.box=-7.5 must be finite, >= 0"),
        ({"cls": float("nan")}, r"LossConfig.cls=nan must be finite, >= 0"),
        ({"qfl_beta": -2}, r"LossConfig.qfl_beta=-2 must be finite, >= 0"),
        ({"cls": True}, r"LossConfig.cls=True must be a number"),
        ({"cls_loss": "focal"}, r"LossConfig.cls_loss='focal' must be qfl, vfl or bce"),
    ],
)
def test_bad_loss_settings_are_named_before_any_training(loss, match):
    with pytest.raises(ConfigError, match=match):
        config_from_dict({"loss": loss})


@pytest.mark.parametrize("loss", [3, None, [1]])
def test_a_loss_section_that_is_no_mapping_is_named(loss):
    # it failed with an AttributeError when the run started
    with pytest.raises(ConfigError, match=r"loss: expected a mapping"):
        config_from_dict({"loss": loss})


def test_a_fresh_run_drops_the_settings_files_of_a_run_stopped_before_its_first_checkpoint(
    tmp_path,
):
    from yoloslim.train.run_folder import RunFolder

    (tmp_path / "distill_config.yaml").write_text("loss: mgd\n")  # a distill stopped early
    RunFolder(tmp_path, TrainConfig(), False).start(None, replace=False)
    assert not (tmp_path / "distill_config.yaml").exists()
    # a folder holding a run keeps its files unless the run is replaced (train refuses it
    # earlier without exist_ok)
    for name in ("last.pt", "distill_config.yaml"):
        (tmp_path / name).write_text("x")
    RunFolder(tmp_path, TrainConfig(), False).start(None, replace=False)
    assert (tmp_path / "distill_config.yaml").exists()


def test_sgd_with_momentum_0_is_plain_sgd_not_a_nesterov_error():
    # audit45 dist F2: momentum 0 is allowed, and Nesterov's ValueError was a traceback
    import torch

    from yoloslim.models import build_model
    from yoloslim.train.trainer import _make_optimizer

    model = build_model("damo-nano", nc=2)
    for momentum, nesterov in ((0.0, False), (0.9, True)):
        opt = _make_optimizer(model, TrainConfig(optimizer="sgd", momentum=momentum))
        assert isinstance(opt, torch.optim.SGD) and opt.defaults["nesterov"] is nesterov
