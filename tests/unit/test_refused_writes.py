"""Writes the machine refuses (a full disk, a file-size limit) are errors naming the file.

The refusals are real: a child process lowers its file-size limit (``RLIMIT_FSIZE``, with
SIGXFSZ ignored, so a write past it fails with EFBIG as a full disk fails with ENOSPC).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

resource = pytest.importorskip("resource")

CHILD = textwrap.dedent(
    """
    import errno, json, resource, signal, sys
    from pathlib import Path

    import yoloslim as ys
    from yoloslim.errors import ExportError
    from yoloslim.models import build_model
    from yoloslim.models.checkpoint import save_checkpoint

    out = Path(sys.argv[1])
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)

    def limit(size):
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))

    model = build_model("damo-nano", nc=2)
    ckpt = save_checkpoint(out / "m.pt", model, imgsz=64)
    ys.export(ckpt, out / "e", formats="onnx", verify=False)  # the earlier export
    onnx_bytes = (out / "e" / "model.onnx").read_bytes()
    got = {}
    limit(256 * 1024)
    try:
        save_checkpoint(out / "m.pt", model, imgsz=64)
    except OSError as e:
        got["checkpoint"] = [e.errno == errno.EFBIG, e.filename]
    try:  # torch's own file writer aborted the process here
        ys.export(ckpt, out / "e", formats=["torchscript", "onnx", "openvino"], verify=False)
    except ExportError as e:
        got["export"] = str(e)
    limit(8 * 1024)  # an image is about 35 kB
    try:
        ys.synthesize(out / "s", images=4, imgsz=256)
    except OSError as e:
        got["synth"] = [e.errno == errno.EFBIG, e.filename]
    import numpy as np
    from yoloslim.runtime.video import VideoWriter

    noise = np.random.default_rng(0).integers(0, 255, (30, 128, 128, 3), dtype=np.uint8)
    try:
        with VideoWriter(out / "drawn.mp4", fps=10, codec="mpeg4") as w:
            for frame in noise:
                w.write(frame)
    except OSError as e:
        got["video"] = [e.errno == errno.EFBIG, e.filename]
    limit(hard)
    got["videos_left"] = sorted(p.name for p in out.glob("*drawn*"))  # its temp: .drawn.mp4.*
    got["checkpoint_intact"] = ys.load_checkpoint(out / "m.pt")[0].nc == 2
    got["onnx_intact"] = (out / "e" / "model.onnx").read_bytes() == onnx_bytes
    got["left"] = sorted(p.name for p in (out / "e").iterdir())
    # a later export into the folder lists the earlier, still valid ONNX again
    later = ys.export(ckpt, out / "e", formats="torchscript", verify=False)
    got["later"] = sorted(later.report["formats"])
    print(json.dumps(got))
    """
)


def test_a_refused_write_names_the_file_and_loses_nothing(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path)], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]  # an abort (SIGABRT) was -6
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["checkpoint"] == [True, str(tmp_path / "m.pt")]
    assert (
        f"TorchScript export to {tmp_path / 'e' / 'model.torchscript'} failed: File too large"
        in (got["export"])
    )
    assert "the earlier export's" in got["export"] and "model.onnx stays as it was" in got["export"]
    ok, name = got["synth"]
    assert ok and name.startswith(str(tmp_path / "s"))
    assert got["checkpoint_intact"] and got["onnx_intact"]
    # no staging folder, no .tmp, no empty model_openvino/
    assert got["left"] == ["export_report.json", "model.onnx"]
    assert got["later"] == ["onnx", "torchscript"]
    if "video" in got or got["videos_left"]:  # PyAV (the [video] extra) is installed
        assert got["video"] == [True, str(tmp_path / "drawn.mp4")]
        assert got["videos_left"] == []  # no temp of drawn.mp4 keeping the space
