"""TrainConfig: validation and what a resumed run may change."""

import pytest

from yoloslim.errors import ConfigError
from yoloslim.train.config import TrainConfig, config_from_dict, resume_config


def test_bad_values_name_the_field():
    with pytest.raises(ConfigError, match=r"TrainConfig.imgsz=100 must be a multiple of 32"):
        TrainConfig(imgsz=100)
    with pytest.raises(ConfigError, match=r"TrainConfig.optimizer='lion'"):
        TrainConfig(optimizer="lion")


def test_round_trips_through_a_dict():
    cfg = TrainConfig(epochs=7, optimizer="sgd", augment={"mosaic": 0.5}, threads=2)
    assert config_from_dict(cfg.to_dict()) == cfg


def test_resume_without_a_config_keeps_the_saved_one():
    saved = TrainConfig(epochs=16, seed=3)
    assert resume_config(saved, None, "runs/a") is saved


def test_resume_takes_only_the_runtime_settings_from_the_caller():
    saved = TrainConfig(epochs=16, seed=3, workers=1, threads=None, cache=False)
    given = TrainConfig(epochs=16, seed=3, workers=4, threads=2, cache=True, device="cpu")
    got = resume_config(saved, given, "runs/a")
    assert (got.workers, got.threads, got.cache, got.device) == (4, 2, True, "cpu")
    assert got == TrainConfig(epochs=16, seed=3, workers=4, threads=2, cache=True, device="cpu")


def test_resume_refuses_a_config_that_changes_what_is_learned():
    saved = TrainConfig(epochs=16, seed=3)
    given = TrainConfig(epochs=32, seed=3, lr0=0.002, workers=4)
    with pytest.raises(ConfigError) as e:
        resume_config(saved, given, "runs/a")
    msg = str(e.value)
    assert "runs/a" in msg
    assert "epochs: 16 saved, 32 given" in msg and "lr0: 0.004 saved, 0.002 given" in msg
    assert "workers" not in msg
