"""The rules every entry point shares: input sizes (configs.imgsz_problem / check_imgsz) and
counts (configs.int_problem)."""

import re

import numpy as np
import pytest

from yoloslim.compress.prune_config import PruneConfig
from yoloslim.compress.quant_config import QuantConfig
from yoloslim.configs import check_imgsz, imgsz_problem, int_problem
from yoloslim.errors import ConfigError
from yoloslim.train.config import TrainConfig


@pytest.mark.parametrize("ok", [32, 64, 320, 640, 8192])
def test_multiples_of_32_pass(ok):
    assert imgsz_problem(ok) is None
    check_imgsz(ok)


def test_none_means_the_default_size():
    # None is no size (imgsz_problem says so), but check_imgsz lets it through: it stands
    # for the default size, which the caller resolves
    assert imgsz_problem(None) is not None
    assert check_imgsz(None) is None
    # the configs keep None (the checkpoint's size: resolved when they run; validate's
    # fallback to 320 is tested in test_coco_eval.py), and refuse a size that is no multiple
    # of 32
    for config in (PruneConfig, QuantConfig, TrainConfig):
        assert config(imgsz=None).imgsz is None
        with pytest.raises(ConfigError, match="imgsz"):
            config(imgsz=100)


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        (0, "multiple of 32"),
        (-32, "multiple of 32"),
        (16, ">= 32"),
        (100, "multiple of 32"),
        ("320", "integer"),
        (320.0, "integer"),
        (True, "integer"),
        (8224, "<= 8192"),  # a typo for 822: an allocator's traceback, or the OOM killer
        (32000, "<= 8192"),
    ],
)
def test_other_sizes_are_refused_with_the_reason(bad, why):
    assert why in imgsz_problem(bad)
    with pytest.raises(ConfigError, match=rf"--imgsz={bad!r} must be .*{why}"):
        check_imgsz(bad, "--imgsz")


@pytest.mark.parametrize("cls", [TrainConfig, PruneConfig, QuantConfig])
def test_settings_refuse_a_string_size_as_a_config_error(cls):
    # a YAML "imgsz: '320'" used to reach a comparison and fail as a TypeError
    with pytest.raises(ConfigError, match=r"imgsz='320' must be an integer"):
        cls(imgsz="320")


@pytest.mark.parametrize(
    ("value", "low", "high", "why"),
    [
        (1, 1, None, None),
        (np.int64(3), 1, None, None),  # a count taken from an array
        (0, 0, None, None),
        (256, 1, 256, None),
        (0, 1, None, "must be >= 1"),
        (257, 1, 256, r"must be in \[1, 256\]"),
        (2.0, 1, None, "must be an integer >= 1"),
        ("8", 1, 256, r"must be an integer in \[1, 256\]"),
        (True, 1, None, "must be an integer >= 1"),
        (None, 1, None, "must be an integer >= 1"),
    ],
)
def test_int_problem_names_the_range(value, low, high, why):
    problem = int_problem(value, low, high)
    if why is None:
        assert problem is None
    else:
        assert problem is not None and re.fullmatch(why, problem)


def test_yaml_merge_keys_are_read_and_a_key_twice_is_still_refused(tmp_path):
    """``<<: *anchor`` was refused as an unknown tag by the duplicate-refusing loader."""
    from yoloslim.configs import load_mapping

    f = tmp_path / "c.yaml"
    f.write_text("base: &b {epochs: 1, batch: 8}\nrun:\n  <<: *b\n  batch: 4\n")
    assert load_mapping(f, "TrainConfig")["run"] == {"epochs": 1, "batch": 4}
    f.write_text("run:\n  <<: {epochs: 1}\n  batch: 4\n  batch: 2\n")
    with pytest.raises(ConfigError, match=r"line 4, column 3: found the key 'batch' twice"):
        load_mapping(f, "TrainConfig")
    f.write_text("? [a, b]\n: 1\n")  # a key that is a list: PyYAML's own message
    with pytest.raises(ConfigError, match="unhashable key"):
        load_mapping(f, "TrainConfig")


def test_a_config_path_with_a_tilde_is_the_home_folders(tmp_path, monkeypatch):
    # audit30 cli M1: `--config '~/cfg.yaml'` was "config file does not exist"
    from yoloslim.configs import load_mapping

    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "cfg.yaml").write_text("epochs: 3\n")
    assert load_mapping("~/cfg.yaml", "TrainConfig") == {"epochs": 3}
