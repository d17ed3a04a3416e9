"""A latency worker that dies is reported by name instead of hanging the parent."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from yoloslim.bench import latency
from yoloslim.bench.latency import LatencyConfig, measure_latency
from yoloslim.errors import ExportError
from yoloslim.models import build_model
from yoloslim.models.checkpoint import save_checkpoint

IMGSZ = 64
QUICK = LatencyConfig(imgsz=IMGSZ, warmup=1, rounds=1, runs_per_round=1, threads=1)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("workers")
    return save_checkpoint(out / "m.pt", build_model("damo-nano", nc=2), imgsz=IMGSZ)


def test_an_unguarded_script_runs_once_not_again_in_each_worker(ckpt, tmp_path):
    # spawn imported the script again in each worker: its top-level code (an export, a
    # training run) ran a second time there, then the worker failed to start
    script = tmp_path / "unguarded.py"
    script.write_text(
        textwrap.dedent(
            f"""\
            import os
            import yoloslim as ys
            from yoloslim.bench.latency import LatencyConfig

            with open("ran.log", "a") as f:
                f.write(f"{{os.getpid()}}\\n")
            cfg = LatencyConfig(warmup=1, rounds=1, runs_per_round=1, threads=1)
            res = ys.benchmark({str(ckpt)!r}, imgsz={IMGSZ}, batches=1, latency=cfg)
            print("rows", len(res.report["rows"]), __spec__, __file__ == {str(script)!r})
            """
        )
    )
    # the timeout only turns a regression (a hang) into a failure; it times nothing
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[-4:] == ["rows", "1", "None", "True"]  # __main__ as it was
    assert len((tmp_path / "ran.log").read_text().split()) == 1  # in the parent only


def _kill_on(monkeypatch, *, before_ready: bool, seen: list):
    """Make the parent SIGKILL the first worker just before (or just after) its "ready"."""
    receive = latency._receive

    def kill_then_receive(w):
        seen.append(w)
        if before_ready and len(seen) == 1:
            os.kill(w.proc.pid, signal.SIGKILL)
        msg = receive(w)
        if not before_ready and len(seen) == 1:
            os.kill(w.proc.pid, signal.SIGKILL)
            w.proc.join()
        return msg

    monkeypatch.setattr(latency, "_receive", kill_then_receive)


def test_worker_killed_during_measurement_is_named_and_the_others_stop(ckpt, tmp_path, monkeypatch):
    other = tmp_path / "other.pt"
    other.write_bytes(ckpt.read_bytes())
    seen: list = []
    _kill_on(monkeypatch, before_ready=False, seen=seen)
    with pytest.raises(ExportError) as info:
        measure_latency([str(ckpt), str(other)], QUICK)
    msg = str(info.value)
    assert msg.startswith(f"{ckpt}: the latency worker process was killed by SIGKILL")
    assert "during the measurement" in msg and "__main__" not in msg
    assert seen and not any(w.proc.is_alive() for w in seen)


def test_worker_killed_while_loading_is_named_without_the_guard_hint(ckpt, monkeypatch):
    _kill_on(monkeypatch, before_ready=True, seen=[])
    with pytest.raises(
        ExportError, match=r"killed by SIGKILL \(exit code -9\) while loading"
    ) as info:
        measure_latency(ckpt, QUICK)  # one path, not a list
    assert "__main__" not in str(info.value)


def _ignored_signals(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(next(x for x in f if x.startswith("SigIgn:")).split()[1], 16)


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads /proc/PID/status")
def test_a_worker_starts_deaf_to_ctrl_c_and_the_parent_hears_it_again(ckpt):
    # a Ctrl-C that reached a worker still importing Python's own modules printed a traceback
    import multiprocessing as mp

    sigint = 1 << (signal.SIGINT - 1)
    handler = signal.getsignal(signal.SIGINT)
    handle = latency._start(mp.get_context("spawn"), str(ckpt), QUICK)
    try:
        assert _ignored_signals(handle.proc.pid) & sigint  # from its first instruction
        assert signal.getsignal(signal.SIGINT) is handler  # here, as it was
    finally:
        handle.proc.kill()
        handle.proc.join()
