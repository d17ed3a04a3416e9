"""Latency measured the honest way: one worker process per artifact, rounds interleaved.

Runtimes disturb each other inside one process (thread pools that keep spinning),
so every artifact gets its own spawned worker; the parent alternates short rounds
between the workers so machine drift hits every artifact alike.
Warm-up runs are excluded from the statistics.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import platform
import signal
import statistics
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import numpy as np

from yoloslim.configs import check_imgsz, int_problem
from yoloslim.errors import ConfigError, ExportError
from yoloslim.sysinfo import INFERENCE_ISA, check_threads, cpu_flags, cpu_model, usable_cores

log = logging.getLogger(__name__)

__all__ = ["LatencyConfig", "measure_latency", "percentile", "summarize", "system_info"]


@dataclass(frozen=True)
class LatencyConfig:
    """Attributes: batch, imgsz, warmup runs, rounds, runs per round, threads (None: runtime
    default), ov_hint (an OpenVINO IR's inference precision, f32, bf16 or f16; None: the
    runtime's default)."""

    batch: int = 1
    imgsz: int = 320
    warmup: int = 10
    rounds: int = 10
    runs_per_round: int = 10
    threads: int | None = None
    ov_hint: str | None = None

    def __post_init__(self) -> None:
        flags = {"runs_per_round": " (--runs)", "rounds": " (--rounds)", "threads": " (--threads)",
                 "warmup": " (--warmup)"}  # fmt: skip
        for key, least in (("batch", 1), ("imgsz", 1), ("warmup", 0), ("rounds", 1),
                           ("runs_per_round", 1), ("threads", 1)):  # fmt: skip
            value = getattr(self, key)
            if key == "threads" and value is None:
                continue
            problem = int_problem(value, least)
            if problem:
                raise ConfigError(f"{key}={value!r}{flags.get(key, '')} {problem}")
            object.__setattr__(self, key, int(value))  # a numpy integer as a plain one
        check_imgsz(self.imgsz)  # as every other settings class (benchmark() refused it later)
        check_threads(self.threads, "threads", " (--threads)")
        if self.ov_hint is not None:  # failed in each worker, after the others had started
            from yoloslim.runtime.backends import check_ov_precision

            # the spelling alone (fp32 too, review2 N2): which artifacts are IR is bench's
            check_ov_precision(self.ov_hint, "", openvino=True, arg="ov_hint")


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
    # Ctrl-C reaches the whole process group: the parent stops the workers itself, so a
    # worker ignores it rather than printing its own KeyboardInterrupt traceback
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        from yoloslim.runtime.backends import import_runtime, load_backend

        # every runtime's library is imported before the baseline (torch already is, by the
        # backends module): the memory is what this artifact's model adds, alike for each
        import_runtime(path)
        base_mb = _rss_mb()
        # the hint is OpenVINO's: the other artifacts of the same run are loaded without it
        hint = cfg.ov_hint if path.lower().endswith(".xml") else None
        backend = load_backend(path, threads=cfg.threads, hint=hint)
        x = np.random.default_rng(0).random((cfg.batch, 3, cfg.imgsz, cfg.imgsz), dtype=np.float32)
        if backend.kind in ("torch", "torchscript"):
            import torch

            x = torch.from_numpy(x)
        for _ in range(cfg.warmup):
            backend(x)
        conn.send(("ready", {"kind": backend.kind, "static_batch": bool(backend.static_batch)}))
        while True:
            cmd, n = conn.recv()
            if cmd == "stop":
                break
            if cmd == "precision":  # asked last: reading it (an ONNX's whole graph, with
                # the onnx package) is no part of the model's memory, which it was
                conn.send(("precision", str(backend.precision)))
                continue
            times = []
            for _ in range(n):
                t0 = time.perf_counter()
                backend(x)
                times.append(time.perf_counter() - t0)
            conn.send(("times", (times, _peak_rss_mb(), _peak_rss_mb() - base_mb)))
    except (EOFError, BrokenPipeError):
        pass  # the parent is gone or stopped the run: nothing to report to
    except Exception as e:  # noqa: BLE001 - report any failure to the parent
        with contextlib.suppress(OSError):
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


@dataclass
class _Handle:
    """The parent's side of one worker: its artifact, pipe end and process."""

    path: str
    conn: Connection
    proc: BaseProcess
    replied: bool = False  # whether it has sent anything (its start-up is over)


_MAIN_HIDDEN = threading.Lock()


@contextlib.contextmanager
def _main_not_imported() -> Iterator[None]:
    """Start a spawned worker without the caller's script. Spawn imports ``__main__`` again
    in the child (as ``__mp_main__``) from what ``Process.start`` reads off it, its module
    name or file: the script's top-level code (an export, a training run) ran a second time
    in every worker, writing into the same folders, and an unguarded one then failed. The
    worker runs only yoloslim's code and takes no object of the script's, so for the moment
    of the start ``__main__`` shows neither."""
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    with _MAIN_HIDDEN:
        saved = {k: main.__dict__[k] for k in ("__spec__", "__file__") if k in main.__dict__}
        main.__dict__.pop("__file__", None)
        main.__spec__ = None
        try:
            yield
        finally:
            for k in ("__spec__", "__file__"):
                main.__dict__.pop(k, None)
            main.__dict__.update(saved)


def _start(ctx: Any, path: str, cfg: LatencyConfig) -> _Handle:
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_worker, args=(child, path, cfg), daemon=True)
    # A Ctrl-C reaches the whole process group, also a worker still importing Python's own
    # modules before _worker can ignore it: that printed a traceback beside the one-line
    # stop. So the worker is started with SIGINT ignored, a disposition exec keeps and Python
    # leaves as it finds it. A Ctrl-C in the few milliseconds of the start itself is lost
    # (the process ignores it meanwhile); one a moment later stops the run as usual.
    with _main_not_imported():
        if threading.current_thread() is threading.main_thread():
            handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
            try:
                proc.start()
            finally:
                signal.signal(signal.SIGINT, handler)
        else:  # only the main thread may set a handler
            proc.start()
    # The worker holds its own copy now. Keeping the parent's open would hide the worker's
    # death: the pipe would never reach EOF.
    child.close()
    return _Handle(path, parent, proc)


