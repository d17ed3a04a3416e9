"""Measured latency of a candidate, for latency budgets.

Measured in-process (a search scores hundreds of candidates; a worker process per
candidate would cost more than the measurement). Three runtimes:

- ``"torch"`` (default): the deploy-form (fused) eager model, ``torch.inference_mode``,
  ``threads`` intra-op threads.
- ``"onnxruntime"``: the deploy-form model exported by
  :func:`yoloslim.export.onnx.torch_onnx` (the exporter call ``yoloslim export`` makes,
  without its onnxslim pass) and run by
  ONNX Runtime with ``threads`` intra-op threads and spinning disabled, so its thread
  pool does not disturb the search process. Export takes seconds
  per candidate.
- ``"openvino"``: the same ONNX graph converted by ``openvino.convert_model`` and
  compiled for the CPU with ``threads`` inference threads and the latency hint --
  the runtime the ``cpu-int8`` recipe deploys to, at the precision its plugin picks
  (bf16 on AMX/AVX512-BF16 CPUs, f32 elsewhere).

The median of ``runs`` timed calls after ``warmup`` untimed ones, batch 1; the
search caches the result per architecture, in a file (:class:`LatencyCache`) that later
searches on the same machine reuse.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from yoloslim.configs import int_problem
from yoloslim.errors import ConfigError
from yoloslim.export.onnx import torch_onnx
from yoloslim.extras import require
from yoloslim.fileio import write_problem
from yoloslim.models.arch import validate_arch
from yoloslim.models.detector import Detector
from yoloslim.runtime.ov_core import default_precision, no_telemetry, openvino_core, respelled
from yoloslim.sysinfo import INFERENCE_ISA, check_threads, cpu_flags, cpu_model, usable_cores
from yoloslim.torch_state import torch_threads

__all__ = ["LatencyCache", "LatencySettings", "measure_latency_ms", "measure_rounds"]

log = logging.getLogger(__name__)

RUNTIMES = ("torch", "onnxruntime", "openvino")


@dataclass(frozen=True)
class LatencySettings:
    """How candidate latency is measured.

    Attributes:
        runtime: ``"torch"``, ``"onnxruntime"`` or ``"openvino"``.
        threads: intra-op threads of the runtime.
        warmup: untimed calls before timing.
        runs: timed calls; the median is reported.
    """

    runtime: str = "torch"
    threads: int = 1
    warmup: int = 5
    runs: int = 20

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES:
            raise ConfigError(
                f"latency.runtime={self.runtime!r} (--latency-runtime) must be one of {RUNTIMES}"
            )
        for name, low in (("threads", 1), ("runs", 1), ("warmup", 0)):
            v = getattr(self, name)
            problem = int_problem(v, low)
            if problem:
                raise ConfigError(f"latency {name}={v!r} {problem}")
            object.__setattr__(self, name, int(v))  # a numpy integer too; JSON takes it
        check_threads(self.threads, "latency threads", " (--latency-threads)")


def _deploy(arch: dict) -> Detector:
    return Detector(validate_arch(arch)).eval().fuse()


def _time(fn, settings: LatencySettings) -> float:
    times = []
    for _ in range(settings.runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def _torch_runner(arch: dict, imgsz: int, settings: LatencySettings):
    model = _deploy(arch)
    x = torch.randn(1, 3, imgsz, imgsz)

    def run() -> None:
        with torch.inference_mode():
            model(x)

    return run


def _onnx_session(arch: dict, imgsz: int, load):
    """``(load(path_of_the_candidate_onnx), input)``; the ONNX file is gone afterwards."""
    x = torch.randn(1, 3, imgsz, imgsz)
    with tempfile.TemporaryDirectory(prefix="yoloslim-nas-") as tmp:
        path = Path(tmp) / "candidate.onnx"
        torch_onnx(_deploy(arch), x, path)
        return load(str(path)), x.numpy()


def _onnxruntime_runner(arch: dict, imgsz: int, settings: LatencySettings):
    require("onnxruntime", "onnx")
    from yoloslim.runtime.backends import ort_cpu_session

    sess, x = _onnx_session(arch, imgsz, lambda p: ort_cpu_session(p, settings.threads))
    feed = {sess.get_inputs()[0].name: x}
    return lambda: sess.run(None, feed)


def _openvino_runner(arch: dict, imgsz: int, settings: LatencySettings):
    no_telemetry()
    ov = require("openvino", "openvino")
    config = {"INFERENCE_NUM_THREADS": settings.threads, "PERFORMANCE_HINT": "LATENCY"}
    compiled, x = _onnx_session(
        arch, imgsz, lambda p: openvino_core().compile_model(ov.convert_model(p), "CPU", config)
    )
    request = compiled.create_infer_request()
    return lambda: request.infer({0: x})


def latency_runner(arch: dict, imgsz: int, settings: LatencySettings):
    """``arch`` built (and exported, for ONNX Runtime and OpenVINO) for ``settings.runtime``,
    warmed up: a function that runs one batch-1 inference."""
    make = {"onnxruntime": _onnxruntime_runner, "openvino": _openvino_runner}.get(
        settings.runtime, _torch_runner
    )
    run = make(arch, imgsz, settings)
    with torch_threads(settings.threads if settings.runtime == "torch" else None):
        for _ in range(settings.warmup):
            run()
    return run


def time_runner(run, settings: LatencySettings) -> float:
    """Median latency (ms) of ``settings.runs`` calls of ``run`` (from :func:`latency_runner`)."""
    with torch_threads(settings.threads if settings.runtime == "torch" else None):
        return _time(run, settings)


def measure_latency_ms(arch: dict, imgsz: int, settings: LatencySettings) -> float:
    """Median batch-1 latency (ms) of ``arch`` at ``imgsz`` with ``settings``."""
    return time_runner(latency_runner(arch, imgsz, settings), settings)


def measure_rounds(
    archs: list[dict], imgsz: int, settings: LatencySettings, rounds: int
) -> list[list[float]]:
    """Each of ``archs`` timed ``rounds`` times in turn (one median of ``settings.runs``
    calls per round), so that a slow spell of the machine falls on all of them alike."""
    runners = [latency_runner(arch, imgsz, settings) for arch in archs]
    samples: list[list[float]] = [[] for _ in archs]
    for _ in range(rounds):
        for run, got in zip(runners, samples, strict=True):
            got.append(time_runner(run, settings))
    return samples


CACHE_NAME = "nas_latency_cache.jsonl"
_CACHE_HEADER = {"yoloslim": "nas latency cache", "version": 1}


def _machine(runtime: str) -> dict:
    """What a measurement depends on besides the candidate and the settings: the CPU (model,
    ISA features, cores, host name), the versions of yoloslim (the model an arch builds
    into), torch (it runs or exports it) and the runtime, and for OpenVINO the precision its
    plugin computes in (bf16 on AVX512-BF16/AMX CPUs)."""
    import platform

    from yoloslim import __version__

    machine = {
        "cpu": cpu_model(),
        "isa": sorted(set(INFERENCE_ISA) & cpu_flags()),
        "cores": usable_cores(),
        "host": platform.node(),
        "yoloslim": __version__,
        "torch": torch.__version__,
    }
    if runtime != "torch":
        try:
            machine[runtime] = __import__(runtime).__version__
        except ImportError:
            machine[runtime] = None
    if runtime == "openvino":
        machine["precision"] = openvino_precision()
    return machine


def _respelled(context: dict) -> dict:
    """A cache entry's context with its OpenVINO precision as this version spells it (an
    entry of an earlier one said f32: review F5, measured alike, not reused)."""
    machine = context.get("machine") if isinstance(context, dict) else None
    if isinstance(machine, dict) and isinstance(machine.get("precision"), str):
        machine = {**machine, "precision": respelled(machine["precision"])}
        return {**context, "machine": machine}
    return context


def openvino_precision() -> str | None:
    """What OpenVINO's CPU plugin computes a candidate in (None without OpenVINO)."""
    try:
        return default_precision()
    except ImportError:
        return None


