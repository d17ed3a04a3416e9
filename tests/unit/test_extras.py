"""Optional extras: a missing one is named with the pip command that installs it, before any
work, and what does not need it keeps working."""

import subprocess
import sys

import pytest

import yoloslim as ys
from yoloslim.errors import ConfigError, ExportError
from yoloslim.extras import install_hint, installed, require
from yoloslim.models import build_model


def test_require_names_the_extra_and_installed_does_not_import(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch_pruning", None)
    assert not installed("torch_pruning") and installed("numpy")
    with pytest.raises(
        ExportError, match=r"torch_pruning is not installed: pip install 'yoloslim\[prune\]'"
    ):
        require("torch_pruning", "prune", ExportError)
    assert (
        install_hint("nncf", "openvino")
        == "nncf is not installed: pip install 'yoloslim[openvino]'"
    )


def test_prune_config_needs_no_torch_pruning_and_prune_says_what_to_install(monkeypatch):
    code = (
        "import sys; sys.modules['torch_pruning'] = None; import yoloslim as ys; "
        "print(ys.PruneConfig(ratio=0.3).ratio)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "0.3", proc.stderr
    monkeypatch.setitem(sys.modules, "torch_pruning", None)
    cfg = ys.PruneConfig(ratio=0.3, finetune_epochs=0, imgsz=64, latency=False)
    with pytest.raises(ConfigError, match=r"pip install 'yoloslim\[prune\]'"):
        ys.prune(build_model("damo-nano", nc=2), None, config=cfg)


def test_openvino_quantize_without_nncf_stops_before_any_work(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "nncf", None)
    with pytest.raises(
        ExportError, match=r"nncf is not installed: pip install 'yoloslim\[openvino\]'"
    ):
        ys.quantize("damo-nano", tmp_path / "no-data.yaml", out=tmp_path / "q")
    assert not (tmp_path / "q").exists()
