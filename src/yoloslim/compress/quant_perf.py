"""Where the time goes in an OpenVINO model: per-layer performance counters, summarised.

INT8 is only faster when the convolutions really run in INT8 kernels and few
Reorder / FakeQuantize layers sit at the float/int boundaries. The CPU plugin's
``PERF_COUNT`` reports every executed layer with its kernel (``exec_type``, e.g.
``jit_avx2_I8``, ``brgconv_avx2_f32``, ``ref_f32``); this module sums them by kernel
and counts the boundary layers, so a slow INT8 artifact explains itself.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from yoloslim.runtime.ov_core import openvino_core, precision_name

__all__ = ["perf_counters"]


def perf_counters(
    xml: str | Path, imgsz: int, *, runs: int = 20, threads: int | None = None
) -> dict:
    """Per-kernel time (ms per inference, median over ``runs``) of an OpenVINO IR at batch 1.

    Returns:
        ``{"precision", "total_ms", "by_kernel": {"Convolution/jit_avx2_I8": ms, ...},
        "conv_ms": {"int8", "float"}, "convs": {"int8", "float"}, "reorders", "reorder_ms",
        "fake_quantize", "top": [[layer, type, kernel, ms], ...]}``. Counters add overhead;
        use them for the breakdown, :func:`yoloslim.bench.latency.measure_latency` for latency.
    """
    core = openvino_core()
    config: dict = {"PERF_COUNT": True}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    compiled = core.compile_model(str(xml), "CPU", config)
    request = compiled.create_infer_request()
    x = np.random.default_rng(0).random((1, 3, imgsz, imgsz), dtype=np.float32)
    for _ in range(3):
        request.infer({0: x})
    per_layer: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    totals = []
    for _ in range(runs):
        t0 = time.perf_counter()
        request.infer({0: x})
        totals.append(1000 * (time.perf_counter() - t0))
        for pi in request.get_profiling_info():
            if pi.status != pi.Status.EXECUTED:
                continue
            key = (pi.node_name, pi.node_type, pi.exec_type)
            per_layer[key].append(pi.real_time.total_seconds() * 1000)
    med = {k: float(np.median(v)) for k, v in per_layer.items()}
    by_kernel: dict[str, float] = defaultdict(float)
    conv_ms = {"int8": 0.0, "float": 0.0}
    convs = {"int8": 0, "float": 0}
    reorders, reorder_ms, fq = 0, 0.0, 0
    for (_, typ, kernel), ms in med.items():
        by_kernel[f"{typ}/{kernel}"] += ms
        if typ == "Convolution":
            kind = "int8" if kernel.lower().endswith(("i8", "u8")) else "float"
            conv_ms[kind] += ms
            convs[kind] += 1
        elif typ == "Reorder":
            reorders += 1
            reorder_ms += ms
        elif typ == "FakeQuantize":
            fq += 1
    hint = compiled.get_property("INFERENCE_PRECISION_HINT")
    top = sorted(med.items(), key=lambda kv: -kv[1])[:8]
    return {
        # as the runtime names it: quantized convs, the rest in the hint's
        "precision": precision_name(hint, quantized=convs["int8"] > 0),
        "total_ms": round(float(np.median(totals)), 3),
        "by_kernel": {k: round(v, 3) for k, v in sorted(by_kernel.items(), key=lambda kv: -kv[1])},
        "conv_ms": {k: round(v, 3) for k, v in conv_ms.items()},
        "convs": convs,
        "reorders": reorders,
        "reorder_ms": round(reorder_ms, 3),
        "fake_quantize": fq,
        "top": [[n, t, k, round(ms, 3)] for (n, t, k), ms in top],
    }
