"""CLI smoke tests: each command through main(argv), plus the installed entry point."""

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import yoloslim
from yoloslim.cli.main import main
from yoloslim.errors import ConfigError


@pytest.fixture(scope="module")
def data_yaml(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "synth"
    assert (
        main(["data", "synth", str(out), "--images", "8", "--imgsz", "64", "--classes", "2"]) == 0
    )
    return out / "data.yaml"


@pytest.fixture(scope="module")
def trained(data_yaml, tmp_path_factory):
    run = tmp_path_factory.mktemp("cli") / "run"
    report = run / "report.json"
    rc = main(
        [
            "train",
            "--model",
            "damo-nano",
            "--data",
            str(data_yaml),
            "--epochs",
            "1",
            "--imgsz",
            "64",
            "--batch",
            "4",
            "--workers",
            "0",
            "--out",
            str(run),
            "--json",
            str(report),
        ]
    )
    assert rc == 0
    return run


def test_models_json(tmp_path):
    p = tmp_path / "m.json"
    assert main(["models", "--imgsz", "64", "--json", str(p)]) == 0
    rows = json.loads(p.read_text())
    assert list(rows)[:3] == [
        "damo-nano",
        "damo-tiny",
        "damo-small",
    ]  # smallest first, as the README
    assert rows["damo-nano"]["gflops"] == pytest.approx(2 * rows["damo-nano"]["gmacs"])


def test_json_dash_is_standard_output_and_the_table_goes_to_stderr(tmp_path, monkeypatch, capsys):
    # --json - wrote a file named "-" in the working folder
    monkeypatch.chdir(tmp_path)
    assert main(["models", "--imgsz", "64", "--json", "-"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["damo-nano"]["nc"] == 80  # nothing but the JSON
    assert "built-in models at 64 px" in err and list(tmp_path.iterdir()) == []
    assert main(["models", "--imgsz", "64"]) == 0  # the next command's table: stdout again
    assert "built-in models at 64 px" in capsys.readouterr().out


def test_json_refuses_a_file_that_belongs_to_an_artifact(tmp_path, capsys):
    package = tmp_path / "victim.mlpackage"  # a CoreML package's Manifest.json: it would not load
    package.mkdir()
    manifest = package / "Manifest.json"
    manifest.write_text('{"fileFormatVersion": "1.0.0"}')
    sidecar = tmp_path / "model.engine.json"  # a TensorRT engine's metadata, beside model.engine
    sidecar.write_text('{"names": ["a"], "imgsz": 64}')
    for target, said in (
        (manifest, f"is inside the CoreML package {package}"),
        (package / "Data" / "new.json", f"is inside the CoreML package {package}"),
        (sidecar, "*.engine.json is a TensorRT engine's metadata"),
    ):
        assert main(["models", "--imgsz", "64", "--json", str(target)]) == 2
        assert said in " ".join(capsys.readouterr().err.split())
    assert manifest.read_text() == '{"fileFormatVersion": "1.0.0"}'
    assert sidecar.read_text() == '{"names": ["a"], "imgsz": 64}'
    assert not (package / "Data").exists()


def test_json_refuses_a_pipe_instead_of_waiting_on_it(tmp_path, capsys):
    fifo = tmp_path / "r.json"  # reading it to judge it waited for a writer forever
    os.mkfifo(fifo)
    assert main(["models", "--imgsz", "64", "--json", str(fifo)]) == 2
    assert "is no regular file (a pipe or a device)" in " ".join(capsys.readouterr().err.split())


def test_export_json_refuses_the_record_of_another_export_folder(trained, tmp_path, capsys):
    ckpt = str(trained / "best.pt")
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["export", "--model", ckpt, "--format", "onnx", "--out", str(a)]) == 0
    record = a / "export_report.json"
    before = record.read_text()
    # replaced, a's record would list b's artifacts: the next export into a forgets a's own
    argv = ["export", "--model", ckpt, "--json", str(record), "--out", str(b)]  # --out after
    assert main(argv) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"--json {record} is the record of the export run in {a}, not of this one" in err
    assert record.read_text() == before and not b.exists()
    # another command's record is refused as before, when the options are parsed
    (b / "q").mkdir(parents=True)
    (b / "q" / "quant_report.json").write_text('{"artifacts": {}}')
    assert main([*argv[:-4], "--json", str(b / "q" / "quant_report.json"), "--out", str(b)]) == 2
    assert "is the quantize run's own quant_report.json" in capsys.readouterr().err
    # the record this very run writes into its own --out: the same report, twice
    argv = ["export", "--model", ckpt, "--format", "torchscript", "--out", str(a)]
    assert main([*argv, "--json", str(record)]) == 0
    saved = json.loads(record.read_text())
    assert set(saved["formats"]) == {"onnx", "torchscript"}  # a's earlier onnx is kept
    assert saved["out"] == str(a)
    # a report kept away from any run folder under the record's name is written again
    kept = tmp_path / "reports" / "export_report.json"
    kept.parent.mkdir()
    argv = ["export", "--model", ckpt, "--format", "onnx", "--out", str(b), "--json", str(kept)]
    assert main(argv) == 0 and main(argv) == 0
    assert json.loads(kept.read_text())["out"] == str(b)


def test_export_json_is_written_when_a_format_fails(trained, tmp_path, capsys):
    out, record = tmp_path / "partial", tmp_path / "partial.json"
    (out / "model.torchscript").mkdir(parents=True)  # a folder in the way of one format
    argv = ["export", "--model", str(trained / "best.pt"), "--out", str(out)]
    assert main([*argv, "--format", "onnx,torchscript", "--json", str(record)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "torchscript: " in err and "onnx passed and stay" in err
    # a line per format as it starts and ends (a log shows them; a spinner it does not)
    assert "export: onnx (1/2): converting and checking" in err
    assert "export: onnx: checked, max |diff| " in err and f"-> {out / 'model.onnx'}" in err
    assert "export: torchscript (2/2)" in err and "export: torchscript: failed (" in err
    saved = json.loads(record.read_text())  # what a CI job reads to find the failure
    assert saved == json.loads((out / "export_report.json").read_text())
    assert saved["formats"]["onnx"]["passed"] is True
    assert saved["formats"]["torchscript"]["passed"] is False
    assert "in the way" in saved["formats"]["torchscript"]["error"]


def test_export_refusals_before_any_work_exit_2(trained, tmp_path, capsys):
    argv = ["export", "--model", str(trained / "best.pt"), "--format", "onnx"]
    giant = tmp_path / "giant"  # a typo for 320: an allocator's traceback before
    assert main([*argv, "--imgsz", "32000", "--out", str(giant)]) == 2
    assert "--imgsz 32000 must be <= 8192" in " ".join(capsys.readouterr().err.split())
    assert not giant.exists()  # no empty folder left
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "model.onnx").write_text("my precious notes")
    assert main([*argv, "--out", str(mine)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"{mine / 'model.onnx'} is not a yoloslim artifact" in err
    assert (mine / "model.onnx").read_text() == "my precious notes"
    assert sorted(p.name for p in mine.iterdir()) == ["model.onnx"]
    # another opset is said to be fixed (audit44 export F3: "Possible options: --out")
    assert main([*argv, "--opset", "11", "--out", str(giant)]) == 2
    assert "--opset 11: yoloslim exports ONNX opset 18 alone" in capsys.readouterr().err
    assert not giant.exists()


def test_export_format_given_twice_exports_both(trained, tmp_path, capsys):
    out = tmp_path / "twice"
    argv = ["export", "--model", str(trained / "best.pt"), "--out", str(out)]
    assert main([*argv, "--format", "onnx", "--format", "torchscript,onnx"]) == 0
    assert (out / "model.onnx").is_file() and (out / "model.torchscript").is_file()
    report = json.loads((out / "export_report.json").read_text())
    assert list(report["formats"]) == ["onnx", "torchscript"]


def test_export_prints_the_notes_the_table_has_no_column_for(trained, tmp_path, capsys):
    out = tmp_path / "half"
    argv = ["export", "--model", str(trained / "best.pt"), "--out", str(out), "--half"]
    assert main([*argv, "--format", "onnx,openvino"]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    # it was only in export_report.json: --half left the ONNX in FP32
    assert (
        "note: onnx: onnx keeps FP32 weights (half applies to OpenVINO/CoreML/TensorRT)" in printed
    )
    assert "checked in" in printed  # the column is the precision the check ran in


def test_export_warns_of_an_out_folder_named_like_an_artifact(tmp_path, capsys):
    out = tmp_path / "mymodel.onnx"  # a folder: model.onnx goes inside it
    argv = ["export", "--model", str(tmp_path / "missing.pt"), "--out", str(out)]
    assert main(argv) == 2  # the warning comes before the work (here: no checkpoint)
    err = " ".join(capsys.readouterr().err.split())
    assert f"warning: --out {out} is a folder named like an artifact (.onnx)" in err
    assert f"the artifacts go inside it ({out / 'model.onnx'}, ...)" in err
    assert main([*argv[:-1], str(tmp_path / "mymodel")]) == 2
    assert "warning" not in capsys.readouterr().err


def test_train_writes_outputs(trained):
    for name in ("last.pt", "best.pt", "metrics.jsonl", "train_config.yaml", "report.json"):
        assert (trained / name).is_file(), name
    report = json.loads((trained / "report.json").read_text())
    assert report["epochs"] == 1


def test_train_resume_refuses_settings_it_would_ignore(trained, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    # --resume leaves --out unused: its default is not checked (here a file named runs/ would
    # stop a new run), so a run resumes from any folder
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").write_text("")
    assert main(["train", "--resume", str(run)]) == 0
    assert main(["train", "--data", "d.yaml"]) == 2
    assert "runs is a file" in capsys.readouterr().err
    assert main(["train", "--resume", str(run), "--epochs", "3", "--lr0", "0.01"]) == 2
    err = capsys.readouterr().err
    assert "--epochs, --lr0 are not taken, even with the saved value" in err
    # audit43 clidoc F4: a flag has no saved value to repeat
    assert main(["train", "--resume", str(run), "--exist-ok"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "so --exist-ok is not taken (only --device" in err
    before = (run / "last.pt").read_bytes()
    # runtime settings may change; the run is finished, so nothing trains and nothing changes
    assert main(["train", "--resume", str(run), "--workers", "0", "--device", "cpu"]) == 0
    assert (run / "last.pt").read_bytes() == before
    rc = main(["distill", "--teacher", str(run / "best.pt"), "--resume", str(run), "--loss", "at"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "--loss is not taken" in err
    assert "(only --device, --workers, --threads, --data and --teacher are;" in err
    assert main(["distill", "--teacher", str(run / "best.pt"), "--resume", str(run)]) == 2
    assert "is not from a distill run" in capsys.readouterr().err
    assert main(["train", "--resume", str(run / "last.pt")]) == 2  # the file, not its folder
    assert f"--resume takes the run folder, not a file in it: --resume {run}" in " ".join(
        capsys.readouterr().err.split()
    )
    loose = shutil.copy(run / "best.pt", tmp_path / "loose.pt")  # no run beside it
    assert main(["train", "--resume", str(loose)]) == 2
    assert f"start a run with --model {loose}" in " ".join(capsys.readouterr().err.split())
    assert main(["distill", "--resume", str(loose)]) == 2  # distill's student is --student
    assert f"start a run with --student {loose}" in " ".join(capsys.readouterr().err.split())


def test_train_into_a_run_folder_needs_exist_ok(trained, data_yaml, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    before = (run / "last.pt").read_bytes()
    argv = ["train", "--data", str(data_yaml), "--epochs", "1", "--imgsz", "64", "--batch", "4"]
    argv += ["--workers", "0", "--seed", "3", "--out", str(run)]
    assert main(argv) == 2
    assert "holds a training run (last.pt)" in capsys.readouterr().err
    assert (run / "last.pt").read_bytes() == before
    (run / "distill_config.yaml").write_text("loss: cwd\n")  # a distillation's folder
    assert main(argv) == 2  # its hint was train --resume, which a distillation refuses
    assert f"holds a distillation (last.pt); resume it (distill --resume {run}" in " ".join(
        capsys.readouterr().err.split()
    )
    (run / "distill_config.yaml").unlink()
    assert main([*argv, "--exist-ok", "--threads", "1"]) == 0  # afresh, another seed
    # each validation's mAP on the screen (the bar shows losses; it was in metrics.jsonl only)
    assert re.search(r"epoch 1/1: mAP50-95 \d+\.\d\d%, mAP50 \d+\.\d\d%", capsys.readouterr().err)
    assert (run / "last.pt").read_bytes() != before
    assert yaml.safe_load((run / "train_config.yaml").read_text())["threads"] == 1


def test_val_json_keys(trained, data_yaml, tmp_path):
    p = tmp_path / "val.json"
    assert (
        main(
            ["val", "--model", str(trained / "best.pt"), "--data", str(data_yaml), "--json", str(p)]
        )
        == 0
    )
    res = json.loads(p.read_text())
    assert {"map", "map50", "per_class", "map_by_size", "images"} <= set(res)
    assert set(res["map_by_size"]) == {"small", "medium", "large"}
    assert set(res["per_class"]) == {"circle", "square"}
    # the CLI reports what the API computes for the same model and data, unchanged
    from yoloslim.eval.val import validate

    api = validate(trained / "best.pt", data_yaml)
    for key in ("map", "map50", "map75", "per_class", "map_by_size", "images", "detections"):
        assert res[key] == api[key], key
    # --device and --threads (val had neither): the runtime as predict runs it
    import torch

    before = torch.get_num_threads()
    q = tmp_path / "val_threads.json"
    argv = ["val", "--model", str(trained / "best.pt"), "--data", str(data_yaml)]
    try:
        assert main([*argv, "--threads", "1", "--device", "auto", "--json", str(q)]) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    threaded = json.loads(q.read_text())
    assert threaded["runtime"] == "torch" and threaded["images"] == res["images"]
    assert threaded["map"] == pytest.approx(res["map"], abs=1e-4)
    assert main([*argv, "--device", "gpu0"]) == 2


def test_data_check(data_yaml, tmp_path):
    p = tmp_path / "check.json"
    assert main(["data", "check", str(data_yaml), "--json", str(p)]) == 0
    assert json.loads(p.read_text())


def test_unknown_model_exits_2(data_yaml, tmp_path, capsys):
    rc = main(
        [
            "train",
            "--model",
            "damo-huge",
            "--data",
            str(data_yaml),
            "--epochs",
            "1",
            "--out",
            str(tmp_path),
        ]
    )
    assert rc == 2
    assert "unknown model 'damo-huge'" in capsys.readouterr().err


def test_bad_checkpoint_exits_2(data_yaml, tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"nope")
    assert main(["val", "--model", str(bad), "--data", str(data_yaml)]) == 2
    assert "bad.pt" in capsys.readouterr().err


def test_bad_synth_argument_exits_2(tmp_path, capsys):
    assert main(["data", "synth", str(tmp_path / "x"), "--classes", "20"]) == 2
    assert "classes" in capsys.readouterr().err


def test_missing_data_yaml_exits_2(tmp_path, capsys):
    missing = tmp_path / ("a-folder-with-a-long-name-" * 4) / "nope.yaml"  # wider than a terminal
    rc = main(["train", "--data", str(missing), "--epochs", "1", "--out", str(tmp_path / "r")])
    assert rc == 2
    err = capsys.readouterr().err
    assert f"DataError: {missing}: data.yaml not found" in err  # one line, the path unbroken


@pytest.mark.parametrize(
    ("argv", "message", "usage"),
    [
        (["train", "--no-such-flag"], "No such option: --no-such-flag", True),
        (["no-such-command"], "No such command 'no-such-command'", True),
        (["val", "--conf"], "Option '--conf' requires an argument", False),
        # a value refused while the options are parsed: one line, no usage
        (["models", "--imgsz", "abc"], "error: Invalid value for '--imgsz'", False),
        (["models", "--json", "x.yaml"], ".yaml is a kind of file yoloslim runs write", False),
        # thresholds of a graph that is not written: refused before the model is read
        (
            ["export", "--model", "m.pt", "--nms-iou", "0.5", "--nms-max-det", "5"],
            "--nms-iou, --nms-max-det set the thresholds of the --nms graph, and no --nms",
            False,
        ),
        # the Triton model's settings, and no triton format to apply them to
        (
            ["export", "--model", "m.pt", "--format", "onnx", "--triton-name", "detector"]
            + ["--triton-max-batch", "8"],
            "--triton-name, --triton-max-batch set the model of the triton format, and no "
            "triton format was given: add triton to --format, or drop them",
            False,
        ),
        (
            ["export", "--model", "m.pt", "--triton-max-batch", "8"],
            "--triton-max-batch sets the model of the triton format, and no triton format "
            "was given: add triton to --format, or drop it",
            False,
        ),
        (
            ["export", "--model", "m.pt", "--nms-conf", "0.3"],
            "--nms-conf sets the thresholds of the --nms graph, and no --nms was given: add "
            "--nms, or drop it",
            False,
        ),
    ],
)
def test_usage_errors_exit_2(argv, message, usage, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert ("Usage: yoloslim" in err) == usage


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["train", "--batch", "0"], "--batch 0 must be >= 1"),
        (["train", "--lr0", "-1"], "--lr0 -1.0 must be > 0"),
        (["train", "--device", "gpu"], "--device 'gpu' must be"),
        (["val", "--model", "m.pt", "--batch", "0"], "--batch 0 must be >= 1"),
        (["prune", "--model", "m.pt", "--ratio", "1.5"], "--ratio 1.5 must be in (0, 1)"),
        (["prune", "--model", "m.pt", "--threads", "0"], "--threads 0 must be >= 1"),
        (["prune", "--model", "m.pt", "--threads", "4096"], "--threads 4096 is more than the"),
    ],
)
def test_a_bad_option_value_is_named_as_the_option(argv, said, data_yaml, tmp_path, capsys):
    argv = [*argv, "--data", str(data_yaml), "--out", str(tmp_path / "r")]
    if argv[0] == "val":
        argv = argv[:-2]  # val writes no folder
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert said in err
    assert "Config." not in err and "batch=" not in err


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        # the library names the option where its setting's name differs (``runs_per_round=0
        # (--runs)``, ``budget.flops=-1.0 (--budget-flops)``): said as the option alone
        (["bench", "m.onnx", "--runs", "0"], "error: ConfigError: --runs 0 must be >= 1"),
        (["bench", "m.onnx", "--batch", "0"], "error: ConfigError: --batch 0 must be positive"),
        # an empty item was dropped without a word (audit47 bench F3)
        (["bench", "m.onnx", "--batch", "1,,2"], "ConfigError: --batch '1,,2': expected comma"),
        (["nas", "--budget-flops", "-1"], "error: ConfigError: --budget-flops -1.0 must be > 0"),
        (["nas", "--budget-flops", "nan"], "ConfigError: --budget-flops nan must be a finite"),
        (["nas", "--budget-latency", "0"], "error: ConfigError: --budget-latency 0.0 must be > 0"),
        (["export", "--model", "m.pt", "--format", "foo"], "ConfigError: --format foo: unknown"),
        (
            ["export", "--model", "m.pt", "--format", "onnx", "--nms", "--dynamic"],
            "ConfigError: --nms needs a static batch (the graph's NMS runs on one image): drop "
            "--dynamic\n",
        ),
        (
            ["export", "--model", "m.pt", "--format", "triton", "--triton-max-batch", "0"],
            "ConfigError: --triton-max-batch: 0 must be in [1, 256]",
        ),
    ],
)
def test_an_option_the_library_names_is_said_as_the_option(argv, said, tmp_path, capsys):
    argv = [*argv, "--out", str(tmp_path / "r")] if argv[0] in ("nas", "export") else argv
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert said in err
    assert not re.search(r"\w=", err)  # no library setting's name=value left


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        # a value holding '=' or ' (--', or a path ending in a snake_case name, is not taken
        # for a setting naming an option (audit42 review F2-F4: they were garbled)
        (["export", "--model", "m.pt", "--format", "onnx=x"], "--format onnx=x: unknown export"),
        (["bench", "m.onnx", "--ov-precision", "x=y"], "--ov-precision 'x=y': expected one of"),
        (
            ["bench", "m.onnx", "--ov-precision", "f16 (--runs)"],
            "--ov-precision 'f16 (--runs)': expected one of",
        ),
        (["compress", "--data", "d.yaml", "--recipe", "cpu-int8"], "/my_model (--model): "),
    ],
)
def test_a_value_that_looks_like_a_setting_is_left_whole(argv, said, tmp_path, capsys):
    if argv[0] == "compress":
        argv = [*argv, "--model", str(tmp_path / "my_model")]
    argv = [*argv, "--out", str(tmp_path / "r")] if argv[0] != "bench" else argv
    assert main(argv) == 2
    err = capsys.readouterr().err.replace("\n", " ")
    assert said in err, err
    assert "--runs 10" not in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize(
    ("command", "text"), [("train", "device: cuda:7\n"), ("distill", "train:\n  device: cuda\n")]
)
def test_a_cuda_device_from_a_config_file_names_the_file(
    command, text, data_yaml, tmp_path, capsys
):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    argv = [command, "--data", str(data_yaml), "--config", str(cfg), "--out", str(tmp_path / "r")]
    argv += ["--teacher", "t.pt"] if command == "distill" else []
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "but CUDA is not available on this machine (settings read from --config" in err
    assert str(cfg) in err and not (tmp_path / "r").exists()


def test_a_message_that_ends_naming_an_option_keeps_its_reason(data_yaml, tmp_path, capsys):
    # ``model=PATH: this run writes ...; give another out (--out)`` was rewritten whole into
    # "--out DIR": the value of a name=value is one token right before the option (audit42
    # review F1)
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "best.pt").write_text("x")
    argv = ["train", "--model", str(tmp_path / "r" / "best.pt"), "--data", str(data_yaml)]
    assert main([*argv, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "which would overwrite it; give another out (--out)" in err


def test_a_budget_from_a_config_file_keeps_its_settings_name(tmp_path, capsys):
    cfg = tmp_path / "nas.yaml"
    cfg.write_text("budget:\n  flops: -1\n")
    assert main(["nas", "--config", str(cfg), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "budget.flops=-1 (--budget-flops) must be > 0" in err and str(cfg) in err


def test_a_bad_value_from_a_config_file_keeps_the_settings_name(data_yaml, tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("batch: 0\n")
    argv = ["train", "--data", str(data_yaml), "--config", str(cfg), "--out", str(tmp_path / "r")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"--config {cfg}: TrainConfig.batch=0 must be >= 1" in err  # --batch was not given
    cfg.write_text("batch: 16.5\n")  # --batch's default, 16, starts the value: not the flag
    assert main(argv) == 2
    assert "TrainConfig.batch=16.5 must be an integer" in capsys.readouterr().err
    # a bad flag beside a good file is the flag's: it was blamed on the file
    cfg.write_text("epochs: 2\n")
    assert main([*argv, "--batch", "0"]) == 2
    err = capsys.readouterr().err
    assert "error: ConfigError: --batch 0 must be >= 1" in err and str(cfg) not in err


@pytest.mark.parametrize("errno_", [errno.ENOSPC, errno.EFBIG])
def test_a_refused_write_without_a_file_name_is_one_line(errno_, tmp_path, monkeypatch, capsys):
    import yoloslim.nas

    def refused(*args, **kwargs):  # a library's own writer: no file name comes with it
        raise OSError(errno_, os.strerror(errno_))

    monkeypatch.setattr(yoloslim.nas, "search_from_dict", refused)
    assert main(["nas", "--budget-flops", "1", "--out", str(tmp_path / "a.yaml")]) == 2
    err = capsys.readouterr().err
    assert (
        err.strip()
        == f"error: OSError: {os.strerror(errno_)} (while writing this command's output); the "
        "run stopped; no a.yaml written; a search does not resume: the same command runs it anew"
    )
    # any other OSError without a file name is a fault of ours: the traceback is kept
    monkeypatch.setattr(yoloslim.nas, "search_from_dict", lambda *a, **k: os.close(-1))
    with pytest.raises(OSError, match="Bad file descriptor"):
        main(["nas", "--budget-flops", "1", "--out", str(tmp_path / "a.yaml")])


# what a stopped search of a new --out says it kept
_NAS_KEPT = "no a.yaml written; a search does not resume: the same command runs it anew"


@pytest.mark.parametrize(("how", "code"), [("interrupted", 130), ("terminated", 143)])
def test_ctrl_c_and_sigterm_stop_a_command_with_one_line(how, code, tmp_path, monkeypatch, capsys):
    import yoloslim.nas

    def stopped(*args, **kwargs):
        if how == "interrupted":
            raise KeyboardInterrupt
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)
        raise AssertionError("SIGTERM did not stop the command")

    monkeypatch.setattr(yoloslim.nas, "search_from_dict", stopped)
    assert main(["nas", "--budget-flops", "1", "--out", str(tmp_path / "a.yaml")]) == code
    err = capsys.readouterr().err
    assert err.strip() == f"{how}; {_NAS_KEPT}"
    from yoloslim.errors import stop_requested

    assert stop_requested() is None  # the command's own: a library call after it is no stop


def test_a_second_signal_while_the_stop_line_is_printed_does_not_cut_it(
    tmp_path, monkeypatch, capsys
):
    # torchrun sends SIGTERM after a terminal's Ctrl-C: raised within the print of the
    # resume line, it left a bare "terminated" (audit46 review2 M)
    import yoloslim.nas
    from yoloslim.cli import common

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    real = common.err_console.print

    def print_after_a_sigterm(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):  # the handler runs between these
            time.sleep(0.001)
        return real(*args, **kwargs)

    monkeypatch.setattr(yoloslim.nas, "search_from_dict", stopped)
    monkeypatch.setattr(common.err_console, "print", print_after_a_sigterm)
    assert main(["nas", "--budget-flops", "1", "--out", str(tmp_path / "a.yaml")]) == 130
    assert capsys.readouterr().err.strip() == f"interrupted; {_NAS_KEPT}"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_that_a_library_wrapped_in_its_own_error_is_still_a_stop(
    signum, tmp_path, monkeypatch, capsys
):
    # torch.export, say, turns an interrupt during its lazy imports into an export failure
    import yoloslim.nas
    from yoloslim.errors import ExportError

    def stopped(*args, **kwargs):
        try:
            os.kill(os.getpid(), signum)
            time.sleep(30)
        except KeyboardInterrupt as e:
            raise ExportError("ONNX export failed: partially initialized module") from e

    monkeypatch.setattr(yoloslim.nas, "search_from_dict", stopped)
    before = signal.getsignal(signal.SIGINT)
    rc = main(["nas", "--budget-flops", "1", "--out", str(tmp_path / "a.yaml")])
    assert rc == 128 + signum
    err = capsys.readouterr().err
    how = "terminated" if signum == signal.SIGTERM else "interrupted"
    assert err.strip() == f"{how}; {_NAS_KEPT}"
    assert signal.getsignal(signal.SIGINT) is before


@pytest.mark.parametrize("as_library_error", [False, True])
def test_an_interrupted_compress_says_how_to_resume(
    tmp_path, monkeypatch, capsys, as_library_error
):
    """Also when a library caught the Ctrl-C and raised an error of its own instead."""
    import yoloslim.pipeline

    out = tmp_path / "run"

    def stopped(*args, **kwargs):
        out.mkdir()
        (out / "recipe.yaml").write_text("stages: []\n")
        try:
            os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C: it is recorded as a stop
            time.sleep(30)
        except KeyboardInterrupt:
            if as_library_error:
                raise RuntimeError("write to closed file") from None
            raise

    monkeypatch.setattr(yoloslim.pipeline, "run_recipe", stopped)
    monkeypatch.setattr(sys, "argv", ["yoloslim", "compress", "--out", str(out)])
    args = ["compress", "--data", "d.yaml", "--recipe", "r.yaml", "--out", str(out)]
    assert main(args) == 130
    err = capsys.readouterr().err
    # one line: the resume command, not a second "interrupted" after it
    assert err.strip() == f"interrupted; continue with `yoloslim compress --out {out} --resume`"


def test_version(capsys):
    from yoloslim import __version__

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"yoloslim {__version__}"


def test_entry_point_help():
    exe = Path(sys.executable).with_name("yoloslim")
    assert exe.is_file(), "the yoloslim entry point is not installed next to the interpreter"
    proc = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert "train" in proc.stdout and "val" in proc.stdout


def test_help_wraps_a_docstrings_sentences_to_the_terminal_not_at_its_source_lines():
    # the help kept the docstring's line breaks: "... a box size, the val split" / "has no ..."
    env = {**os.environ, "COLUMNS": "200"}
    run = [sys.executable, "-m", "yoloslim"]
    proc = subprocess.run([*run, "val", "--help"], capture_output=True, text=True, env=env)
    assert "a class, or a box size, the val split has no ground truth box of." in proc.stdout
    proc = subprocess.run([*run, "--help"], capture_output=True, text=True, env=env)
    assert "classes, input size, precision, inputs and outputs" in proc.stdout


def test_help_shows_no_value_type_beside_a_flag(capsys):
    # typer printed "--resume --no-resume <bool>" and "--help <bool>", as if flags took values
    for argv in (
        ["compress", "--help"],
        ["export", "--help"],
        ["--help"],
        ["data", "synth", "--help"],
    ):
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert "--help" in out and "<bool>" not in out
    assert main(["compress", "--help"]) == 0
    assert "<float>" in capsys.readouterr().out  # other options keep their types


def test_an_empty_value_is_refused_not_taken_as_the_current_folder(tmp_path, monkeypatch, capsys):
    # --out "$UNSET" was the current folder: data synth and train wrote among the user's files
    monkeypatch.chdir(tmp_path)
    for argv, said in (
        (["data", "synth", ""], "Invalid value for 'out': an empty value (give . for the"),
        (["train", "--model", "damo-nano", "--data", "d.yaml", "--out", " "], "'--out': an empty"),
        (["export", "--model", "m.pt", "--format", "onnx", "--format", ""], "'--format': an empty"),
    ):
        assert main(argv) == 2
        assert said in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # nothing written
    with pytest.raises(ConfigError, match=r"out='': an empty path \(give '.' for the current"):
        yoloslim.synthesize("", images=2)


def test_an_option_taken_as_a_forgotten_value_is_refused(tmp_path, monkeypatch, capsys):
    # audit43 clidoc F2: --save --save-txt wrote into a folder named --save-txt, without labels
    monkeypatch.chdir(tmp_path)
    for argv, said in (
        (["predict", "x.jpg", "--model", "m.pt", "--save", "--save-txt"], "'--save': got the"),
        (["models", "--json", "--nc"], "'--json': got the option --nc as its value"),
        (["train", "--data", "d.yaml", "--out", "-h"], "'--out': got the option -h as its"),
    ):
        assert main(argv) == 2
        assert said in " ".join(capsys.readouterr().err.split())
    assert list(tmp_path.iterdir()) == []
    # an argument's name is no option: a folder named "out" is fine (review2 F1)
    assert main(["data", "synth", "out", "--images", "2", "--imgsz", "32"]) == 0
    assert (tmp_path / "out" / "data.yaml").is_file()


def test_a_long_path_is_printed_on_one_line(tmp_path, capsys):
    # audit43 clidoc F1: "wrote PATH" broke a long path across lines where stdout is a pipe
    out = tmp_path / ("d" * 120) / ("e e" * 40) / "synth"
    assert main(["data", "synth", str(out), "--images", "2", "--imgsz", "32"]) == 0
    assert f"wrote {out / 'data.yaml'}\n" in capsys.readouterr().out


def test_python_dash_m_runs_the_command():
    from yoloslim import __version__

    run = [sys.executable, "-m", "yoloslim"]
    proc = subprocess.run([*run, "--version"], capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout.strip()) == (0, f"yoloslim {__version__}")
    proc = subprocess.run([*run, "models", "--imgsz", "100"], capture_output=True, text=True)
    assert proc.returncode == 2 and "--imgsz 100 must be a multiple of 32" in proc.stderr


def test_the_package_and_help_do_not_import_torch():
    # torch takes seconds to import; --help should not wait for it, and a Ctrl-C during that
    # import should reach the command's handler rather than print a traceback
    code = (
        "import sys, yoloslim as ys; from yoloslim.cli.main import main; "
        "rc = main(['--help']); print('torch' in sys.modules, rc)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.split()[-2:] == ["False", "0"], proc.stderr


def test_a_ctrl_c_while_the_command_line_loads_is_one_line_not_a_traceback(tmp_path):
    # stands in for a Ctrl-C during typer's import: the first thing the command line loads
    (tmp_path / "typer.py").write_text("raise KeyboardInterrupt\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    code = "from yoloslim.cli.main import main"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )
    assert (proc.returncode, proc.stderr) == (130, "interrupted\n")


def test_every_public_name_resolves_and_subpackages_do_not_shadow_functions():
    import yoloslim as ys
    import yoloslim.export
    import yoloslim.train.config  # noqa: F401

    missing = [name for name in ys.__all__ if getattr(ys, name, None) is None]
    assert missing == []
    assert callable(ys.export) and callable(ys.train)
    assert ys.train.__module__ == "yoloslim.train.trainer"
    from yoloslim import export

    assert export is ys.export
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        ys.nope  # noqa: B018
    # dir() (tab completion) lists the public names and imported subpackages, not the
    # package's own imports
    assert set(ys.__all__) <= set(dir(ys)) and "models" in dir(ys)
    assert not {"sys", "importlib", "types", "Path", "Any"} & set(dir(ys))
    # a submodule of either imported as a dotted name: it looked it up on the function
    # ("cannot import name 'trainer' from 'train'"), in a fresh interpreter as a user would
    code = "import yoloslim.train.trainer as t, yoloslim.export.verify as v; print(t.__name__, v.__name__)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stdout.split() == ["yoloslim.train.trainer", "yoloslim.export.verify"], proc.stderr


def test_public_functions_document_their_arguments_results_errors_and_use():
    import inspect

    import yoloslim as ys

    lacking = {}
    for name in ys.__all__:
        fn = getattr(ys, name)
        if not inspect.isfunction(fn):
            continue
        doc, sig = inspect.getdoc(fn) or "", inspect.signature(fn)
        sections = ["Returns:", "Example"]
        sections += ["Args:"] if sig.parameters else []
        sections += ["Raises:"] if name != "list_models" else []  # it cannot fail
        lacks = [s for s in sections if s not in doc]
        if lacks:
            lacking[name] = lacks
    assert lacking == {}


def test_predict_and_export_commands(trained, data_yaml, tmp_path, capsys):
    out = tmp_path / "exp"
    assert (
        main(["export", "--model", str(trained / "best.pt"), "--format", "onnx", "--out", str(out)])
        == 0
    )
    assert (out / "model.onnx").is_file() and (out / "export_report.json").is_file()
    images = data_yaml.parent / "images" / "val"
    save = tmp_path / "pred"
    assert (
        main(
            [
                "predict",
                str(images),
                "--model",
                str(out / "model.onnx"),
                "--save",
                str(save),
                "--conf",
                "0.01",
            ]
        )
        == 0
    )
    records = json.loads((save / "detections.json").read_text())
    assert len(records) == len(list(images.iterdir()))
    assert len(list(save.glob("*.jpg"))) == len(records)
    # that run's record is not another predict's --json report to replace (it was, and
    # every later --save there was refused)
    before = (save / "detections.json").read_bytes()
    one = str(next(images.iterdir()))
    argv = ["predict", one, "--model", str(out / "model.onnx"), "--json"]
    assert main([*argv, str(save / "detections.json")]) == 2
    assert "is the detections.json of the predict run in" in capsys.readouterr().err
    assert (save / "detections.json").read_bytes() == before
    assert main([*argv, str(tmp_path / "report.json")]) == 0  # its own report, again: fine
    assert main([*argv, str(tmp_path / "report.json")]) == 0
    # info: the checkpoint and its export, described from the files
    report = tmp_path / "info.json"
    argv = ["info", str(trained / "last.pt"), str(out / "model.onnx"), "--json", str(report)]
    assert main(argv) == 0
    found = json.loads(report.read_text())
    ckpt, onnx_d = found[str(trained / "last.pt")], found[str(out / "model.onnx")]
    # a finished run: epochs done of how many, and nothing to resume
    assert ckpt["training"] == {
        "epochs_done": 1,
        "epochs": 1,
        "command": "train",
        "processes": 1,
        "per_node": 1,
    }
    assert ckpt["resumable"] is None
    assert ckpt["imgsz"] == 64
    assert (
        [h["stage"] for h in ckpt["history"]]
        == ["train"]
        == [h["stage"] for h in onnx_d["history"]]
    )
    assert onnx_d["names"] == ckpt["names"] and onnx_d["inputs"][0]["shape"] == [1, 3, 64, 64]
    assert main(["info", str(data_yaml)]) == 2  # not an artifact: one error line
    # a TorchScript artifact declares no shapes; a distillation's last.pt resumes with distill
    import torch

    ts = tmp_path / "ts"
    argv = ["export", "--model", str(trained / "best.pt"), "--format", "torchscript"]
    assert main([*argv, "--out", str(ts)]) == 0
    state = torch.load(trained / "last.pt", weights_only=True)
    state["train_state"].update(hook={}, epoch=0)
    state["train_state"]["config"]["epochs"] = 3
    torch.save(state, tmp_path / "distill_last.pt")
    capsys.readouterr()
    assert main(["info", str(ts / "model.torchscript"), str(tmp_path / "distill_last.pt")]) == 0
    shown = capsys.readouterr().out
    assert "1 of 3 epochs (distill --resume its folder to go on)" in shown
    assert "torchscript (runs in torchscript)" in shown and "inputs" not in shown
    # audit43 wheel F2: a torchrun run's last.pt was said to resume without torchrun
    state["train_state"].update(world=2)
    del state["train_state"]["per_node"]  # as a last.pt from before it was recorded
    torch.save(state, tmp_path / "two_last.pt")
    assert main(["info", str(tmp_path / "two_last.pt")]) == 0
    shown = " ".join(capsys.readouterr().out.replace("│", " ").split())
    assert "(torchrun --nproc_per_node 2 -m yoloslim distill --resume its folder" in shown
    # a run of two nodes of two: four processes in all, two a node (review2 N4: said 4 a node)
    state["train_state"].update(world=4, per_node=2)
    torch.save(state, tmp_path / "nodes_last.pt")
    assert main(["info", str(tmp_path / "nodes_last.pt")]) == 0
    shown = " ".join(capsys.readouterr().out.replace("│", " ").split())
    assert "(torchrun --nnodes 2 --nproc_per_node 2 (and this run's rendezvous options)" in shown


def test_an_interrupted_predict_keeps_its_results_so_far(
    trained, data_yaml, tmp_path, monkeypatch, interrupting
):
    import yoloslim.runtime.draw as draw

    train_images = sorted((data_yaml.parent / "images" / "train").iterdir())
    images = tmp_path / "imgs"
    images.mkdir()
    for p in train_images[:4]:
        shutil.copy(p, images / p.name)
    save = tmp_path / "pred"
    save.mkdir()
    (save / "detections.json").write_text("[]\n")  # an earlier run's, now stale
    monkeypatch.setattr(draw, "draw_detections", interrupting(draw.draw_detections, 3))
    argv = ["predict", str(images), "--model", str(trained / "best.pt"), "--save", str(save)]
    report = tmp_path / "pred.json"
    assert main([*argv, "--json", str(report)]) == 130
    records = json.loads((save / "detections.json").read_text())
    # the third image's drawing was stopped: only images whose files are written have a
    # record (audit24 predict LOW-1: the record came first, naming a drawing never written)
    assert [Path(r["image"]).name for r in records] == [p.name for p in train_images[:2]]
    assert sorted(p.stem for p in save.glob("*.jpg")) == [p.stem for p in train_images[:2]]
    # and --json has them too, marked (audit24 predict LOW-7: a stopped run kept nothing there)
    kept = json.loads(report.read_text())
    assert kept["complete"] is False and kept["results"] == records


def test_a_predict_that_writes_nothing_leaves_no_save_folder(trained, tmp_path, capsys):
    src = tmp_path / "broken"
    src.mkdir()
    (src / "a.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    save = tmp_path / "out" / "drawn"
    assert (
        main(["predict", str(src), "--model", str(trained / "best.pt"), "--save", str(save)]) == 2
    )
    assert "could be read" in capsys.readouterr().err
    assert not save.exists()

    # --json without --save: the boxes, not only a count per image
    good = tmp_path / "good"
    good.mkdir()
    from PIL import Image

    Image.new("RGB", (96, 64), "white").save(good / "w.png")
    out = tmp_path / "dets.json"
    argv = ["predict", str(good), "--model", str(trained / "best.pt"), "--conf", "0.001"]
    assert main([*argv, "--json", str(out)]) == 0
    got = json.loads(out.read_text())
    assert got["source"] == str(good) and got["model"] == str(trained / "best.pt")
    (record,) = got["results"]
    assert record["image"] == str(good / "w.png") and isinstance(record["detections"], list)
    assert (
        main(
            [
                *argv,
                "--save",
                str(tmp_path / "s"),
                "--json",
                str(tmp_path / "s" / "detections.json"),
            ]
        )
        == 2
    )
    assert "is --save's detections.json" in capsys.readouterr().err


def test_a_closed_output_ends_the_printing_not_the_work(trained, data_yaml, tmp_path):
    # predict --save out | head -1: rich exited with code 1 at the first line printed after
    # head left, and the --save folder held the detections of 2 images of 16
    images = data_yaml.parent / "images" / "val"
    run = [sys.executable, "-m", "yoloslim"]
    for argv, rc in (
        (["predict", str(images), "--model", str(trained / "best.pt"), "--save", "out"], 0),
        (["info", str(trained / "best.pt"), "--json", "-"], 0),
        (["--help"], 0),
        (["--version"], 0),  # click's echo exited with code 1 (audit46 cli F1)
        (["val", "--model", "missing.pt", "--data", str(data_yaml)], 2),  # an error stays one
    ):
        proc = subprocess.Popen(
            [*run, *argv], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        proc.stdout.close()  # before the command prints anything: its reader is gone
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=300) == rc, (argv, err)
        assert "Traceback" not in err and "BrokenPipe" not in err, err
    records = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert len(records) == len(list(images.iterdir()))


def test_predict_video(trained, tmp_path, capsys, monkeypatch):
    av = pytest.importorskip("av")
    from yoloslim.runtime.video import VideoReader, VideoWriter

    rng = __import__("numpy").random.default_rng(0)
    clip = tmp_path / "clip.mp4"
    with VideoWriter(clip, fps=10) as w:
        for _ in range(7):
            w.write(rng.integers(0, 255, (48, 64, 3), dtype="uint8"))
    assert av.open(str(clip)).streams.video[0].codec_context.name
    save = tmp_path / "vid"
    argv = ["predict", str(clip), "--model", str(trained / "best.pt"), "--save", str(save)]
    assert main([*argv, "--batch", "3", "--conf", "0.01"]) == 0
    records = json.loads((save / "detections.json").read_text())
    assert [r["frame"] for r in records] == list(range(7))
    # audit45 predict F3: each frame's time in the source (a variable rate's drawing is not)
    assert [r["time"] for r in records] == [round(i / 10, 6) for i in range(7)]
    assert "uneven intervals" not in capsys.readouterr().err
    # audit42 video F2: a frame record did not name its video
    assert {r["video"] for r in records} == {str(clip)}
    with VideoReader(save / "clip.mp4") as r:
        frames = list(r)
    assert len(frames) == 7 and frames[0].shape == (48, 64, 3)
    assert sorted(p.name for p in save.iterdir()) == ["clip.mp4", "detections.json"]  # no temp
    capsys.readouterr()
    assert main(argv) == 0  # its own drawn video (marked in the container) is replaced
    assert "does not predict" not in capsys.readouterr().err
    # review F4: the same video given from another folder is not another video
    monkeypatch.chdir(tmp_path)
    assert main(["predict", "clip.mp4", *argv[2:]]) == 0
    assert "does not predict" not in capsys.readouterr().err
    # F2: another video's run replaced this one's records without a word (the same stem's
    # drawing replaces this one's: not another's)
    other = tmp_path / "other" / "clip.avi"
    other.parent.mkdir()
    shutil.copy(clip, other)
    assert main(["predict", str(other), *argv[2:]]) == 0
    assert "does not predict" not in capsys.readouterr().err
    shutil.copy(clip, other.with_name("clip2.avi"))
    assert main(["predict", str(other.with_name("clip2.avi")), *argv[2:]]) == 0
    said = " ".join(capsys.readouterr().err.split())
    assert f"holds 7 record(s) of frames of a video this run does not predict ({other})" in said
    # a video of the user's named like a drawn one is not replaced, though a video run wrote
    # the detections.json beside it
    mine = save / "mine.mp4"
    shutil.copy(clip, mine)
    before = mine.read_bytes()
    mine_argv = ["predict", str(other.with_name("mine.avi")), "--model", str(trained / "best.pt")]
    other.rename(other.with_name("mine.avi"))
    assert main([*mine_argv, "--save", str(save)]) == 2
    assert "a drawn video would replace" in capsys.readouterr().err
    assert mine.read_bytes() == before


def test_a_truncated_video_keeps_the_frames_it_decoded(trained, tmp_path, caplog):
    # audit42 video F1: a truncated MP4 (its index at the front) failed in the decoder: an
    # error, the drawn video removed and the frames of the batch decoded so far dropped;
    # F4: the drawn video's temp was NAME.partial.mp4, a user's file of that name replaced
    import logging

    av = pytest.importorskip("av")
    rng = np.random.default_rng(0)
    clip = tmp_path / "clip.mp4"
    with av.open(str(clip), "w", options={"movflags": "faststart"}) as c:
        if "libx264" not in av.codecs_available:
            pytest.skip("PyAV without libx264 (an mpeg4 file cut short ends cleanly)")
        stream = c.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for _ in range(30):
            frame = rng.integers(0, 255, (48, 64, 3), dtype="uint8")
            c.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        c.mux(stream.encode())
    data = clip.read_bytes()
    clip.write_bytes(data[: int(len(data) * 0.6)])
    save = tmp_path / "vid"
    save.mkdir()
    (save / "clip.partial.mp4").write_text("mine")
    argv = ["predict", str(clip), "--model", str(trained / "best.pt"), "--save", str(save)]
    with caplog.at_level(logging.WARNING, "yoloslim"):
        assert main([*argv, "--batch", "4", "--conf", "0.01"]) == 0
    records = json.loads((save / "detections.json").read_text())
    assert 0 < len(records) < 30 and [r["frame"] for r in records] == list(range(len(records)))
    assert f"decoding stopped after {len(records)} of the 30 frames" in caplog.text
    from yoloslim.runtime.video import VideoReader

    with VideoReader(save / "clip.mp4") as r:
        assert len(list(r)) == len(records)
    assert (save / "clip.partial.mp4").read_text() == "mine"
    assert sorted(p.name for p in save.iterdir()) == [
        "clip.mp4",
        "clip.partial.mp4",
        "detections.json",
    ]


def test_a_stopped_video_run_names_the_earlier_runs_drawn_video(
    trained, tmp_path, monkeypatch, capsys, interrupting
):
    # audit24 predict MEDIUM-1: a stopped video run's detections.json sat beside an earlier
    # run's drawn video (of another clip, maybe) without a word
    pytest.importorskip("av")
    import yoloslim.runtime.draw as draw
    from yoloslim.runtime.video import VideoWriter

    rng = np.random.default_rng(0)
    clip = tmp_path / "clip.mp4"
    with VideoWriter(clip, fps=10) as w:
        for _ in range(6):
            w.write(rng.integers(0, 255, (48, 64, 3), dtype="uint8"))
    save = tmp_path / "vid"
    argv = ["predict", str(clip), "--model", str(trained / "best.pt"), "--save", str(save)]
    assert main([*argv, "--batch", "1"]) == 0  # the earlier run: a whole drawn video
    capsys.readouterr()
    monkeypatch.setattr(draw, "draw_detections", interrupting(draw.draw_detections, 3))
    assert main([*argv, "--batch", "1"]) == 130
    err = " ".join(capsys.readouterr().err.split())
    assert "holds the 2 results so far; the drawn clip.mp4 there is an earlier run's" in err, err


def test_predict_bad_video(trained, tmp_path):
    pytest.importorskip("av")
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video")
    report = tmp_path / "r.json"
    argv = ["predict", str(bad), "--model", str(trained / "best.pt"), "--json", str(report)]
    assert main(argv) == 2
    # audit42 video F10: a run stopped before its first result wrote no --json at all
    assert json.loads(report.read_text())["results"] == []
    assert json.loads(report.read_text())["complete"] is False


def test_predict_never_overwrites_an_input(trained, data_yaml, tmp_path, capsys):
    src = tmp_path / "ow"
    src.mkdir()
    img = src / "img.jpg"
    shutil.copy(next((data_yaml.parent / "images" / "val").iterdir()), img)
    before = img.read_bytes()
    argv = ["predict", str(img), "--model", str(trained / "best.pt"), "--conf", "0.01"]
    assert main([*argv, "--save", str(src)]) == 2
    assert "would replace the input" in capsys.readouterr().err
    assert img.read_bytes() == before and not (src / "detections.json").exists()


def test_predict_refuses_before_any_work_what_it_met_only_at_an_images_turn(
    trained, data_yaml, tmp_path, capsys
):
    # audit24 predict LOW-2, 3, 5, 8: each was found late, or not at all
    images = data_yaml.parent / "images" / "val"
    first = sorted(images.iterdir())[0]
    argv = ["predict", str(images), "--model", str(trained / "best.pt")]

    def refused(extra, said):
        assert main([*argv, *extra]) == 2
        err = " ".join(capsys.readouterr().err.split())
        assert said in err, err

    blocked = tmp_path / "b1"
    (blocked / f"{first.stem}.jpg").mkdir(parents=True)  # a folder where a drawing goes
    refused(["--save", str(blocked)], "which is a folder")
    blocked = tmp_path / "b2"
    blocked.mkdir()
    (blocked / "labels").write_text("notes")  # a file where labels/ goes
    refused(["--save", str(blocked), "--save-txt"], "labels, which is a file")
    pseudo = tmp_path / "b3" / "labels" / f"{first.stem}.txt"  # --json at a label's path
    refused(
        ["--save", str(tmp_path / "b3"), "--save-txt", "--json", str(pseudo)], "this run writes"
    )
    assert not pseudo.exists() and not (tmp_path / "b3").exists()
    own = tmp_path / "own"
    own.mkdir()
    shutil.copy(first, own / "photo.png")  # one image into its own folder, as a folder is
    assert main(["predict", str(own / "photo.png"), *argv[2:], "--save", str(own)]) == 2
    assert "is the folder photo.png is in" in " ".join(capsys.readouterr().err.split())
    assert sorted(p.name for p in own.iterdir()) == ["photo.png"]
    from yoloslim.cli.predict_cmd import _warn_inside_source

    (own / "clip.avi").write_bytes(b"")  # a video into its own folder: its drawing is no image
    _warn_inside_source(own / "clip.avi", own)  # not refused
    nested = tmp_path / "nested"
    (nested / "sub").mkdir(parents=True)
    shutil.copy(first, nested / "sub" / first.name)
    assert main(["predict", str(nested), *argv[2:]]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "subfolders are not read, and it has 1 (sub)" in err, err


def test_predict_folder_same_stems_and_an_unreadable_image(trained, data_yaml, tmp_path, caplog):
    from PIL import Image

    src, save = tmp_path / "pd", tmp_path / "out"
    src.mkdir()
    val = sorted((data_yaml.parent / "images" / "val").iterdir())
    Image.open(val[0]).convert("RGB").save(src / "a.jpg")
    Image.open(val[0]).convert("RGBA").save(src / "a.png")
    Image.open(val[1]).convert("RGB").save(src / "b.png")
    data = (src / "a.jpg").read_bytes()
    (src / "zz.jpg").write_bytes(data[: len(data) // 2])  # truncated
    argv = ["predict", str(src), "--model", str(trained / "best.pt"), "--conf", "0.01"]
    assert main([*argv, "--save", str(save), "--batch", "2"]) == 0
    assert sorted(p.name for p in save.glob("*.jpg")) == ["a_jpg.jpg", "a_png.jpg", "b.jpg"]
    records = json.loads((save / "detections.json").read_text())
    assert [Path(r["image"]).name for r in records] == ["a.jpg", "a.png", "b.png"]
    assert "zz.jpg" in caplog.text
    for f in src.glob("*.png"):
        f.unlink()
    (src / "a.jpg").write_bytes(b"not an image")
    assert main(argv) == 2  # nothing readable is an error


def test_predict_keeps_an_earlier_runs_results_until_its_own_first_result(
    trained, data_yaml, tmp_path, capsys
):
    # a refused run deleted the earlier detections.json, leaving its drawings without it
    img = next((data_yaml.parent / "images" / "val").iterdir())
    save = tmp_path / "pred"
    argv = ["predict", str(img), "--model", str(trained / "best.pt"), "--save", str(save)]
    assert main(argv) == 0
    earlier = (save / "detections.json").read_text()
    assert main([*argv, "--batch", "0"]) == 2
    assert main(["predict", str(tmp_path / "gone.mp4"), *argv[2:]]) == 2
    assert "gone.mp4: video does not exist" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "vids" / "*.mp4"), *argv[2:]]) == 2  # quoted glob
    assert "*.mp4: video does not exist (patterns are not expanded" in capsys.readouterr().err
    assert (save / "detections.json").read_text() == earlier
    # a detections.json predict did not write is not replaced: another shape, or records of
    # predict's outer shape with keys predict would not write
    theirs = [
        '{"mine": "user data"}\n',
        '[{"image": "a.jpg", "detections": []}, {"frame": 1, "detections": []}]\n',
        '[{"image": "a.jpg", "detections": [{"box": [1, 2, 3, 4], "class": "hand"}]}]\n',
        '[{"image": "a.jpg", "detections": [], "note": "checked by hand"}]\n',
        '[{"video": 3, "frame": 0, "detections": []}]\n',  # review F6: a TypeError
    ]
    for text in theirs:
        (save / "detections.json").write_text(text)
        assert main(argv) == 2
        assert "was not written by predict" in capsys.readouterr().err
        assert (save / "detections.json").read_text() == text


def test_predict_draws_whole_files_and_prints_names_as_they_are(
    trained, data_yaml, tmp_path, monkeypatch, capsys, stopped_writes
):
    src = tmp_path / "photo [copy].jpg"
    shutil.copy(next((data_yaml.parent / "images" / "val").iterdir()), src)
    save = tmp_path / "out[/]"  # rich markup: printed as it is, not parsed (a MarkupError)
    argv = ["predict", str(src), "--model", str(trained / "best.pt"), "--save", str(save)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "photo [copy].jpg: " in out and "out[/]" in out
    drawn = save / "photo [copy].jpg"
    before = drawn.read_bytes()
    # a Ctrl-C while the JPEG is written to its file (the first write; detections.json,
    # written after the stop, is whole)
    stopped_writes(KeyboardInterrupt(), first=1)
    assert main(argv) == 130
    monkeypatch.undo()
    assert drawn.read_bytes() == before  # the earlier drawing, whole
    assert sorted(p.name for p in save.iterdir()) == ["detections.json", "photo [copy].jpg"]


def test_predict_video_checks_batch_before_decoding_and_warns_of_a_short_video(
    trained, tmp_path, monkeypatch, caplog
):
    pytest.importorskip("av")
    from yoloslim.runtime import video
    from yoloslim.runtime.video import VideoWriter

    clip = tmp_path / "clip.mp4"
    with VideoWriter(clip, fps=10) as w:
        for _ in range(5):
            w.write(np.zeros((32, 32, 3), np.uint8))
    decoded = []
    real_iter = video.VideoReader.__iter__

    def counting(self):
        for frame in real_iter(self):
            decoded.append(1)
            yield frame

    monkeypatch.setattr(video.VideoReader, "__iter__", counting)
    argv = ["predict", str(clip), "--model", str(trained / "best.pt")]
    assert main([*argv, "--batch", "0"]) == 2
    assert decoded == []  # every frame used to be held until the end, then refused
    real_init = video.VideoReader.__init__
    end = {}

    def announcing_more(self, path):
        real_init(self, path)
        self.frames = 9  # as a truncated file's container does; a clip cut without
        self._edited_end = end.get("end", self._edited_end)  # re-encoding too (an edit list)

    monkeypatch.setattr(video.VideoReader, "__init__", announcing_more)
    with caplog.at_level("WARNING", logger="yoloslim.runtime.video"):
        assert main(argv) == 0  # its frames reach the container's end: an edit list's
    assert "frames its container announces" not in caplog.text  # (audit50 video F1)
    end["end"] = 0.9
    with caplog.at_level("WARNING", logger="yoloslim.runtime.video"):
        assert main(argv) == 0
    assert "ended after 5 of the 9 frames its container announces" in caplog.text
    # a video of the user's own where the drawn one goes is not replaced
    save = tmp_path / "vsave"
    save.mkdir()
    shutil.copy(clip, save / "clip.mp4")
    (save / "clip.mp4").write_bytes(b"the user's video")
    assert main([*argv, "--save", str(save)]) == 2
    assert (save / "clip.mp4").read_bytes() == b"the user's video"
    folder = tmp_path / "frames.mp4"  # a folder named like a video is a folder of images
    folder.mkdir()
    shutil.copy(next(iter(Path(__file__).parent.glob("*.py"))), folder / "notes.txt")
    assert not video.is_video(folder)


def test_predict_and_val_refuse_imgsz_not_a_multiple_of_32(trained, data_yaml, capsys):
    img = next((data_yaml.parent / "images" / "val").iterdir())
    ck = str(trained / "best.pt")
    assert main(["predict", str(img), "--model", ck, "--imgsz", "100"]) == 2
    assert "--imgsz 100 must be a multiple of 32" in capsys.readouterr().err
    assert main(["val", "--model", ck, "--data", str(data_yaml), "--imgsz", "100"]) == 2
    assert "--imgsz 100 must be a multiple of 32" in capsys.readouterr().err


def test_val_shows_a_dash_for_a_class_without_ground_truth(trained, tmp_path, capsys, caplog):
    from yoloslim.data.testing import fake_images, write_yolo

    imgs = fake_images(3, width=64, height=48, nc=1, seed=2)  # class 0 boxes only
    yaml = write_yolo(tmp_path, {"train": imgs[:1], "val": imgs}, ["dog", "cat"])
    p = tmp_path / "val.json"
    assert (
        main(["val", "--model", str(trained / "best.pt"), "--data", str(yaml), "--json", str(p)])
        == 0
    )
    assert json.loads(p.read_text())["per_class"]["cat"] is None
    rows = [line for line in capsys.readouterr().out.splitlines() if " cat " in line]
    assert len(rows) == 1 and rows[0].split("│")[2].strip() == "-"
    assert "['circle', 'square']" in caplog.text  # names differ from the checkpoint's


def test_a_forked_child_stuck_in_c_still_dies_of_sigterm():
    # a library's forked helper blocked in C (OpenVINO telemetry's DNS lookup, on a lock held
    # at fork time) never returns to Python, so a Python handler inherited from the command
    # would never run, and the command would hang joining it at exit
    import ctypes

    from yoloslim.cli.common import sigterm_as_interrupt

    libc = ctypes.CDLL(None)
    mutex = ctypes.create_string_buffer(64)  # PTHREAD_MUTEX_INITIALIZER is all zeros
    assert libc.pthread_mutex_lock(mutex) == 0
    with sigterm_as_interrupt():
        pid = os.fork()
        if pid == 0:  # the child: wait for a lock nobody will release
            libc.pthread_mutex_lock(mutex)
            os._exit(0)
        time.sleep(0.5)
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError("the forked child ignored SIGTERM")
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_that_lands_in_a_finaliser_is_not_lost(signum):
    # a signal whose handler runs while the garbage collector closes a generator raises in
    # that finaliser, where Python prints "Exception ignored" and goes on: the command ran
    # to the end and exited 0 (seen in compress, in read_ir's half-read XML iterator)
    from yoloslim.cli.common import Terminated, sigterm_as_interrupt, stop_requested

    def closes_with_a_signal():
        try:
            yield 1
        finally:
            signal.raise_signal(signum)
            sum(range(100))  # the handler runs here, inside the finaliser

    expected = Terminated if signum == signal.SIGTERM else KeyboardInterrupt
    ignored = []
    before = sys.unraisablehook
    sys.unraisablehook = ignored.append  # what would otherwise print "Exception ignored"
    try:
        with pytest.raises(expected), sigterm_as_interrupt():
            g = closes_with_a_signal()
            next(g)
            del g  # closed by its finaliser: the stop raised there is unraisable
            for _ in range(1000):
                time.sleep(0.001)
        assert not ignored  # handled by the command's hook, not passed on
        assert isinstance(stop_requested(), expected)
    finally:
        sys.unraisablehook = before
    assert sys.unraisablehook is before


def test_data_loader_workers_stopped_with_the_command_print_no_traceback():
    """A terminal's Ctrl-C (or a scheduler's SIGTERM) reaches the loader's workers too; the
    loader's finaliser then raised 'DataLoader worker (pid N) is killed by signal', printed
    as a 20-line "Exception ignored" traceback above the one-line stop message."""
    from yoloslim.cli.common import sigterm_as_interrupt

    class Loader:
        def __init__(self, why):
            self.why = why

        def __del__(self):
            raise RuntimeError(f"DataLoader worker (pid 4242) is killed by signal: {self.why}. ")

    printed = []
    before = sys.unraisablehook
    sys.unraisablehook = printed.append
    try:
        with sigterm_as_interrupt():
            Loader("Interrupt")  # no stop yet: a worker that died on its own is said
            assert len(printed) == 1
            with pytest.raises(KeyboardInterrupt):
                signal.raise_signal(signal.SIGINT)
            Loader("Interrupt")
            Loader("Terminated")
            assert len(printed) == 1  # with the stop: not printed
            Loader("Segmentation fault")  # not a stop: still said
            assert len(printed) == 2
    finally:
        sys.unraisablehook = before


def test_help_defaults_that_live_in_the_configs_are_the_configs():
    # prune's and distill's options default to None (a config file may set them), so their
    # help states the config's default by hand: it must not drift from the code
    import re

    import typer
    from typer.testing import CliRunner

    from yoloslim.cli.main import app
    from yoloslim.compress.distill import DistillConfig
    from yoloslim.compress.prune_config import PruneConfig

    cmds = typer.main.get_command(app).commands
    stated = {}
    for cmd, cfg, fields in (
        (
            "prune",
            PruneConfig(),
            {
                "criterion": "criterion",
                "steps": "steps",
                "finetune_epochs": "finetune_epochs",
                "finetune_between": "finetune_between",
                "batch": "batch",
                "backend": "backend",
                "method": "method",
            },
        ),
        (
            "distill",
            DistillConfig(),
            {
                "loss": "loss",
                "logit_weight": "logit_weight",
                "feature_weight": "feature_weight",
                "temperature": "temperature",
                "freeze_epochs": "freeze_epochs",
                "warmup_epochs": "warmup_epochs",
                "epochs": "train.epochs",
                "batch": "train.batch",
                "lr0": "train.lr0",
                "seed": "train.seed",
                "device": "train.device",
            },
        ),
    ):
        params = {p.name: p for p in cmds[cmd].params if p.param_type_name == "option"}
        for option, field in fields.items():
            value = cfg
            for part in field.split("."):
                value = getattr(value, part)
            value = getattr(value, "value", value)
            shown = re.search(r"\\\[default: ([^\]]+)\]", params[option].help).group(1)
            stated[(cmd, option)] = (shown, str(value))
    # a --x/--no-x pair states the flag that is in force by default
    from yoloslim.train.config import TrainConfig

    for cmd, option, value, on, off in (
        ("prune", "global_pruning", PruneConfig().global_pruning, "global", "local"),
        ("prune", "distill", PruneConfig().distill, "distill", "no-distill"),
        ("prune", "latency", PruneConfig().latency, "latency", "no-latency"),
        ("distill", "progressive", DistillConfig().progressive, "progressive", "no-progressive"),
        ("train", "lr0", None, str(TrainConfig().lr0), None),
    ):
        param = next(p for p in cmds[cmd].params if p.name == option)
        shown = re.search(r"\\\[default: ([^\]]+)\]", param.help).group(1)
        stated[(cmd, option)] = (shown, on if value is None or value else off)
    assert all(shown == value for shown, value in stated.values()), stated
    # workers: None in the config, a rule on the cores (train.config.loader_workers)
    for cmd in ("train", "distill"):
        workers = next(p for p in cmds[cmd].params if p.name == "workers")
        assert "[default: 0 on 2 cores or fewer, else 1]" in workers.help
        assert workers.default is None
    # and --help prints them (escaped: rich markup swallowed a bare "[default: ...]")
    for cmd, option, shown in (("prune", "--finetune-epochs", "10"), ("distill", "--epochs", "30")):
        res = CliRunner().invoke(app, [cmd, "--help"], env={"COLUMNS": "200"})
        line = next(x for x in res.output.splitlines() if option in x)
        assert f"[default: {shown}]" in line, line


def test_no_help_cuts_an_option_name_at_80_columns():
    # nas --help showed "--budget-effectiven…" on an 80-column terminal and in a pipe (grep
    # found no budget-effectiveness): the unused --no-keep-neck column squeezed the rest
    from typer.testing import CliRunner

    from yoloslim.cli.main import app

    names = ["data synth", "data check", "train", "val", "nas", "models", "info", "export"]
    names += ["predict", "bench", "prune", "distill", "quantize", "compress"]
    for name in names:
        res = CliRunner().invoke(app, [*name.split(), "--help"], env={"COLUMNS": "80"})
        assert res.exit_code == 0, name
        cut = [line for line in res.output.splitlines() if "\u2026" in line]
        assert not cut, (name, cut)
    res = CliRunner().invoke(app, ["nas", "--help"], env={"COLUMNS": "80"})
    assert "--budget-effectiveness" in res.output and "--no-keep-neck" not in res.output


def test_verbose_shows_the_librarys_info_log_and_only_its_own(monkeypatch):
    import logging

    import yoloslim.models as models

    log = logging.getLogger("yoloslim")
    monkeypatch.setattr(log, "level", logging.NOTSET)  # restored after the test
    seen = []
    real = models.list_models

    def levels(*args, **kwargs):  # while the command runs
        seen.append((log.getEffectiveLevel(), logging.getLogger("torch").getEffectiveLevel()))
        return real(*args, **kwargs)

    monkeypatch.setattr(models, "list_models", levels)
    assert main(["--verbose", "models", "--imgsz", "64"]) == 0
    assert seen and seen[0][0] == logging.INFO and seen[0][1] >= logging.WARNING
    assert log.level == logging.NOTSET  # and back after it


def test_a_library_warning_is_said_on_stderr_as_a_warning(trained, data_yaml, capsys):
    # without --verbose, Python's last-resort handler printed a library warning as its bare
    # message: nothing told it from a result line, and -v changed its format
    import logging

    root = logging.getLogger()
    before, level = list(root.handlers), logging.getLogger("yoloslim").level
    argv = ["val", "--model", str(trained / "best.pt"), "--data", str(data_yaml), "--conf", "0.5"]
    for verbose in ([], ["--verbose"]):
        assert main([*verbose, *argv]) == 0
        out, err = capsys.readouterr()
        assert "warning: conf=0.5: mAP counts only" in err and "conf=0.5: mAP" not in out
        assert ("INFO yoloslim" in err) == bool(verbose)
        # the command's handler and level go with it: a program that called main() keeps
        # its own logging (its warnings were printed as yoloslim's, after the command)
        assert root.handlers == before
        assert logging.getLogger("yoloslim").level == level
    # such a program, with its own handler on the terminal: each warning printed once, by it
    import sys

    own = logging.StreamHandler(sys.stderr)
    own.setFormatter(logging.Formatter("PROGRAM %(message)s"))
    root.addHandler(own)
    try:
        assert main(argv) == 0
    finally:
        root.removeHandler(own)
    err = capsys.readouterr().err
    assert err.count("conf=0.5: mAP counts only") == 1 and "PROGRAM conf=0.5" in err


def test_a_table_too_wide_for_the_terminal_is_turned_not_cut():
    # an 80-column terminal cut the bench table's numbers to "0.…"
    from rich.console import Console
    from rich.table import Table

    from yoloslim.cli.common import print_table

    cols = ["Model", "Params (M)", "FLOPs (G)", "mAP (%)", "mAP50 (%)", "Latency (ms)",
            "p90 (ms)", "FPS", "Memory (MiB)", "Size (MiB)", "x speed", "x size"]  # fmt: skip
    rows = [
        ["model.onnx", "1.61", "0.983", "1.5", "4.0", "3.61", "6.02", "277.1", "49", "6.19",
         "1.00", "1.00"],
        ["int8_openvino/model.xml", "1.61", "0.983", "1.5", "3.7", "3.89", "7.10", "257.3", "71",
         "6.35", "0.93", "1.03"],
    ]  # fmt: skip

    def shown(width):
        table = Table(title="bench")
        for c in cols:
            table.add_column(c)
        for r in rows:
            table.add_row(*r)
        out = Console(width=width, record=True, force_terminal=False)
        print_table(table, out)
        return out.export_text()

    narrow, wide = shown(80), shown(200)
    assert "…" not in narrow and max(len(x) for x in narrow.splitlines()) <= 80
    lines = narrow.splitlines()
    for c, a, b in zip(cols, *rows, strict=True):  # one line per column: name, then each row
        assert any(c in x and a in x and b in x for x in lines), c
    assert any(all(c in x for c in ("Model", "Params (M)", "x size")) for x in wide.splitlines())


def test_predict_caps_detections_with_max_det(trained, data_yaml, tmp_path):
    images = data_yaml.parent / "images" / "val"
    save = tmp_path / "cap"
    argv = ["predict", str(images), "--model", str(trained / "best.pt"), "--conf", "0.001"]
    assert main([*argv, "--save", str(save), "--max-det", "2", "--device", "cpu"]) == 0
    records = json.loads((save / "detections.json").read_text())
    assert records and max(len(r["detections"]) for r in records) == 2
    assert main([*argv, "--max-det", "0"]) == 2


def test_a_json_report_never_replaces_a_file_the_run_writes_or_reads(
    trained, data_yaml, tmp_path, capsys, monkeypatch
):
    # --json OUT/best.pt turned the checkpoint into JSON; --json naming a JSON data config
    # replaced the command's own input
    out = tmp_path / "jt"
    argv = ["export", "--model", str(trained / "best.pt"), "--format", "onnx", "--out", str(out)]
    assert main([*argv, "--json", str(out / "model.onnx")]) == 2
    assert ".onnx is a kind of file yoloslim runs write or read" in capsys.readouterr().err
    assert not out.exists()
    assert main(["compress", "--data", "d.yaml", "--recipe", "r", "--json", "x/inputs.json"]) == 2
    assert "inputs.json is the name of a compress run's record" in capsys.readouterr().err
    cfg = tmp_path / "data.json"
    cfg.write_text(
        json.dumps(yaml.safe_load(data_yaml.read_text()) | {"path": str(data_yaml.parent)})
    )
    before = cfg.read_text()
    assert main(["data", "check", str(cfg), "--json", str(cfg)]) == 2
    assert "is the command's input (--data" in capsys.readouterr().err
    # given before the input on the command line: still caught before any work
    import yoloslim.eval.val as val_mod

    def ran(*a, **kw):
        raise AssertionError("the work ran before the --json clash was found")

    monkeypatch.setattr(val_mod, "validate", ran)
    ck = ["val", "--json", str(cfg), "--model", str(trained / "best.pt"), "--data", str(cfg)]
    assert main(ck) == 2
    assert "is the command's input (--data)" in capsys.readouterr().err
    assert cfg.read_text() == before
    # a bench report (bench --report's; a budget run keeps its only one there): compress
    # --resume reads it back, so no other command's report replaces it; bench's own does
    bench = tmp_path / "b" / "report.json"
    bench.parent.mkdir()
    bench.write_text('{"rows": []}')
    assert main(["models", "--json", str(bench)]) == 2
    assert "is a bench report, which compress --resume reads back" in capsys.readouterr().err
    assert main(["compress", "--data", "d.yaml", "--recipe", "r", "--json", "x/report.json"]) == 2
    assert "report.json is the name of a bench report" in capsys.readouterr().err
    assert bench.read_text() == '{"rows": []}'
    from yoloslim.cli.common import _kept_json

    assert _kept_json(bench, "bench") is None
    # --json naming the --out folder still to be made: the whole run, then IsADirectoryError
    assert main([*argv, "--json", f"{out}/../jt"]) == 2
    assert "is the --out folder; name a .json file" in capsys.readouterr().err
    assert not out.exists()


def test_predict_replaces_only_images_it_drew_and_one_run_at_a_time(
    trained, data_yaml, tmp_path, capsys
):
    from PIL import Image

    from yoloslim.fileio import folder_lock

    src = tmp_path / "src"
    src.mkdir()
    Image.open(next((data_yaml.parent / "images" / "val").iterdir())).save(src / "img0.png")
    save = tmp_path / "photos"
    save.mkdir()
    Image.new("RGB", (8, 8), "red").save(save / "img0.jpg")  # the user's own photo
    photo = (save / "img0.jpg").read_bytes()
    argv = ["predict", str(src), "--model", str(trained / "best.pt"), "--save", str(save)]
    assert main(argv) == 2  # it was replaced by the drawing of img0.png
    err = capsys.readouterr().err
    assert "a drawn image would replace" in err and "which predict did not draw" in err
    assert (save / "img0.jpg").read_bytes() == photo
    (save / "img0.jpg").unlink()
    assert main(argv) == 0 and main(argv) == 0  # its own drawing is replaced
    with folder_lock(save, "predict"):  # two predicts into one --save: one detections.json
        assert main(argv) == 2
    assert "another yoloslim run is writing" in capsys.readouterr().err
    inside = [*argv[:-1], str(src / "drawn")]
    assert main(inside) == 0
    assert "its subfolders are read too" in " ".join(capsys.readouterr().err.split())
    # --save SOURCE: the next predict of it read the drawn images as inputs
    assert main([*argv[:-1], str(src), "--threads", "1"]) == 2
    assert "is the source folder: the drawn images would join" in capsys.readouterr().err
    assert sorted(p.name for p in src.iterdir()) == ["drawn", "img0.png"]
    # a file without the comment at a name the detections.json lists (a photo of the user's
    # copied in, or a drawing of an old version): refused too (the photo was replaced)
    Image.new("RGB", (8, 8), "blue").save(save / "img0.jpg")  # no comment
    kept = (save / "img0.jpg").read_bytes()
    assert main(argv) == 2 and (save / "img0.jpg").read_bytes() == kept
    assert "which predict did not draw" in capsys.readouterr().err
    # a run refused is not said to replace the earlier records (audit44 eval L-2: the
    # warning came before the refusal, and nothing was replaced)
    other = tmp_path / "src2"
    other.mkdir()
    Image.open(src / "img0.png").save(other / "img1.png")
    Image.new("RGB", (8, 8), "green").save(save / "img1.jpg")  # the user's
    assert main([argv[0], str(other), *argv[2:]]) == 2
    err = capsys.readouterr().err
    assert "which predict did not draw" in err and "replaces it" not in err


def test_predict_save_txt_writes_yolo_labels_of_its_detections(
    trained, data_yaml, tmp_path, capsys
):
    from PIL import Image

    from yoloslim.data.formats import _parse_yolo_labels

    images = data_yaml.parent / "images" / "val"
    save = tmp_path / "pseudo"
    argv = ["predict", str(images), "--model", str(trained / "best.pt"), "--save", str(save)]
    argv += ["--save-txt", "--conf", "0.001", "--max-det", "5"]
    assert main(argv) == 0
    records = json.loads((save / "detections.json").read_text())
    assert len(records) == len(list(images.iterdir())) == len(list(save.glob("labels/*.txt")))
    assert sum(len(r["detections"]) for r in records) > 0  # something to compare
    for r in records:
        w, h = Image.open(r["image"]).size
        boxes, classes = _parse_yolo_labels(save / r["labels"], nc=2, width=w, height=h)
        lines = (save / r["labels"]).read_text().splitlines()
        first = [i for i, x in enumerate(lines) if x not in lines[:i]]  # a repeat is read once
        assert len(lines) == len(r["detections"])
        want = np.array([d["box"] for d in r["detections"]]).reshape(-1, 4)[first]
        want = want.clip(0, [w, h, w, h])
        np.testing.assert_allclose(boxes, want, atol=0.02)  # the JSON's boxes are rounded
        assert classes.tolist() == [r["detections"][i]["class_id"] for i in first]
    assert main(argv) == 0  # its own label files are replaced
    # also after a run without --save-txt, whose detections.json names none of them
    assert main([a for a in argv if a != "--save-txt"]) == 0
    assert main(argv) == 0
    # a run killed before its end (SIGKILL: no clean-up, no detections.json written) left
    # label files the ledger already names
    from yoloslim.cli import predict_cmd

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(predict_cmd, "_write_detections", lambda *a: None)
        mp.setattr(predict_cmd, "_compact_ledger", lambda *a: None)
        assert main([*argv[:5], str(tmp_path / "killed"), *argv[6:]]) == 0
    assert not (tmp_path / "killed" / "detections.json").exists()
    ledger = tmp_path / "killed" / "labels" / "predict_labels.jsonl"
    with ledger.open("a") as f:
        f.write('{"label": "labels/x.t')  # a line the kill cut short
    with pytest.MonkeyPatch.context() as mp:  # and the next run is killed too
        mp.setattr(predict_cmd, "_write_detections", lambda *a: None)
        mp.setattr(predict_cmd, "_compact_ledger", lambda *a: None)
        assert main([*argv[:5], str(tmp_path / "killed"), *argv[6:]]) == 0
    text = ledger.read_text()
    assert '{"label": "labels/x.t\n' in text and "\n\n" not in text  # entries start a line
    assert main([*argv[:5], str(tmp_path / "killed"), *argv[6:]]) == 0
    # but not one corrected by hand since
    edited = save / records[0]["labels"]
    edited.write_text("1 0.5 0.5 0.1 0.1\n")
    assert main(argv) == 2
    assert "was edited since predict wrote it" in capsys.readouterr().err
    assert edited.read_text() == "1 0.5 0.5 0.1 0.1\n"
    # a label file predict did not write is not replaced (labels/ is where a dataset keeps its)
    other = tmp_path / "dataset"
    (other / "labels").mkdir(parents=True)
    mine = other / "labels" / f"{next(images.iterdir()).stem}.txt"
    mine.write_text("0 0.5 0.5 0.2 0.2\n")
    assert main([*argv[:5], str(other), *argv[6:]]) == 2
    assert "a label file would replace" in capsys.readouterr().err
    assert mine.read_text() == "0 0.5 0.5 0.2 0.2\n"
    assert main(argv[:4] + ["--save-txt"]) == 2  # no --save
    assert "needs --save DIR" in capsys.readouterr().err
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"")
    assert main(["predict", str(clip), *argv[2:]]) == 2
    assert "is a video" in capsys.readouterr().err


def test_data_check_names_a_few_skipped_images_and_counts_the_rest(tmp_path, capsys):
    data = tmp_path / "d"
    assert main(["data", "synth", str(data), "--images", "30", "--imgsz", "32"]) == 0
    broken = sorted((data / "images" / "train").iterdir())[:13]
    for f in broken:
        f.write_bytes(b"not an image")
    report = tmp_path / "check.json"
    assert main(["data", "check", str(data / "data.yaml"), "--json", str(report)]) == 0
    out = capsys.readouterr().out
    assert out.count("skipped (train):") == 10
    assert "and 3 more skipped (train); --json lists them all" in out
    assert len(json.loads(report.read_text())["splits"]["train"]["skipped_images"]) == 13


def test_data_check_decode_names_an_image_whose_pixel_data_is_corrupt(tmp_path, capsys):
    import io
    import struct
    import zlib

    from PIL import Image

    data = tmp_path / "d"
    assert main(["data", "synth", str(data), "--images", "6", "--imgsz", "32"]) == 0
    victim = sorted((data / "images" / "train").iterdir())[0]
    buf = io.BytesIO()
    Image.open(victim).save(buf, "PNG")
    png = bytearray(buf.getvalue())  # its pixel data zeroed, the checksum made right again
    at = png.find(b"IDAT")
    size = struct.unpack(">I", png[at - 4 : at])[0]
    pixels = bytearray(png[at + 4 : at + 4 + size])
    pixels[10:40] = bytes(30)
    png[at + 4 : at + 4 + size] = pixels
    png[at + 4 + size : at + 8 + size] = struct.pack(">I", zlib.crc32(b"IDAT" + bytes(pixels)))
    victim.unlink()
    victim.with_suffix(".png").write_bytes(bytes(png))
    report = tmp_path / "check.json"
    argv = ["data", "check", str(data / "data.yaml"), "--json", str(report)]
    assert main(argv) == 0
    assert json.loads(report.read_text())["splits"]["train"]["skipped_images"] == []  # headers
    assert main([*argv, "--decode"]) == 0
    train = json.loads(report.read_text())["splits"]["train"]
    assert train["undecodable_images"] == [str(victim.with_suffix(".png"))]
    assert train["skipped_images"] == []  # training does not skip it: it stops on it


def _flat(text: str) -> str:
    """``text`` without whitespace: a table's title wrapped or folded over lines, whole again."""
    return "".join(text.split())


def test_data_check_prints_class_names_and_paths_as_they_are(tmp_path, capsys):
    # rich read "[v2]", "[old]" and "[bold]" in the user's strings as markup: the title lost
    # "[v2]", "car [old]" printed as "car", "[bold]truck" as a bold "truck"
    data = tmp_path / "set [v2]"
    argv = ["data", "synth", str(data), "--images", "10", "--imgsz", "32", "--classes", "2"]
    assert main(argv) == 0
    assert f"wrote {data / 'data.yaml'}" in " ".join(capsys.readouterr().out.split())
    cfg = yaml.safe_load((data / "data.yaml").read_text())
    cfg["names"] = ["car [old]", "[bold]truck"]
    (data / "data.yaml").write_text(yaml.safe_dump(cfg))
    broken = data / "images" / "train" / "IMG [edited].jpg"
    broken.write_bytes(b"not an image")
    report = tmp_path / "check.json"
    assert main(["data", "check", str(data / "data.yaml"), "--json", str(report)]) == 0
    out = capsys.readouterr().out
    assert _flat(f"{data / 'data.yaml'} (yolo)") in _flat(out)
    rows = {line.split("│")[1].strip() for line in out.splitlines() if line.startswith("│")}
    assert {"car [old]", "[bold]truck"} <= rows
    assert f"skipped (train): {broken}" in " ".join(out.split())
    assert json.loads(report.read_text())["names"] == ["car [old]", "[bold]truck"]


def test_data_check_a_class_name_rich_cannot_read_as_markup_is_no_crash(tmp_path, capsys):
    # "[/x]" closes no tag: rich raised a MarkupError (a traceback, exit 1) and --json, written
    # after the tables, was lost
    data = tmp_path / "d"
    assert (
        main(["data", "synth", str(data), "--images", "6", "--imgsz", "32", "--classes", "2"]) == 0
    )
    cfg = yaml.safe_load((data / "data.yaml").read_text())
    cfg["names"] = ["car [old]", "[/x]"]
    (data / "data.yaml").write_text(yaml.safe_dump(cfg))
    report = tmp_path / "check.json"
    assert main(["data", "check", str(data / "data.yaml"), "--json", str(report)]) == 0
    out = capsys.readouterr().out
    rows = [line.split("│")[1].strip() for line in out.splitlines() if line.startswith("│")]
    assert "[/x]" in rows and "car [old]" in rows
    assert json.loads(report.read_text())["names"] == ["car [old]", "[/x]"]


def test_val_prints_class_names_and_paths_as_they_are(trained, tmp_path, capsys):
    from yoloslim.data.testing import fake_images, write_yolo

    imgs = fake_images(3, width=64, height=48, nc=2, seed=2)
    data = write_yolo(
        tmp_path / "set [v2]", {"train": imgs[:1], "val": imgs}, ["car [old]", "[/x]"]
    )
    model = trained / "best.pt"
    p = tmp_path / "val.json"
    assert main(["val", "--model", str(model), "--data", str(data), "--json", str(p)]) == 0
    assert set(json.loads(p.read_text())["per_class"]) == {"car [old]", "[/x]"}
    out = capsys.readouterr().out
    assert _flat(f"{model} on {data}") in _flat(out)
    rows = [line.split("│")[1].strip() for line in out.splitlines() if line.startswith("│")]
    assert rows[:2] == ["car [old]", "[/x]"]


def test_info_and_export_print_the_users_names_as_they_are(trained, tmp_path, capsys):
    ck = tmp_path / "best [v2].pt"
    shutil.copy(trained / "best.pt", ck)
    assert main(["info", str(ck)]) == 0
    assert _flat(str(ck)) in _flat(capsys.readouterr().out)
    # a format is shown while the export starts, before it is checked: it stopped there
    argv = ["export", "--model", str(ck), "--format", "[/x]", "--out", str(tmp_path / "e")]
    assert main(argv) == 2
    assert "[/x]" in capsys.readouterr().err


def test_info_quotes_class_names_that_a_comma_list_cannot_show(tmp_path, capsys):
    # "sq,uare" read as two names and an empty one was not seen (audit49 export F2)
    from yoloslim.models import build_model
    from yoloslim.models.checkpoint import save_checkpoint

    names = ["cir cle", "sq,uare", "", "tri\tangle", "\u200b"]
    ck = save_checkpoint(tmp_path / "odd.pt", build_model("damo-nano", names=names), imgsz=64)
    assert main(["info", str(ck)]) == 0
    assert _flat('5: "cir cle", "sq,uare", "", "tri\\tangle", "\\u200b"') in _flat(
        capsys.readouterr().out
    )
    ck = save_checkpoint(
        tmp_path / "plain.pt", build_model("damo-nano", names=["a b", "c"]), imgsz=64
    )
    assert main(["info", str(ck)]) == 0
    assert _flat("2: a b, c") in _flat(capsys.readouterr().out)


def test_info_rows_of_a_checkpoint_without_map50_and_an_ir_that_asks_for_bf16(trained, tmp_path):
    """A checkpoint's meta is free-form: an mAP without mAP50 was a TypeError traceback
    (audit47 conc F2). An IR whose rt_info asks the CPU for bf16 was shown as plain fp32
    (the hint was in --json only: conc F3)."""
    from yoloslim.cli.info_cmd import _rows

    d = yoloslim.describe(trained / "best.pt")
    assert dict(_rows(d))["mAP50-95"].endswith(f"(mAP50 {100 * d['map50']:.1f})")
    d["map50"] = None
    assert dict(_rows(d))["mAP50-95"] == f"{100 * d['map']:.1f}"
    res = yoloslim.export(trained / "best.pt", tmp_path, formats="openvino", verify=False)
    ir = yoloslim.describe(res.artifacts["openvino"])
    assert ir["precision_hint"] is None and dict(_rows(ir))["precision"] == "fp32"
    ir["precision_hint"] = "bf16"  # as quantize --float-variants bf16 writes it
    assert dict(_rows(ir))["precision"] == "fp32 (asks for bf16 compute)"
    ir["precision_hint"] = None
    assert dict(_rows(ir))["precision"] == "fp32"


def test_an_interrupted_run_names_a_folder_with_brackets_as_it_is(tmp_path, monkeypatch, capsys):
    import yoloslim.pipeline

    out = tmp_path / "run [v2]"

    def stopped(*args, **kwargs):
        out.mkdir()
        (out / "recipe.yaml").write_text("stages: []\n")
        raise KeyboardInterrupt

    monkeypatch.setattr(yoloslim.pipeline, "run_recipe", stopped)
    monkeypatch.setattr(sys, "argv", ["yoloslim", "compress", "--out", str(out)])
    args = ["compress", "--data", "d.yaml", "--recipe", "r.yaml", "--out", str(out)]
    assert main(args) == 130
    err = " ".join(capsys.readouterr().err.split())
    assert f"continue with `yoloslim compress --out '{out}' --resume`" in err


def test_a_leading_tilde_is_expanded_in_predict_source_and_resume(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "run").mkdir()
    assert main(["train", "--resume", "~/run"]) == 2
    assert f"{tmp_path / 'run' / 'last.pt'} does not exist" in capsys.readouterr().err
    assert main(["distill", "--resume", "~/run"]) == 2
    assert f"{tmp_path / 'run' / 'last.pt'} does not exist" in capsys.readouterr().err
    assert main(["predict", "~/none.jpg", "--model", str(tmp_path / "m.pt")]) == 2
    assert f"{tmp_path / 'none.jpg'}: no such image, folder or video" in capsys.readouterr().err


def test_a_new_run_stopped_before_its_own_last_pt_names_no_earlier_run_to_resume(tmp_path, capsys):
    """train --exist-ok over a run, stopped before it wrote last.pt, said `train --resume
    DIR`: that resumes the earlier run the user asked to replace."""
    import typer

    from yoloslim.cli.common import interrupt_hint
    from yoloslim.fileio import atomic_write_text

    marker = tmp_path / "last.pt"
    marker.write_text("the earlier run's")
    with pytest.raises(typer.Exit) as stopped, interrupt_hint(marker, "again", new_run=True):
        raise KeyboardInterrupt
    assert stopped.value.exit_code == 130
    err = capsys.readouterr().err
    assert (
        "before this run wrote its last.pt; nothing of it to resume" in err and "again" not in err
    )
    with pytest.raises(typer.Exit), interrupt_hint(marker, "again", new_run=True):
        atomic_write_text(marker, "this run's")  # written by this run: its own to resume
        raise KeyboardInterrupt
    assert "interrupted; continue with `again`" in capsys.readouterr().err
    with pytest.raises(typer.Exit), interrupt_hint(marker, "again"):  # a resume: the run's own
        raise KeyboardInterrupt
    assert "interrupted; continue with `again`" in capsys.readouterr().err


def test_a_full_disk_says_how_the_run_goes_on(tmp_path, capsys):
    # audit44 resume F1: a disk filled during training said only the OSError; the last.pt
    # of the epoch before was whole, and --resume went on bitwise once there was room
    import errno

    import typer

    from yoloslim.cli.common import interrupt_hint

    marker = tmp_path / "last.pt"
    full = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / ".last.pt.x.tmp"))
    with pytest.raises(typer.Exit) as stopped, interrupt_hint(marker, "again"):
        raise full
    assert stopped.value.exit_code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert err.startswith("error: OSError: ")
    assert "No space left on device; the run stopped before last.pt was written" in err
    marker.write_text("an epoch's")
    with pytest.raises(typer.Exit), interrupt_hint(marker, "again"):
        raise full
    err = " ".join(capsys.readouterr().err.split())
    assert "No space left on device; the run stopped; continue with `again`" in err
    with pytest.raises(OSError), interrupt_hint(marker, "again"):  # not a refused write
        raise OSError(errno.EIO, "Input/output error")


def test_info_shows_no_kernel_for_a_conv_stage_which_does_not_use_one(tmp_path, capsys):
    # a conv stem's kernel: 7 was shown as "k7", though it builds a 3x3 conv as any other
    import yaml

    from yoloslim.models.registry import get_arch

    arch = get_arch("damo-nano", 2)
    arch["backbone"]["stages"][0]["kernel"] = 7
    arch["backbone"]["stages"][1]["kernel"] = 5  # a csp stage's is its blocks'
    path = tmp_path / "stem.yaml"
    path.write_text(yaml.safe_dump(arch))
    assert main(["info", str(path)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "conv 16 ch x0; csp 24 ch x1 k5 r0.5;" in out


def test_info_describes_the_readable_files_and_names_the_others(tmp_path, capsys):
    import yaml

    from yoloslim.models.registry import get_arch

    good = tmp_path / "arch.yaml"
    good.write_text(yaml.safe_dump(get_arch("damo-nano", 2)))
    bad = tmp_path / "garbage.onnx"
    bad.write_bytes(b"not a graph")
    report = tmp_path / "info.json"
    assert main(["info", str(bad), str(good), "--json", str(report)]) == 2
    out, err = capsys.readouterr()
    assert "arch.yaml" in out and "architecture" in out  # the good one is still shown
    err = " ".join(err.split())
    assert "1 of 2 files not described (no --json written): " in err and "garbage.onnx" in err
    assert not report.exists()
    assert main(["info", str(bad)]) == 2  # one file: its own error, as before
    assert "files not described" not in capsys.readouterr().err


def test_predict_warns_of_a_save_folder_that_is_a_dataset_split(tmp_path, capsys):
    # --save DATA/images/train beside DATA/labels/train: the drawings joined the train split
    from yoloslim.cli.predict_cmd import _a_dataset_split, _warn_inside_source

    data = tmp_path / "d"
    for split in ("train", "val"):
        (data / "images" / split).mkdir(parents=True)
        (data / "labels" / split).mkdir(parents=True)
    (tmp_path / "rf" / "train" / "images").mkdir(parents=True)
    (tmp_path / "rf" / "train" / "labels").mkdir()
    assert _a_dataset_split(data / "images" / "train")
    assert _a_dataset_split(data / "images" / "train" / "drawn")  # inside one: read too
    assert _a_dataset_split(tmp_path / "rf" / "train" / "images")
    assert not _a_dataset_split(tmp_path / "out") and not _a_dataset_split(data / "labels")
    _warn_inside_source(data / "images" / "val", data / "images" / "train")
    assert "looks like a dataset's image folder" in " ".join(capsys.readouterr().err.split())
    _warn_inside_source(data / "images" / "val", tmp_path / "out")
    assert capsys.readouterr().err == ""


def test_predict_into_a_save_of_other_images_says_their_records_go(
    trained, data_yaml, tmp_path, capsys
):
    # the first run's records were dropped without a word; its drawings and labels stayed
    model = ["--model", str(trained / "best.pt"), "--save", str(tmp_path / "s"), "--save-txt"]
    val, train = (data_yaml.parent / "images" / k for k in ("val", "train"))
    assert main(["predict", str(val), *model]) == 0
    assert main(["predict", str(val), *model]) == 0  # the same images: nothing to say
    assert "does not predict" not in capsys.readouterr().err
    assert main(["predict", str(train), *model]) == 0
    n = len(list(val.iterdir()))
    said = " ".join(capsys.readouterr().err.split())
    assert f"its detections.json holds {n} record(s) of images this run does not predict" in said
    assert "their drawings and labels stay in the folder without a record" in said


def test_predict_into_a_save_says_which_earlier_drawings_it_replaces(
    trained, data_yaml, tmp_path, capsys
):
    # x/a.jpg, then y/a.jpg: the warning said x/a.jpg's drawing stayed; y/a.jpg's replaced it
    # (audit52 predict F1)
    model = ["--model", str(trained / "best.pt"), "--save", str(tmp_path / "s"), "--save-txt"]
    val = data_yaml.parent / "images" / "val"
    images = sorted(val.iterdir())
    (tmp_path / "y").mkdir()
    shutil.copy(images[0], tmp_path / "y" / images[0].name)
    assert main(["predict", str(val), *model]) == 0
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "y"), *model]) == 0
    said = " ".join(capsys.readouterr().err.split())
    assert f"holds {len(images)} record(s) of images this run does not predict" in said
    assert len(images) > 1 and "the drawings and labels of 1 of them are replaced by" in said
    assert "the others' stay in the folder without a record" in said
    shutil.copytree(val, tmp_path / "z")  # every earlier record's drawing replaced
    assert main(["predict", str(tmp_path / "z"), *model]) == 0
    said = " ".join(capsys.readouterr().err.split())
    assert "holds 1 record(s) of images this run does not predict" in said
    assert "their drawings and labels are replaced by this run's of the same names" in said
    shutil.copytree(val, tmp_path / "w")  # without --save-txt: the labels stay (review F2)
    assert main(["predict", str(tmp_path / "w"), *model[:-1]]) == 0
    said = " ".join(capsys.readouterr().err.split())
    assert "are replaced by this run's of the same names (the earlier run's labels stay" in said


def test_predict_says_a_videos_records_go_when_images_of_its_name_come(tmp_path, capsys):
    # clip.mp4's records were dropped without a word when this run's clip.jpg shared its
    # stem (review F9); the same video from another folder is not another
    from yoloslim.cli.predict_cmd import _warn_other_records

    save = tmp_path / "s"
    earlier = [{"video": "/x/clip.mp4", "frame": 0, "time": 0.0, "detections": []}]
    image = tmp_path / "clip.jpg"
    _warn_other_records(save, earlier, [image], {image: save / "clip.jpg"})
    said = " ".join(capsys.readouterr().err.split())
    assert "holds 1 record(s) of frames of a video this run does not predict" in said
    video = tmp_path / "clip.mp4"
    _warn_other_records(save, earlier, [video], {video: save / "clip.mp4"})
    assert "does not predict" not in capsys.readouterr().err


def test_predict_of_a_url_says_yoloslim_reads_local_files_only(tmp_path, capsys):
    # the message was "https:/example.com/a.jpg: no such image" (Path() ate a slash)
    assert main(["predict", "https://example.com/a.jpg", "--model", str(tmp_path / "m.pt")]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "https://example.com/a.jpg: a URL; yoloslim reads local files only" in err


def test_predict_keeps_standard_output_for_its_results(trained, data_yaml, tmp_path, capsys):
    # its bar and the skipped-images warning went to stdout: `predict DIR > out.txt` held them
    src = tmp_path / "src"
    shutil.copytree(data_yaml.parent / "images" / "val", src)
    (src / "broken.png").write_bytes(b"not an image")
    assert main(["predict", str(src), "--model", str(trained / "best.pt")]) == 0
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert lines and all(re.fullmatch(r"\S+: \d+ detections?", x) for x in lines), lines
    assert "skipped 1 unreadable image(s)" in err


def test_prune_threads_hold_while_it_runs_and_are_given_back(
    trained, data_yaml, tmp_path, monkeypatch
):
    # prune had no --threads, though it evaluates and fine-tunes in this process
    import torch

    import yoloslim.compress.prune as prune_mod

    seen = []

    def run(*args, **kwargs):
        seen.append(torch.get_num_threads())
        raise KeyboardInterrupt  # the rest is prune's own tests'

    monkeypatch.setattr(prune_mod, "prune", run)
    before = torch.get_num_threads()
    argv = ["prune", "--model", str(trained / "best.pt"), "--data", str(data_yaml)]
    assert main([*argv, "--out", str(tmp_path / "p"), "--threads", "1"]) == 130
    assert seen == [1] and torch.get_num_threads() == before


def test_h_is_help_and_misnamed_paths_say_what_they_are(data_yaml, trained, tmp_path, capsys):
    # audit24 cli L3, L7: "-h" was "No such option"; a folder given as --config "does not
    # exist"; a checkpoint's name without its suffix was an "unknown artifact type ''"
    assert main(["val", "-h"]) == 0 and "--model" in capsys.readouterr().out
    assert main(["data", "check", "-h"]) == 0
    capsys.readouterr()
    folder = tmp_path / "cfg"
    folder.mkdir()
    argv = [
        "train",
        "--data",
        str(data_yaml),
        "--config",
        str(folder),
        "--out",
        str(tmp_path / "r"),
    ]
    assert main(argv) == 2
    assert "cfg: is a folder; a config file (YAML) is expected" in capsys.readouterr().err
    stem = trained / "best"
    assert main(["val", "--model", str(stem), "--data", str(data_yaml)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"{stem}: no such file; did you mean {stem}.pt?" in err, err


def test_export_table_names_the_runtimes_the_nms_graph_was_checked_in(trained, tmp_path, capsys):
    # audit24 cli L10: the onnx_nms row showed runtime "-", though it is checked in both
    argv = ["export", "--model", str(trained / "best.pt"), "--format", "onnx", "--nms"]
    assert main([*argv, "--out", str(tmp_path / "e")]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "openvino" in out  # only the NMS graph's row can name it: onnx was the one format


def test_any_of_our_errors_names_the_option_not_the_python_name(capsys):
    # audit24 cli L2: "nc=0: ..." (a ModelError) for `models --nc 0`; only ConfigErrors said
    # the option
    assert main(["models", "--nc", "0"]) == 2
    assert "ModelError: --nc 0: a detector needs" in capsys.readouterr().err


def test_a_lost_torchrun_peer_is_one_line_naming_the_resume(tmp_path, monkeypatch, capsys):
    # audit28 ddp M2: a killed worker left the other with gloo's 60-line traceback and no word
    # of how to go on
    import typer

    from yoloslim.cli.common import interrupt_hint

    (tmp_path / "last.pt").write_bytes(b"x")
    monkeypatch.setenv("WORLD_SIZE", "2")
    hint = interrupt_hint(tmp_path / "last.pt", "torchrun ... --resume run")
    with pytest.raises(typer.Exit) as e, hint:  # the gloo error of a collective whose peer died
        raise RuntimeError("[gloo/transport/tcp/pair.cc:537] Read error: Connection reset by peer")
    assert e.value.exit_code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "stopped: another process of this torchrun run ended; continue with `torchrun" in err
    # another gloo error (a fault of its own, not a peer gone) goes on as it is
    with pytest.raises(RuntimeError, match="size mismatch"), interrupt_hint(tmp_path / "x", "x"):
        raise RuntimeError("[gloo/gloo/allreduce.cc:42] size mismatch: 12 vs 10")
    monkeypatch.setenv("WORLD_SIZE", "1")  # one process: such an error is no peer's
    with pytest.raises(RuntimeError), interrupt_hint(tmp_path / "last.pt", "x"):
        raise RuntimeError("Connection reset by peer")


def test_a_refused_argument_is_said_once_under_torchrun(monkeypatch, capsys):
    # audit28 ddp L1: every process printed the same error
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert main(["models", "--nc", "0"]) == 2
    assert capsys.readouterr().err == ""  # rank 0 says it
    monkeypatch.setenv("RANK", "0")
    assert main(["models", "--nc", "0"]) == 2
    assert "--nc 0" in capsys.readouterr().err


def test_predict_of_an_ir_says_when_openvino_computes_it_in_bf16(
    trained, data_yaml, tmp_path, capsys
):
    # audit24 predict LOW-6: an IR at the plugin's default (bf16 on AVX512-BF16/AMX CPUs) gave
    # other detections than the checkpoint near the threshold, and only -v said it computed in bf16
    from yoloslim.runtime.backends import load_backend

    argv = ["export", "--model", str(trained / "best.pt"), "--format", "openvino"]
    assert main([*argv, "--out", str(tmp_path / "e")]) == 0
    xml = tmp_path / "e" / "model_openvino" / "model.xml"
    image = sorted((data_yaml.parent / "images" / "val").iterdir())[0]
    capsys.readouterr()
    assert main(["predict", str(image), "--model", str(xml)]) == 0
    reduced = any(p in str(load_backend(xml).precision) for p in ("bf16", "fp16"))
    assert ("--ov-precision f32 gives the checkpoint's" in capsys.readouterr().err) == reduced
    assert main(["predict", str(image), "--model", str(xml), "--ov-precision", "f32"]) == 0
    assert "--ov-precision f32 gives" not in capsys.readouterr().err


def test_a_finished_command_ignores_a_stop_during_shutdown(monkeypatch, capsys):
    # audit30 cli L1: a Ctrl-C in the seconds the interpreter takes to exit after the results
    # were written turned the exit code into 130; review2 M2: main() (which a program may
    # call, then go on) leaves the signals alone, the yoloslim command's run() ignores them
    from yoloslim.cli.main import run

    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr("sys.argv", ["yoloslim", "models", "--nc", "0"])  # quick: refused
    assert main() == 2
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    try:
        with pytest.raises(SystemExit) as e:
            run()
        assert e.value.code == 2
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before[0])
        signal.signal(signal.SIGTERM, before[1])
    assert "--nc" in capsys.readouterr().err


def test_the_demo_says_its_warnings_as_the_commands_do(monkeypatch, capsys):
    # audit31 fresh M1: make demo printed library warnings as bare lines among its progress
    import logging

    from yoloslim import demo

    monkeypatch.setattr(
        demo, "_run", lambda args: logging.getLogger("yoloslim.x").warning("a note") or 0
    )
    assert demo.main(["--images", "2"]) == 0
    assert "warning: a note" in capsys.readouterr().err
    assert not [h for h in logging.getLogger().handlers if type(h).__name__ == "_Stderr"]


def test_the_command_line_reads_images_above_pillows_limit_and_refuses_above_its_own(
    trained, tmp_path, monkeypatch, capsys
):
    """Pillow refuses an image above 2x its MAX_IMAGE_PIXELS and warns in its own form above
    it: a 14000x13000 drone photo was refused (audit49 data F1) and a 100 Mpx one printed a
    raw DecompressionBombWarning (F2). Both limits are scaled down here, as the ratio holds."""
    import warnings

    from PIL import Image

    import yoloslim.cli.common as common

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow's: refused above 200
    monkeypatch.setattr(common, "IMAGE_PIXELS", 1000)
    src = tmp_path / "imgs"
    src.mkdir()
    Image.new("RGB", (30, 30), "white").save(src / "big.png")  # 900 px: Pillow refused it
    argv = ["predict", str(src / "big.png"), "--model", str(trained / "best.pt")]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning of any kind
        assert main([*argv, "--json", str(tmp_path / "a.json")]) == 0
    assert json.loads((tmp_path / "a.json").read_text())["results"][0]["image"].endswith("big.png")
    capsys.readouterr()
    Image.new("RGB", (40, 40), "white").save(src / "huge.png")  # 1600 px: above ours
    assert main(["predict", str(src / "huge.png"), "--model", str(trained / "best.pt")]) == 2
    err = capsys.readouterr().err
    assert "huge.png" in err and "exceeds limit of 1000 pixels" in err, err
    assert Image.MAX_IMAGE_PIXELS == 100  # a program calling main() keeps its setting
    with pytest.raises(Image.DecompressionBombError):
        Image.open(src / "big.png")
