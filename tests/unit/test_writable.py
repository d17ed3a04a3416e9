"""The "not writable" checks, exercised whatever the uid.

A chmod'ed folder stays writable for root (the uid these tests often run as, in CI
containers too), so ``os.access`` is patched to say no for one path, as it does for a
read-only folder and an ordinary user; every other path gets the real answer.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import typer

from yoloslim.errors import ConfigError, ExportError


@pytest.fixture
def deny(monkeypatch):
    """``deny(path)``: from now on ``os.access(path, W_OK...)`` is False."""
    real = os.access
    denied: set[Path] = set()

    def access(path, mode, *args, **kwargs):
        if mode & os.W_OK and Path(path).absolute() in denied:
            return False
        return real(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)  # the module every caller reads it from
    return lambda path: denied.add(Path(path).absolute())


@pytest.fixture
def locked(tmp_path, deny) -> Path:
    folder = tmp_path / "locked"
    folder.mkdir()
    deny(folder)
    assert not os.access(folder, os.W_OK | os.X_OK) and os.access(tmp_path, os.W_OK)
    return folder


def test_export_refuses_an_output_folder_it_may_not_write(locked):
    import yoloslim as ys

    model = ys.build_model("damo-nano", nc=2)
    with pytest.raises(ExportError, match=f"the output folder {locked} is not writable"):
        ys.export(model, locked, formats=["onnx"], imgsz=64, verify=False)
    assert list(locked.iterdir()) == []  # refused before anything was written


def test_nas_search_refuses_an_out_under_a_folder_it_may_not_write(locked):
    from yoloslim.nas import search
    from yoloslim.nas.budget import Budget

    out = locked / "run"  # to be made: its nearest existing folder is the one checked
    with pytest.raises(ConfigError, match=f"out={out}: {locked} is not writable"):
        search(budget=Budget(flops=1.0), out=out, iterations=1, population=2, init_repeats=1)
    assert list(locked.iterdir()) == []


def test_latency_cache_refuses_a_folder_it_may_not_write(locked):
    from yoloslim.nas.latency import LatencyCache, LatencySettings

    path = locked / "cache" / "latency.csv"
    with pytest.raises(ConfigError, match=f"cannot write it \\({locked} is not writable\\)"):
        LatencyCache(path, 64, LatencySettings())
    assert list(locked.iterdir()) == []


def test_cli_out_and_json_options_refuse_what_they_may_not_write(locked, tmp_path, deny, capsys):
    from yoloslim.cli.common import check_json_target, check_out_folder
    from yoloslim.cli.main import main

    with pytest.raises(typer.BadParameter, match=f"{locked} is not writable"):
        check_out_folder(locked / "new")
    with pytest.raises(typer.BadParameter, match=f"{locked} is not writable"):
        check_json_target(None, locked / "report.json")
    # an existing report file that may not be written, in a folder that may
    report = tmp_path / "report.json"
    report.write_text("{}")
    assert check_json_target(None, report) == report  # writable: accepted
    deny(report)
    with pytest.raises(typer.BadParameter, match=f"{report} is not writable"):
        check_json_target(None, report)
    # through the command line: a usage error (exit 2), before the checkpoint is read
    assert main(["export", "--model", str(tmp_path / "m.pt"), "--out", str(locked)]) == 2
    assert f"{locked} is not writable" in " ".join(capsys.readouterr().err.split())


@pytest.mark.parametrize(
    ("option", "argv"),
    [
        ("--out", ["export", "--model", "m.pt", "--out", "{long}"]),
        ("--out", ["export", "--model", "m.pt", "--out", "{long}/sub"]),
        ("--save", ["predict", "img.jpg", "--model", "m.onnx", "--save", "{long}"]),
        ("--json", ["info", "m.onnx", "--json", "{long}.json"]),
    ],
)
def test_a_name_too_long_for_the_file_system_is_a_usage_error(option, argv, tmp_path, capsys):
    from yoloslim.cli.main import main

    long = str(tmp_path / ("n" * 300))  # in a folder that exists: its stat raised ENAMETOOLONG
    assert main([a.format(long=long) for a in argv]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "Traceback" not in err and f"Invalid value for '{option}'" in err
    assert f"{long}" in err and ": File name too long; choose a shorter name" in err
    assert list(tmp_path.iterdir()) == []
