import json

import numpy as np
import pytest

from yoloslim.bench.flops import count_flops
from yoloslim.bench.latency import (
    LatencyConfig,
    measure_latency,
    percentile,
    summarize,
    system_info,
)
from yoloslim.models import build_model
from yoloslim.models.checkpoint import save_checkpoint


def test_percentile_matches_hand_values():
    v = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert percentile(v, 50) == 3.0
    assert percentile(v, 90) == pytest.approx(4.6)  # 4 + 0.6 * (5 - 4)
    assert percentile([7.0], 90) == 7.0
    with pytest.raises(ValueError):
        percentile([], 50)


def test_summarize_units_and_throughput():
    s = summarize([0.010, 0.020, 0.030], batch=4)
    assert s["median"] == pytest.approx(20.0)
    assert s["runs"] == 3
    assert s["throughput_ips"] == pytest.approx(200.0)


def test_flops_of_a_hand_counted_net():
    from torch import nn

    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.ReLU(), nn.Conv2d(8, 4, 1, bias=False)
    )
    f = count_flops(net, 16)
    macs = 16 * 16 * 8 * 3 * 3 * 3 + 16 * 16 * 4 * 8  # out pixels x out ch x (in ch x k x k)
    assert f["gmacs"] * 1e9 == pytest.approx(macs)
    assert f["gflops"] == pytest.approx(2 * f["gmacs"])


def test_measure_latency_excludes_warmup_and_counts_runs(tmp_path):
    ckpt = save_checkpoint(tmp_path / "m.pt", build_model("damo-nano", nc=2), imgsz=64)
    # an OpenVINO hint in a run of mixed artifacts is for the .xml ones; a .pt runs as it is
    cfg = LatencyConfig(imgsz=64, warmup=2, rounds=3, runs_per_round=2, threads=1, ov_hint="f32")
    res = measure_latency([str(ckpt)], cfg)[str(ckpt)]
    assert res["runs"] == 6  # rounds x runs, warm-up not included
    assert res["kind"] == "torch" and res["median"] > 0
    # the summary of those 6 samples: min <= median <= p90, and images/s at batch 1 from the
    # median (a p90 taken at the wrong end, or from the warm-up, would break the order)
    assert res["min"] <= res["median"] <= res["p90"]
    assert res["min"] <= res["mean"]
    assert res["throughput_ips"] == pytest.approx(1000 / res["median"])


def test_system_info_keys():
    info = system_info()
    assert {"cpu", "cores", "isa", "os", "python", "versions"} <= set(info)
    assert "amx_bf16" in info["isa"]


def test_system_info_imports_no_runtime_to_read_its_version():
    # audit43 api M1, M2: `import openvino` for its version set up OpenVINO's telemetry and
    # fixed the caller's multiprocessing start method (set_start_method then raised)
    import subprocess
    import sys

    code = (
        "import multiprocessing as mp, sys, json\n"
        "from yoloslim.bench.latency import system_info\n"
        "v = system_info()['versions']\n"
        "print(json.dumps([v, 'openvino' in sys.modules, mp.get_start_method(allow_none=True)]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    versions, imported, method = json.loads(out.stdout.splitlines()[-1])
    assert not imported and method is None
    ov = pytest.importorskip("openvino")
    assert ov.__version__.startswith(versions["openvino"])


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"rounds": 0}, r"rounds=0 \(--rounds\) must be >= 1"),
        ({"runs_per_round": 0}, r"runs_per_round=0 \(--runs\) must be >= 1"),
        ({"threads": 0}, r"threads=0 \(--threads\) must be >= 1"),
        ({"warmup": -1}, r"warmup=-1 \(--warmup\) must be >= 0"),
        ({"batch": 1.5}, r"batch=1.5 must be an integer >= 1"),
        ({"imgsz": 65}, r"imgsz=65 must be a multiple of 32"),
    ],
)
def test_latency_settings_are_checked_before_any_worker_starts(kw, match):
    from yoloslim.errors import ConfigError

    with pytest.raises(ConfigError, match=match):
        LatencyConfig(**kw)
    assert LatencyConfig(threads=None, warmup=0).rounds == 10
    swept = LatencyConfig(batch=np.int64(8), threads=np.int32(1))  # np.arange values
    assert (swept.batch, swept.threads) == (8, 1) and type(swept.batch) is int


