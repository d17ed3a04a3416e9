"""OpenVINO runtimes share one Core, so the thread's alternate signal stack stays valid.

OpenVINO's CPU plugin swaps in its own ``sigaltstack`` per plugin instance (one per
``ov.Core``); freeing two cores first-in-first-out left the main thread's alternate stack
pointing at unmapped memory, and the next Python-handled signal (a DataLoader worker's
SIGCHLD) crashed the test process with SIGSEGV.
"""

import ctypes
import gc
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from yoloslim.export import export
from yoloslim.models import build_model
from yoloslim.models.checkpoint import save_checkpoint
from yoloslim.runtime.backends import load_backend
from yoloslim.runtime.ov_core import openvino_core

pytest.importorskip("openvino")
pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="sigaltstack and /proc: Linux")

SS_DISABLE = 2


class _Stack(ctypes.Structure):
    _fields_ = [("sp", ctypes.c_void_p), ("flags", ctypes.c_int), ("size", ctypes.c_size_t)]


def _altstack() -> _Stack:
    s = _Stack()
    assert ctypes.CDLL(None).sigaltstack(None, ctypes.byref(s)) == 0
    return s


def _writable(start: int, size: int) -> bool:
    """Whether [start, start + size) lies in one writable mapping of this process."""
    with open("/proc/self/maps") as f:
        for line in f:
            lo, hi = (int(v, 16) for v in line.split()[0].split("-"))
            if lo <= start and start + size <= hi:
                return "w" in line.split()[1]
    return False


@pytest.fixture(scope="module")
def xml(tmp_path_factory):
    out = tmp_path_factory.mktemp("ovcore")
    torch.manual_seed(0)
    ckpt = save_checkpoint(out / "m.pt", build_model("damo-nano", names=["a", "b"]), imgsz=64)
    return export(ckpt, out, formats=["openvino"]).artifacts["openvino"]


def test_one_core_per_process():
    assert openvino_core() is openvino_core()


def test_backends_freed_first_in_first_out_leave_a_valid_signal_stack(xml):
    first, second = load_backend(xml), load_backend(xml)
    x = torch.rand(1, 3, 64, 64)
    torch.testing.assert_close(first(x), second(x))
    del first
    gc.collect()
    del second
    gc.collect()
    s = _altstack()
    if not s.flags & SS_DISABLE:
        assert _writable(s.sp, s.size), f"alternate signal stack {s.sp:#x}+{s.size} is unmapped"


def test_openvino_and_nncf_telemetry_is_declined():
    # without a consent file both post usage data to Google Analytics by default; yoloslim
    # never uses the network. A fresh process: the telemetry object is a per-process singleton
    code = """
import torch
from yoloslim.export import export
from yoloslim.models import build_model
import tempfile
export(build_model("damo-nano", names=["a"]), tempfile.mkdtemp(), formats="openvino", imgsz=64,
       verify=False)
import nncf
from openvino_telemetry import Telemetry
from openvino_telemetry.utils.opt_in_checker import ConsentCheckResult, OptInChecker
t = getattr(Telemetry, "_SingletonMetaClass__single_instance")
print(t.consent, OptInChecker().check(False) == ConsentCheckResult.DECLINED)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.stdout.split()[-2:] == ["False", "True"], proc.stderr[-2000:]


def test_a_file_that_is_no_ir_is_one_line_naming_it(tmp_path, capfd):
    # OpenVINO would try every frontend on it (TensorFlow's prints parse errors to stderr)
    from yoloslim.errors import ModelError
    from yoloslim.runtime.ov_core import read_ir

    cases = {
        "fake.xml": ("<xml/>", r"fake\.xml: not an OpenVINO IR \(its root element is <xml>"),
        "text.xml": ("garbage <<", r"text\.xml: not an OpenVINO IR \(not XML"),
        "nobin.xml": ('<net name="x" version="11"/>', r"nobin\.xml: its weights nobin\.bin"),
    }
    for name, (text, match) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(ModelError, match=match):
            read_ir(tmp_path / name)
    with pytest.raises(ModelError, match=r"gone\.xml: no such file"):
        read_ir(tmp_path / "gone.xml")
    assert "GraphDef" not in capfd.readouterr().err


def test_an_ir_openvino_cannot_write_is_named_and_nothing_is_left(tmp_path):
    from yoloslim.errors import ExportError
    from yoloslim.runtime.ov_core import save_ir

    class Full:  # OpenVINO's error on a full disk, as it reads
        def save_model(self, model, path, compress_to_fp16=False):
            Path(path).write_text("<net")  # a part written, then the stream fails
            raise RuntimeError("basic_ios::clear: iostream error")

    ir = tmp_path / "q" / "model.xml"
    with pytest.raises(ExportError, match=r"q/model\.xml: OpenVINO could not write the IR .* free"):
        save_ir(Full(), None, ir)
    assert list(ir.parent.iterdir()) == []  # no part of it, and no staging folder


def test_records_of_an_earlier_version_spelled_f32_match_todays_fp32():
    # review F5: a NAS latency cache or a budget run's bench rows written before the
    # precision columns said fp32 were no longer reused
    from yoloslim.nas.latency import _respelled
    from yoloslim.runtime.ov_core import respelled

    before = ["f32", "int8+f16", "pruned (OV f32)", "bf16", "fp32", "xf32"]
    assert [respelled(t) for t in before] == [
        "fp32",
        "int8+fp16",
        "pruned (OV fp32)",
        "bf16",
        "fp32",
        "xf32",
    ]
    context = {"imgsz": 64, "machine": {"precision": "f32", "cpu": "x"}}
    assert _respelled(context) == {"imgsz": 64, "machine": {"precision": "fp32", "cpu": "x"}}
