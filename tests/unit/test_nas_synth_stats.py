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


def test_paired_seeds_parses_seeds_and_names(tmp_path):
    import argparse

    ps = _load("paired_seeds")
    assert ps.parse_seeds("5-8,11") == [5, 6, 7, 8, 11]
    with pytest.raises(argparse.ArgumentTypeError, match="'x'"):
        ps.parse_seeds("5,x")
    # a seed given twice inflated the paired t; a reversed range was dropped without a word
    with pytest.raises(argparse.ArgumentTypeError, match=r"seed\(s\) \[5\] given twice"):
        ps.parse_seeds("5,5,6")
    with pytest.raises(argparse.ArgumentTypeError, match="'8-5': a range runs upwards"):
        ps.parse_seeds("8-5,6")
    common = _load("common")
    with pytest.raises(argparse.ArgumentTypeError, match=r"\[5\] given twice"):
        common.int_list("5,6,5")
    # an arch.yaml is filed by its stem and its bytes' digest: two searches' arch.yaml files
    # are two models (they shared a cached mAP)
    a, b = tmp_path / "a" / "arch.yaml", tmp_path / "b" / "arch.yaml"
    for path, text in ((a, "name: one\n"), (b, "name: two\n")):
        path.parent.mkdir()
        path.write_text(text)
    assert ps.model_name(str(a)).startswith("arch-") and ps.model_name(str(a)) != ps.model_name(
        str(b)
    )
    assert ps.model_name("damo-nano") == "damo-nano"


def test_paired_seeds_compares_the_cached_pairs(tmp_path):
    # every run cached: nothing trains, and a seed with one run done is left out
    import json
    import subprocess

    import yoloslim as ys

    common = _load("common")
    data = ys.synthesize(tmp_path / "runs/base/data", images=4, imgsz=64, classes=2, seed=0)
    data_id = common.data_key(data)
    arch = tmp_path / "x" / "arch.yaml"
    arch.parent.mkdir()
    arch.write_text("name: mine\n")
    a = common.model_name(str(arch))
    out = tmp_path / "seeds"
    out.mkdir()

    def row(name, seed, m, inputs):
        path = out / f"{name}_e16_sa4_s{seed}.json"
        path.write_text(json.dumps({"map": m, "inputs": inputs}))

    a_inputs = common.run_inputs(str(arch), data_id)
    for seed, m in ((1, 0.5), (2, 0.6), (3, 0.9)):
        row(a, seed, m, a_inputs)
    row("damo-nano", 1, 0.4, data_id)
    row("damo-nano", 2, 0.7, data_id)
    cmd = [sys.executable, str(BENCH / "paired_seeds.py"), "--a", str(arch)]
    cmd += ["--seeds", "1-2", "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=tmp_path)
    result = json.loads(done.stdout)
    assert result["seeds"] == [1, 2] and result["stopped"] == [] and result["launched"] == 0
    assert result["a_map"] == [0.5, 0.6] and result["b_map"] == [0.4, 0.7]
    assert result["paired"]["diffs"] == [0.1, -0.1] and result["paired"]["ahead"] == 1
    # a row made from another data set is not paired (paired_seeds makes it again)
    row("damo-nano", 2, 0.7, {**data_id, "labels_sha1": "another set"})
    assert common.kept_row(out, "damo-nano_e16_sa4_s2", data_id) is None
    assert common.kept_row(out, "damo-nano_e16_sa4_s1", data_id)["map"] == 0.4


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