class LatencyCache:
    """Measured latencies kept in a JSON-lines file, so that a later search (the same one
    run again after a stop, or another budget) reuses them instead of measuring again.

    The first line is a header; each further line is ``{"arch": sha256 of the architecture,
    "context": {...}, "latency_ms": ms}`` (with ``"rounds": n`` for the median of ``n``
    interleaved rounds a search times its best candidates in, kept apart from the one
    sample the search itself goes by), appended as soon as it is measured. An entry is
    reused only when its context is this search's: input size, the
    :class:`LatencySettings`, and the machine (see :func:`_machine`: CPU model and ISA
    features, cores, host name, the versions of yoloslim, torch and the runtime, and
    OpenVINO's precision). A line cut short by a stop is skipped. ``path=None`` keeps the cache in
    memory only.

    Raises:
        ConfigError: the file exists but is not such a cache (its first line is not the
            header), so it is never appended to.
    """

    def __init__(self, path: str | Path | None, imgsz: int, settings: LatencySettings) -> None:
        self.path = None if path is None else Path(path).expanduser()
        self.context = {"imgsz": imgsz, **dataclasses.asdict(settings)}
        self.entries: dict[str, float] = {}
        self.rounds: dict[tuple[str, int], float] = {}  # (arch, rounds) -> median
        self.reused = 0
        self._torn = False
        if self.path is not None:
            if self.path.is_dir():
                raise ConfigError(f"latency cache {self.path} is a folder; name a file")
            self.context["machine"] = _machine(settings.runtime)
            if self.path.exists() and self.path.stat().st_size:
                self._load()
            # a path this search cannot write is said now, not after a measurement; nothing
            # is created until there is a measurement to keep (a search refused at once
            # leaves no folder or empty file behind)
            why = _unwritable(self.path)
            if why:
                raise ConfigError(f"latency cache {self.path}: cannot write it ({why})")

    def _load(self) -> None:
        assert self.path is not None
        try:
            text = self.path.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"latency cache {self.path}: cannot read it ({e})") from e
        lines = text.splitlines()
        try:
            header = json.loads(lines[0]) if lines else None
        except json.JSONDecodeError:
            header = None
        if header != _CACHE_HEADER:
            raise ConfigError(
                f"latency cache {self.path}: line 1 is not a yoloslim latency cache header; "
                "name another file (it is left as it is)"
            )
        elsewhere = 0
        for i, line in enumerate(lines[1:], start=2):
            try:
                entry = json.loads(line)
                if _respelled(entry["context"]) != self.context:
                    elsewhere += 1
                    continue
                ms = float(entry["latency_ms"])
                if not math.isfinite(ms) or ms <= 0:  # NaN passed every budget
                    raise ValueError(f"latency {ms}")
                if entry.get("rounds"):
                    self.rounds[(entry["arch"], int(entry["rounds"]))] = ms
                else:
                    self.entries[entry["arch"]] = ms
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                log.warning(
                    "latency cache %s:%d: skipped a line that is not an entry", self.path, i
                )
        if elsewhere:
            log.warning(
                "latency cache %s: %d of its entries were measured with other settings, input "
                "size, machine or versions (of yoloslim, torch or the runtime) than this "
                "search's, and are not reused",
                self.path,
                elsewhere,
            )
        self._torn = not text.endswith("\n")

    @staticmethod
    def key(arch: dict) -> str:
        """The architecture's identity: every field but its name."""
        fields = {k: v for k, v in arch.items() if k != "name"}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()

    def get(self, arch: dict) -> float | None:
        """The cached latency (ms) of ``arch``, or None."""
        ms = self.entries.get(self.key(arch))
        self.reused += ms is not None
        return ms

    def get_rounds(self, arch: dict, rounds: int) -> float | None:
        """The cached median of ``rounds`` interleaved rounds of ``arch``, or None."""
        return self.rounds.get((self.key(arch), rounds))

    def put(self, arch: dict, ms: float, rounds: int | None = None) -> None:
        """Keep ``ms`` for ``arch`` (the median of ``rounds`` interleaved rounds, or one
        sample) and append it to the file."""
        key = self.key(arch)
        entry = {"arch": key, "context": self.context, "latency_ms": ms}
        if rounds:
            self.rounds[(key, rounds)] = ms
            entry["rounds"] = rounds
        else:
            self.entries[key] = ms
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            new = not self.path.exists() or not self.path.stat().st_size
            lines = [json.dumps(_CACHE_HEADER)] if new else []
            lines.append(json.dumps(entry))
            with open(self.path, "a") as f:
                f.write(("\n" if self._torn else "") + "\n".join(lines) + "\n")
            self._torn = False
        except OSError as e:  # a full disk, say: the search goes on, measuring into memory
            log.warning("latency cache %s: cannot append (%s); kept in memory only", self.path, e)
            self.path = None


def _unwritable(path: Path) -> str | None:
    """Why ``path`` could not be appended to (or made, with its folders), else None."""
    if path.exists():
        try:
            with open(path, "a"):
                return None
        except OSError as e:
            return str(e)
    return write_problem(path)
