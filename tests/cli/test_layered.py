"""Option layering: option defaults < --config values < options given on the command line."""

from __future__ import annotations

import json

import typer
from typer.testing import CliRunner

from yoloslim.cli.common import layered


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.command()
    def cmd(
        ctx: typer.Context,
        epochs: int = typer.Option(30),
        budget_flops: float = typer.Option(None),
        seed: int = typer.Option(0),
        config: str = typer.Option(None),
    ) -> None:
        section = json.loads(config) if config else None
        values = layered(
            ctx,
            section,
            {"epochs": epochs, "flops": budget_flops, "seed": seed},
            {"flops": "budget_flops"},
        )
        print(json.dumps(values, sort_keys=True))

    return app


def _run(*args: str) -> dict:
    res = CliRunner().invoke(_app(), list(args))
    assert res.exit_code == 0, res.output
    return json.loads(res.output)


def test_defaults_without_config():
    assert _run() == {"epochs": 30, "seed": 0}


def test_config_beats_option_defaults():
    assert _run("--config", '{"epochs": 5, "flops": 1.5}') == {"epochs": 5, "flops": 1.5, "seed": 0}


def test_given_options_beat_config():
    got = _run("--config", '{"epochs": 5, "flops": 1.5}', "--epochs", "7", "--budget-flops", "2")
    assert got == {"epochs": 7, "flops": 2.0, "seed": 0}


def test_without_context_every_flag_counts():
    assert layered(None, {"a": 1, "b": 2}, {"a": 3, "c": None}) == {"a": 3, "b": 2}