def _send(w: _Handle, msg: tuple) -> None:
    try:
        w.conn.send(msg)
    except OSError as e:  # the worker's end is closed: it died
        raise _died(w) from e


def _receive(w: _Handle) -> tuple[str, Any]:
    """The worker's next message, however long it takes; :class:`ExportError` when it died.

    No time limit: a healthy worker may take minutes. Waiting on the process sentinel as
    well as the pipe means a dead worker is noticed even if its pipe is still open.
    """
    wait([w.conn, w.proc.sentinel])
    try:
        if w.conn.poll():  # true on a message (it may be the last before the worker exited)
            msg = w.conn.recv()  # or on EOF, which raises
            w.replied = True
            return msg
    except (EOFError, OSError):
        pass
    raise _died(w)


def _died(w: _Handle) -> ExportError:
    w.proc.join(timeout=5)  # its pipe closed or its process ended: it is exiting
    code = w.proc.exitcode
    if code is None:
        how = "closed its pipe"
    elif code < 0:
        try:
            how = f"was killed by {signal.Signals(-code).name} (exit code {code})"
        except ValueError:
            how = f"was killed by signal {-code} (exit code {code})"
    else:
        how = f"exited with code {code}"
    if w.replied:
        return ExportError(
            f"{w.path}: the latency worker process {how} during the measurement "
            "(out of memory, or a crash in the runtime?)"
        )
    if code is not None and code < 0:
        return ExportError(
            f"{w.path}: the latency worker process {how} while loading the model, before it "
            "reported back (out of memory, or a crash in the runtime?)"
        )
    return ExportError(
        f"{w.path}: the latency worker process {how} while starting, before it reported back "
        "(its error, if any, is printed above)"
    )


def _cpu_ticks() -> dict[int, tuple[int, int]]:
    """Per core of this process's: ``(busy, total)`` clock ticks since boot, from
    ``/proc/stat`` (Linux; OSError elsewhere). Busy leaves out idle and iowait."""
    try:
        mine = os.sched_getaffinity(0)
    except (AttributeError, OSError):
        mine = None
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            name, *fields = line.split()
            if not (name.startswith("cpu") and name[3:].isdigit()):
                continue
            cpu, ticks = int(name[3:]), [int(x) for x in fields[:8]]
            if mine is None or cpu in mine:
                idle = ticks[3] + ticks[4]  # idle, iowait
                out[cpu] = (sum(ticks) - idle, sum(ticks))
    return out


def _own_ticks(pids: Sequence[int]) -> int:
    """The CPU clock ticks (user + system) these processes have used, from
    ``/proc/PID/stat``."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()  # after the command's name
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total


class OtherLoad:
    """How many of this process's cores other work kept busy, on average, from its making
    to :meth:`cores`: the cores' busy ticks less those of this process and its workers. The
    check before measuring samples half a second before any worker starts; a load that
    began later halved a model's speed-up without a word (audit43 bench M)."""

    def __init__(self, pids: Sequence[int]):
        self.pids = [os.getpid(), *pids]
        try:
            self.first = (_cpu_ticks(), _own_ticks(self.pids))
        except (OSError, ValueError, IndexError):  # not Linux: nothing to say
            self.first = None

    def cores(self) -> float | None:
        if self.first is None:
            return None
        try:
            now, own = _cpu_ticks(), _own_ticks(self.pids)
        except (OSError, ValueError, IndexError):
            return None
        before, own_before = self.first
        busy = sum(now[c][0] - before[c][0] for c in now if c in before)
        span = max((now[c][1] - before[c][1] for c in now if c in before), default=0)
        return max(0.0, busy - (own - own_before)) / span if span > 0 else None


