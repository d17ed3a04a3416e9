"""Recipe validation: every mistake is a ConfigError naming the file and the stage."""

from pathlib import Path

import pytest
import yaml

from yoloslim.errors import ConfigError
from yoloslim.pipeline import STAGES, load_recipe

RECIPES = sorted((Path(__file__).parents[2] / "recipes").glob("*.yaml"))


def _write(tmp_path: Path, data) -> Path:
    p = tmp_path / "r.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_shipped_recipes_validate(path):
    rec = load_recipe(path)
    assert rec.stages and all(s.name in STAGES for s in rec.stages)
    # the resolved form is plain YAML and parses back to the same recipe
    again = load_recipe(yaml.safe_load(yaml.safe_dump(rec.resolved())))
    assert again.resolved() == rec.resolved()


def test_shipped_recipes_are_the_four_named():
    assert {p.stem for p in RECIPES} >= {"cpu-int8", "gpu-fp16", "max-accuracy", "edge-tiny"}


@pytest.mark.parametrize(
    ("stages", "match"),
    [
        ([{"prnue": {}}], r"stage 1 \(prnue\): unknown stage 'prnue'"),
        (
            [{"export": {"formats": ["onnx"]}}, {"bench": {"batchez": [1]}}],
            r"stage 2 \(bench\).*batchez",
        ),
        ([{"prune": {"ratio": 0.5, "ratoi": 0.3}}], r"stage 1 \(prune\).*ratoi"),
        ([{"prune": {"ratio": "half"}}], r"stage 1 \(prune\).*ratio='half' must be float"),
        ([{"prune": {"ratio": 1.5}}], r"stage 1 \(prune\).*ratio"),
        ([{"train": {"epochs": "ten"}}], r"stage 1 \(train\).*epochs='ten' must be int"),
        ([{"export": {"half": "yes"}}], r"stage 1 \(export\).*half='yes' must be bool"),
        ([{"quantize": {"backend": "tflite"}}], r"stage 1 \(quantize\).*tflite"),
        ([{"distill": {"loss": "cwd", "train": {"epochz": 1}}}], r"stage 1 \(distill\).*epochz"),
        ([{"export": ["onnx"]}], r"stage 1 \(export\): config must be a mapping"),
        ([{"export": {}, "bench": {}}], r"stage 1 must be a one-key mapping"),
        ([], r"'stages' must be a non-empty list"),
        (
            [
                {
                    "nas": {
                        "budget": {"flops": 1.0},
                        "space": {"template": "damo-nano", "kernel": [3]},
                    }
                }
            ],
            r"stage 1 \(nas\).*unknown key.*kernel",
        ),
        (
            [{"nas": {"budget": {"flops": 1.0}, "space": {"template": "damo-x"}}}],
            r"stage 1 \(nas\).*damo-x",
        ),
    ],
)
def test_bad_recipes_name_file_and_stage(tmp_path, stages, match):
    p = _write(tmp_path, {"name": "bad", "stages": stages})
    with pytest.raises(ConfigError, match=match) as e:
        load_recipe(p)
    assert str(p) in str(e.value)


def test_unknown_top_level_key_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="unknown top-level key"):
        load_recipe(_write(tmp_path, {"stages": [{"bench": {}}], "stagez": []}))
    with pytest.raises(ConfigError, match="does not exist"):
        load_recipe(tmp_path / "nope.yaml")
    bad = tmp_path / "broken.yaml"
    bad.write_text("stages: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_recipe(bad)


def test_nas_stage_takes_a_template_space_and_seeds(tmp_path):
    nas = {"budget": {"flops": 1.0, "layers": 29}, "init": ["damo-nano"]}
    nas["space"] = {"template": "damo-nano", "kernels": [3]}
    rec = load_recipe(_write(tmp_path, {"name": "nas", "stages": [{"nas": nas}]}))
    assert rec.stages[0].name == "nas"


def test_quantize_before_a_bench_skips_its_own_latency_unless_asked():
    from yoloslim.pipeline import _stage_config

    q = {"quantize": {"calib": 4}}
    qa = {"quantize": {"calib": 4, "advanced": {"latency": True}}}
    rec = load_recipe({"stages": [q, qa, {"bench": {}}]})
    plain, asked, bench = rec.stages
    assert plain.config.advanced.latency  # the recipe's own config is left as parsed
    assert not _stage_config(plain, benched=True).advanced.latency
    assert _stage_config(plain, benched=True).advanced.perf_counters  # bench has no counters
    assert _stage_config(plain, benched=False).advanced.latency
    assert _stage_config(asked, benched=True).advanced.latency
    assert _stage_config(bench, benched=True) is bench.config