def test_config_errors_name_the_config_file(tmp_path, capsys):
    from yoloslim.cli.main import main

    cfg = tmp_path / "p.yaml"
    cfg.write_text("ratio: 0.3\nfinetune_epoch: 1\n")
    assert main(["prune", "--model", "damo-nano", "--config", str(cfg), "--no-latency"]) == 2
    err = capsys.readouterr().err
    assert "['finetune_epoch']" in err and f"--config {cfg}" in err
    cfg.write_text("budget: {flops: 1}\nlatency: {thread: 2}\n")
    assert main(["nas", "--imgsz", "64", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "unknown key(s) ['thread'] in nas latency" in err and f"--config {cfg}" in err


def test_nas_latency_cache_flags_conflict_and_a_foreign_file_is_named(tmp_path, capsys):
    from yoloslim.cli.main import main

    args = ["nas", "--imgsz", "64", "--budget-flops", "1", "--out", str(tmp_path / "a.yaml")]
    assert main([*args, "--latency-cache", str(tmp_path / "c.jsonl"), "--no-latency-cache"]) == 2
    assert "--latency-cache FILE or --no-latency-cache, not both" in capsys.readouterr().err
    foreign = tmp_path / "arch.yaml"
    foreign.write_text("name: mine\n")
    assert main([*args, "--latency-cache", str(foreign)]) == 2
    assert f"latency cache {foreign}: line 1" in capsys.readouterr().err
    assert foreign.read_text() == "name: mine\n"


def _defaults(fn) -> dict:
    import inspect

    return {
        n: getattr(p.default, "default", p.default)
        for n, p in inspect.signature(fn).parameters.items()
    }


def test_the_command_lines_defaults_are_the_librarys():
    # a flag the user leaves out passes its default below a --config file's values: where the
    # command line states a default (not None: "the library's"), it must be the library's own
    import dataclasses

    from yoloslim.bench.latency import LatencyConfig
    from yoloslim.cli import bench_cmd, nas_cmd, prune_cmd, quantize_cmd, train_cmd
    from yoloslim.compress.prune_config import PruneConfig
    from yoloslim.compress.quant_config import QuantConfig
    from yoloslim.nas.search import search
    from yoloslim.train.config import TrainConfig

    # the command line's own forms of a setting: "1,8" batches, "" for no float variants, the
    # arch.yaml the search writes, the cache beside it (True in the API)
    own = {
        ("bench", "batch"),
        ("quantize", "float_variants"),
        ("nas", "out"),
        ("nas", "latency_cache"),
    }
    pairs = [
        (
            train_cmd.train,
            {f.name: getattr(TrainConfig(), f.name) for f in dataclasses.fields(TrainConfig)},
        ),
        (
            quantize_cmd.quantize,
            {f.name: getattr(QuantConfig(), f.name) for f in dataclasses.fields(QuantConfig)},
        ),
        (
            prune_cmd.prune,
            {f.name: getattr(PruneConfig(), f.name) for f in dataclasses.fields(PruneConfig)},
        ),
        (
            bench_cmd.bench,
            {f.name: getattr(LatencyConfig(), f.name) for f in dataclasses.fields(LatencyConfig)},
        ),
        (nas_cmd.nas, _defaults(search)),
    ]
    checked = 0
    for fn, lib in pairs:
        for name, value in _defaults(fn).items():
            if name not in lib or value is None or (fn.__name__, name) in own:
                continue
            assert value == getattr(lib[name], "value", lib[name]), (fn.__name__, name)
            checked += 1
    assert checked >= 15, checked


def test_an_output_folder_that_cannot_be_made_is_refused_before_any_work(tmp_path, capsys):
    from yoloslim.cli.main import main

    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert main(["bench", str(tmp_path / "none.onnx"), "--report", str(blocker)]) == 2
    assert "a_file is a file; a folder is written there" in capsys.readouterr().err
    assert main(["prune", "--model", "damo-nano", "--out", str(blocker / "p")]) == 2
    assert "a_file is a file, not a folder; " in capsys.readouterr().err
    for argv in (
        ["train", "--data", "d.yaml"],
        ["distill", "--teacher", "t.pt", "--data", "d.yaml"],
        ["export", "--model", "m.pt"],
        ["quantize", "--model", "m.pt", "--data", "d.yaml"],
    ):
        assert main([*argv, "--out", str(blocker)]) == 2, argv
        assert "a_file is a file; a folder is written there" in capsys.readouterr().err, argv
    assert (
        main(["val", "--model", "m.pt", "--data", "d.yaml", "--json", str(blocker / "v.json")]) == 2
    )
    assert blocker.read_text() == ""


def _quantize_stopped_at_its_settings(tmp_path, monkeypatch) -> tuple[list[str], list]:
    """quantize's command line, with the library's quantize replaced by one that records the
    config it is given and stops (exit 130): the settings are what is checked."""
    import yoloslim.compress.quantize as quantize_mod

    seen = []

    def captured(model, data, *, config, **kw):
        seen.append(config)
        raise KeyboardInterrupt

    monkeypatch.setattr(quantize_mod, "quantize", captured)
    model, data = tmp_path / "m.onnx", tmp_path / "d.yaml"
    model.write_bytes(b"")
    data.write_text("names: [a]\n")
    return [
        "quantize",
        "--model",
        str(model),
        "--data",
        str(data),
        "--out",
        str(tmp_path / "q"),
    ], seen


def test_quantize_ignore_none_quantizes_everything_and_patterns_repeat(tmp_path, monkeypatch):
    from yoloslim.cli.main import main

    base, seen = _quantize_stopped_at_its_settings(tmp_path, monkeypatch)
    for extra in ([], ["--ignore", "none"], ["--ignore", "decode", "--ignore", r"head\.cls"]):
        assert main([*base, *extra]) == 130  # stopped in quantize, the settings made
    assert [c.ignored_scope for c in seen] == [("decode",), (), ("decode", r"head\.cls")]


def test_quantize_dynamic_refuses_a_typed_calib_or_method_even_at_its_default(
    tmp_path, monkeypatch, capsys
):
    # the library refused --calib 100 but took a typed --calib 300 (the default) silently
    from yoloslim.cli.main import main

    base, _ = _quantize_stopped_at_its_settings(tmp_path, monkeypatch)
    base += ["--backend", "onnxruntime", "--mode", "dynamic"]
    for extra, said in (
        (["--calib", "300"], "--calib 300"),
        (["--method", "minmax"], "--method minmax"),
    ):
        assert main([*base, *extra]) == 2, extra
        assert f"{said}: mode dynamic computes activation ranges" in capsys.readouterr().err
    # in a --config file too (audit45 review L2)
    cfg = tmp_path / "q.yaml"
    cfg.write_text("calib: 300\n")
    assert main([*base, "--config", str(cfg)]) == 2
    said = " ".join(capsys.readouterr().err.split())
    assert f"calib: 300 (--config {cfg}): mode dynamic computes" in said
    assert main(base) == 130  # neither given: the run goes on


def test_quantize_bf16_variant_with_onnxruntime_names_the_flag(tmp_path, monkeypatch, capsys):
    # the error named the API's float_variants=['bf16'] (audit52 quant L1)
    from yoloslim.cli.main import main

    base, _ = _quantize_stopped_at_its_settings(tmp_path, monkeypatch)
    assert main([*base, "--backend", "onnxruntime", "--float-variants", "fp16,bf16"]) == 2
    said = " ".join(capsys.readouterr().err.split())
    assert "--float-variants fp16,bf16 needs the openvino backend (got backend onnxruntime" in said
    assert main([*base, "--backend", "onnxruntime", "--float-variants", "fp16"]) == 130


def test_a_prune_goal_given_replaces_the_config_files_goal(tmp_path, monkeypatch, capsys):
    # the goals exclude each other: --ratio with a file's target_flops was "give at most one"
    import yoloslim.compress.prune as prune_mod
    from yoloslim.cli.main import main

    seen = []

    def fake_prune(model, data, config, **kw):
        seen.append(config)
        raise KeyboardInterrupt  # stop there: the settings are what is checked

    monkeypatch.setattr(prune_mod, "prune", fake_prune)
    cfg = tmp_path / "p.yaml"
    cfg.write_text("target_flops: 0.02\ncriterion: l1\n")
    args = ["prune", "--model", "damo-nano", "--config", str(cfg), "--no-latency"]
    assert main([*args, "--ratio", "0.4"]) == 130
    # a stop says that a prune does not resume, and how to run it again
    said = " ".join(capsys.readouterr().err.split())
    assert (
        "interrupted; a prune does not resume: the same command runs it anew (add --exist-ok"
        in said
    )
    assert main(args) == 130
    assert main([*args, "--ratio", "0.4", "--target-params", "1"]) == 2  # two given: refused
    (given, filed) = seen
    assert (given.ratio, given.target_flops, given.criterion) == (0.4, None, "l1")
    assert (filed.ratio, filed.target_flops) == (None, 0.02)