def _warn_other_load(cores: float | None, cfg: LatencyConfig) -> None:
    """A warning when other work kept more than a quarter of the cores (half a core at least)
    busy, on average, while the latencies were timed."""
    have = usable_cores()
    if cores is not None and cores > max(0.5, 0.25 * have):
        log.warning(
            "other work kept %.1f of the %d cores busy, on average, while the latencies at "
            "batch %d were timed: they (and their ratios) are unreliable; measure on a quiet "
            "machine%s",
            cores,
            have,
            cfg.batch,
            quiet_hint(cfg),
        )


def quiet_hint(cfg: LatencyConfig) -> str:
    """What a warning of a busy machine adds to "measure on a quiet machine": at 1 thread
    per runtime, where ``cfg`` leaves each runtime its own thread pool."""
    if cfg.threads:
        return ""
    return ", or at 1 thread per runtime (bench --threads 1, a recipe's bench.threads: 1)"


def measure_latency(
    paths: Sequence[str | Path] | str | Path, config: LatencyConfig | None = None
) -> dict[str, dict]:
    """Median/p90 latency (ms) of each artifact, each in its own process, rounds interleaved.

    The result is keyed by ``str(path)``; a single path counts as a list of one.
    Measures in spawned worker processes, which run yoloslim's code only (not the calling
    script's top level again: no ``if __name__ == "__main__":`` guard is needed).

    Raises:
        ExportError: a worker failed to load or run an artifact, or died (killed, crashed,
            or could not start).
    """
    cfg = config or LatencyConfig()
    if isinstance(paths, str | os.PathLike):
        paths = [paths]  # not its characters
    ctx = mp.get_context("spawn")
    workers: list[_Handle] = []
    try:
        for p in paths:
            workers.append(_start(ctx, str(p), cfg))
        info: dict[str, dict] = {}
        for w in workers:  # wait for all to load and warm up
            kind, payload = _receive(w)
            if kind == "error":
                raise ExportError(f"{w.path}: the latency worker failed: {payload}")
            info[w.path] = payload
        times: dict[str, list[float]] = {p: [] for p in info}
        rss: dict[str, tuple[float, float]] = {}
        load = OtherLoad([w.proc.pid for w in workers])
        for r in range(cfg.rounds):
            order = workers if r % 2 == 0 else workers[::-1]
            for w in order:
                _send(w, ("run", cfg.runs_per_round))
                kind, payload = _receive(w)
                if kind == "error":
                    raise ExportError(f"{w.path}: the latency worker failed: {payload}")
                times[w.path].extend(payload[0])
                rss[w.path] = payload[1], payload[2]
        _warn_other_load(load.cores(), cfg)
        for w in workers:
            _send(w, ("precision", 0))
            kind, payload = _receive(w)
            if kind == "error":
                raise ExportError(f"{w.path}: the latency worker failed: {payload}")
            info[w.path]["precision"] = payload
        return {
            p: {
                **info[p],
                **summarize(times[p], cfg.batch),
                "peak_rss_mb": rss[p][0],
                "model_mem_mb": rss[p][1],
            }
            for p in info
        }
    except BaseException:
        for w in workers:  # the run has failed: the others need not finish their round
            w.proc.terminate()
        raise
    finally:
        for w in workers:
            with contextlib.suppress(BrokenPipeError, OSError):
                w.conn.send(("stop", 0))
            w.proc.join(timeout=10)
            if w.proc.is_alive():
                w.proc.kill()
            w.conn.close()


_RUNTIMES = ("torch", "onnxruntime", "openvino", "onnx")


def _version(module: str, providers: dict[str, list[str]]) -> str | None:
    """``module``'s version as its installed distribution gives it (onnxruntime comes as
    several: onnxruntime-gpu, -directml, ...), read without importing it (``import openvino``
    for a version string set up its telemetry and fixed the caller's multiprocessing start
    method: audit43 api M1, M2); else an imported module's ``__version__``; None when it is
    not installed. ``providers``: ``importlib.metadata.packages_distributions()``."""
    import importlib.metadata
    import sys

    for name in providers.get(module, []):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return getattr(sys.modules.get(module), "__version__", None)


def system_info() -> dict:
    """CPU model, cores, ISA flags that matter for inference, OS and runtime versions."""
    flags = cpu_flags()
    import importlib.metadata

    providers = importlib.metadata.packages_distributions()
    versions = {mod: _version(mod, providers) for mod in _RUNTIMES}
    return {
        "cpu": cpu_model(),
        "cores": usable_cores(),
        "isa": {f: f in flags for f in INFERENCE_ISA},
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
    }
