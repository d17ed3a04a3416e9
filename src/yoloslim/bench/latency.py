"""Latency measured the honest way: one worker process per artifact, rounds interleaved.

Runtimes disturb each other inside one process (thread pools that keep spinning),
so every artifact gets its own spawned worker; the parent alternates short rounds
between the workers so machine drift hits every artifact alike (FIELD_NOTES.md).
Warm-up runs are excluded from the statistics.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["LatencyConfig", "measure_latency", "percentile", "summarize", "system_info"]


@dataclass(frozen=True)
class LatencyConfig:
    """Attributes: batch, imgsz, warmup runs, rounds, runs per round, threads (None: runtime default)."""

    batch: int = 1
    imgsz: int = 320
    warmup: int = 10
    rounds: int = 10
    runs_per_round: int = 10
    threads: int | None = None
    ov_hint: str | None = None


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default method), ``q`` in [0, 100]."""
    if not values:
        raise ValueError("percentile of an empty list")
    return float(np.percentile(np.asarray(values, dtype=float), q))


def summarize(times_s: list[float], batch: int = 1) -> dict:
    ms = [1000 * t for t in times_s]
    med = statistics.median(ms)
    return {
        "median": med,
        "p90": percentile(ms, 90),
        "mean": statistics.fmean(ms),
        "min": min(ms),
        "runs": len(ms),
        "throughput_ips": 1000 * batch / med if med > 0 else None,
    }


def _worker(conn, path: str, cfg: LatencyConfig) -> None:
    try:
        from yoloslim.runtime.backends import load_backend

        base_mb = _rss_mb()  # after the imports every worker pays; before the runtime and model
        backend = load_backend(path, threads=cfg.threads, hint=cfg.ov_hint)
        x = np.random.default_rng(0).random((cfg.batch, 3, cfg.imgsz, cfg.imgsz), dtype=np.float32)
        if backend.kind in ("torch", "torchscript"):
            import torch

            x = torch.from_numpy(x)
        for _ in range(cfg.warmup):
            backend(x)
        conn.send(("ready", {"kind": backend.kind, "precision": str(backend.precision)}))
        while True:
            cmd, n = conn.recv()
            if cmd == "stop":
                break
            times = []
            for _ in range(n):
                t0 = time.perf_counter()
                backend(x)
                times.append(time.perf_counter() - t0)
            conn.send(("times", (times, _peak_rss_mb(), _peak_rss_mb() - base_mb)))
    except Exception as e:  # noqa: BLE001 - report any failure to the parent
        conn.send(("error", f"{type(e).__name__}: {e}"))
    finally:
        conn.close()


def _rss_mb() -> float:
    """Current resident memory of this process (Linux /proc; 0 where unavailable)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb() -> float:
    """Peak resident memory of this process: VmHWM of its own address space.

    Not ``ru_maxrss``: Linux keeps that across ``execve``, so a spawned worker would report
    the (larger) parent's peak. VmHWM starts afresh with the new address space.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_latency(paths: list[str], config: LatencyConfig | None = None) -> dict[str, dict]:
    """Median/p90 latency (ms) of each artifact, each in its own process, rounds interleaved."""
    cfg = config or LatencyConfig()
    ctx = mp.get_context("spawn")
    workers = []
    try:
        for p in paths:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(child, str(p), cfg), daemon=True)
            proc.start()
            workers.append((str(p), parent, proc))
        info: dict[str, dict] = {}
        for p, conn, _ in workers:  # wait for all to load and warm up
            kind, payload = conn.recv()
            if kind == "error":
                raise RuntimeError(f"{p}: {payload}")
            info[p] = payload
        times: dict[str, list[float]] = {p: [] for p in info}
        rss: dict[str, tuple[float, float]] = {}
        for r in range(cfg.rounds):
            order = workers if r % 2 == 0 else workers[::-1]
            for p, conn, _ in order:
                conn.send(("run", cfg.runs_per_round))
                kind, payload = conn.recv()
                if kind == "error":
                    raise RuntimeError(f"{p}: {payload}")
                times[p].extend(payload[0])
                rss[p] = payload[1], payload[2]
        return {
            p: {
                **info[p],
                **summarize(times[p], cfg.batch),
                "peak_rss_mb": rss[p][0],
                "model_mem_mb": rss[p][1],
            }
            for p in info
        }
    finally:
        for _, conn, proc in workers:
            with contextlib.suppress(BrokenPipeError, OSError):
                conn.send(("stop", 0))
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()


def system_info() -> dict:
    """CPU model, cores, ISA flags that matter for inference, OS and runtime versions."""
    flags: set[str] = set()
    model = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    wanted = ["avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "amx_tile"]
    versions = {}
    for mod in ("torch", "onnxruntime", "openvino", "onnx"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001
            versions[mod] = None
    return {
        "cpu": model,
        "cores": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "isa": {f: f in flags for f in wanted},
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
    }
