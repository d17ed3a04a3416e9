"""The statistics the benchmarks report: nas_synth.py's Kendall tau-b and paired comparison,
train_seeds.py's spread, common.py's resume check."""

import importlib.util
import math
import sys
from pathlib import Path

import pytest
import yaml

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str):
    sys.path.insert(0, str(BENCH))  # the scripts import their sibling ``common``
    try:
        spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(BENCH))
    return mod


@pytest.fixture(scope="module")
def nas_synth():
    return _load("nas_synth")


def test_kendall_tau_orders(nas_synth):
    assert nas_synth.kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert nas_synth.kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    # one discordant pair of six
    assert nas_synth.kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)


def test_kendall_tau_b_ties(nas_synth):
    # x ties once: tau-b = (2 - 0) / sqrt((3 - 1) * (3 - 0))
    assert nas_synth.kendall_tau([1, 1, 2], [1, 2, 3]) == pytest.approx(2 / math.sqrt(6))
    assert nas_synth.kendall_tau([5], [1]) is None
    assert nas_synth.kendall_tau([1, 1, 1], [1, 2, 3]) is None


def test_paired(nas_synth):
    got = nas_synth.paired([3.0, 5.0, 4.0], [1.0, 2.0, 3.0])
    assert got["diffs"] == [2.0, 3.0, 1.0]
    assert got["diff_mean"] == 2.0
    assert got["diff_sd"] == 1.0
    assert got["t"] == pytest.approx(2 * math.sqrt(3), abs=0.01)
    assert (got["seeds"], got["ahead"]) == (3, 3)
    behind = nas_synth.paired([1.0, 2.0], [2.0, 2.0])
    assert (behind["ahead"], behind["diff_mean"]) == (0, -0.5)


def test_paired_degenerate(nas_synth):
    one = nas_synth.paired([0.5], [0.25])
    assert (one["diff_sd"], one["t"]) == (None, None)
    same = nas_synth.paired([0.5, 0.75], [0.25, 0.5])
    assert same["t"] is None  # every difference equal: sd 0
    with pytest.raises(ValueError, match="no runs"):
        nas_synth.paired([], [])
    with pytest.raises(ValueError):
        nas_synth.paired([1.0, 2.0], [1.0])


def test_train_seeds_spread_by_hand():
    spread = _load("train_seeds").spread
    s = spread([0.70, 0.80, 0.90])
    assert s == {"mean": 0.8, "sd": 0.1, "min": 0.7, "max": 0.9}
    assert spread([0.5])["sd"] is None
    with pytest.raises(ValueError, match="no values"):
        spread([])


def test_resumable_only_for_the_same_config(tmp_path):
    common = _load("common")
    cfg = common.train_config(16, seed=5)
    assert common.resumable(tmp_path, cfg) is False  # nothing to resume
    (tmp_path / "last.pt").write_bytes(b"")
    (tmp_path / "train_config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    assert common.resumable(tmp_path, cfg) is True
    # a run of another length in the same folder is neither resumed nor overwritten
    with pytest.raises(ValueError, match="another training config"):
        common.resumable(tmp_path, common.train_config(32, seed=5))
    assert (tmp_path / "last.pt").exists()
    # a run saved before loss.static_assigner_epochs existed trained without ATSS (0)
    old = cfg.to_dict()
    del old["loss"]["static_assigner_epochs"]
    (tmp_path / "train_config.yaml").write_text(yaml.safe_dump(old, sort_keys=False))
    assert common.resumable(tmp_path, cfg) is True
    with pytest.raises(ValueError, match="static_assigner_epochs"):
        common.resumable(
            tmp_path, common.train_config(16, seed=5, loss={"static_assigner_epochs": 4})
        )


def test_tau_shard_parses_k_of_n(nas_synth):
    import argparse

    ap = argparse.ArgumentParser()
    assert nas_synth._shard(None, ap) is None
    assert nas_synth._shard("1/3", ap) == (1, 3)
    for bad in ("3/3", "-1/2", "a/2", "1"):  # K out of range, not numbers, no N
        with pytest.raises(SystemExit):
            nas_synth._shard(bad, ap)


def test_paired_seeds_parses_seeds_and_names():
    ps = _load("paired_seeds")
    assert ps.parse_seeds("5-8,11") == [5, 6, 7, 8, 11]
    with pytest.raises(SystemExit, match="'x'"):
        ps.parse_seeds("5,x")
    assert ps.model_name("runs/nas/arch.yaml") == "arch"
    assert ps.model_name("damo-nano") == "damo-nano"


def test_paired_seeds_compares_the_cached_pairs(tmp_path):
    # every run cached: nothing trains, and a seed with one run done is left out
    import json
    import subprocess

    for name, seed, m in [("arch", 1, 0.5), ("damo-nano", 1, 0.4), ("arch", 2, 0.6)]:
        (tmp_path / f"{name}_e16_sa4_s{seed}.json").write_text(json.dumps({"map": m}))
    (tmp_path / "damo-nano_e16_sa4_s2.json").write_text(json.dumps({"map": 0.7}))
    (tmp_path / "arch_e16_sa4_s3.json").write_text(json.dumps({"map": 0.9}))
    cmd = [sys.executable, str(BENCH / "paired_seeds.py"), "--a", "x/arch.yaml"]
    cmd += ["--seeds", "1-2", "--out", str(tmp_path)]
    row = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    assert row["seeds"] == [1, 2] and row["stopped"] == []
    assert row["a_map"] == [0.5, 0.6] and row["b_map"] == [0.4, 0.7]
    assert row["paired"]["diffs"] == [0.1, -0.1] and row["paired"]["ahead"] == 1


def test_a_kept_row_is_made_again_from_other_inputs_and_its_run_folder_set_aside(tmp_path):
    # a kept row was reused whatever data set or teacher made it
    common = _load("common")
    made = []

    def fn():
        made.append(1)
        (tmp_path / "row").mkdir(exist_ok=True)  # the run folder the scripts name as the row
        return {"map": len(made)}

    first = common.cached(tmp_path, "row", fn, inputs={"data": "a"})
    again = common.cached(tmp_path, "row", fn, inputs={"data": "a"})
    assert (first["map"], again["map"], again["cached"]) == (1, 1, True)
    other = common.cached(tmp_path, "row", fn, inputs={"data": "b"})
    assert other["map"] == 2 and "cached" not in other
    assert (tmp_path / "row.stale").is_dir()  # not resumed as a finished run
    # a row kept without inputs (an older or pooled one) is used as it is
    (tmp_path / "old.json").write_text('{"map": 7}')
    assert common.cached(tmp_path, "old", fn, inputs={"data": "a"})["map"] == 7


def test_data_key_tells_sets_apart_by_their_labels(tmp_path):
    import yoloslim as ys

    common = _load("common")
    a = ys.synthesize(tmp_path / "a", images=6, imgsz=64, classes=2, seed=0)
    b = ys.synthesize(tmp_path / "b", images=6, imgsz=64, classes=2, seed=1)
    c = ys.synthesize(tmp_path / "c", images=6, imgsz=64, classes=2, seed=0)
    assert common.data_key(a)["images"] == 6
    assert common.data_key(a) == common.data_key(c) != common.data_key(b)