def test_more_threads_than_cores_are_refused_by_each_runtime_setting(monkeypatch, tmp_path):
    """--threads 100000 hung ONNX Runtime (a thread each, GBs) and crashed torch (audit47
    bench F4): bench, the runtimes' loader, NAS's latency and training refuse a count over
    the cores this process may run on."""
    from yoloslim.errors import ConfigError
    from yoloslim.nas.latency import LatencySettings
    from yoloslim.runtime.backends import load_backend
    from yoloslim.train.config import TrainConfig
    from yoloslim.train.trainer import _devices

    monkeypatch.setattr("yoloslim.sysinfo.usable_cores", lambda: 3)
    assert LatencyConfig(threads=3).threads == 3
    over = r"=4 \(--threads\) is more than the 3 cores this process may run on; give at most 3"
    with pytest.raises(ConfigError, match=rf"^threads{over}"):
        LatencyConfig(threads=4)
    with pytest.raises(ConfigError, match=r"^latency threads=4 \(--latency-threads\) is more"):
        LatencySettings(threads=4)
    with pytest.raises(ConfigError, match=rf"^TrainConfig.threads{over}.* unless --threads is"):
        _devices(TrainConfig(threads=4, device="cpu"))  # a resume's saved value: said how
    # a recipe's stages: before a fresh run begins, not after every stage before them
    # (audit47 review F1); the recipe itself still loads (a resume of a run recorded on a
    # larger machine: review2 M)
    from yoloslim.recipe import check_stage_threads, load_recipe

    for stage, at in (
        ({"bench": {"threads": 4}}, "bench"),
        ({"train": {"threads": 4}}, "train"),
        ({"distill": {"train": {"threads": 4}}}, "distill"),
    ):
        rec = load_recipe({"stages": [{"export": {}}, stage]})
        with pytest.raises(ConfigError, match=rf"stage 2 \({at}\): threads=4 is more than the 3"):
            check_stage_threads(rec)
    check_stage_threads(load_recipe({"stages": [{"bench": {"threads": 3}}]}))
    with pytest.raises(ConfigError, match=r"^threads=4 is more than the 3 cores"):
        load_backend(tmp_path / "m.onnx", threads=4)  # before the file is read


def test_other_work_while_timing_is_warned_about(tmp_path, caplog):
    # audit43 bench M: the busy check sampled half a second before any worker started, so a
    # load that began later (here: one busy process per core) changed the figures unsaid
    import subprocess
    import sys

    from yoloslim.sysinfo import usable_cores

    ckpt = save_checkpoint(tmp_path / "m.pt", build_model("damo-nano", nc=2), imgsz=64)
    spin = [sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 60: pass"]
    busy = [subprocess.Popen(spin) for _ in range(usable_cores())]
    try:
        cfg = LatencyConfig(imgsz=64, warmup=1, rounds=2, runs_per_round=3, threads=1)
        with caplog.at_level("WARNING", "yoloslim"):
            measure_latency([str(ckpt)], cfg)
    finally:
        for p in busy:
            p.kill()
            p.wait()
    assert "cores busy, on average, while the latencies at batch 1 were timed" in caplog.text


def test_the_ov_hint_takes_the_precision_columns_spelling():
    # review2 N2: bench --ov-precision fp32 was refused, val's and predict's took it
    from yoloslim.errors import ConfigError

    assert LatencyConfig(ov_hint="fp32").ov_hint == "fp32"
    with pytest.raises(ConfigError, match=r"^ov_hint='f64' \(--ov-precision\): expected"):
        LatencyConfig(ov_hint="f64")
