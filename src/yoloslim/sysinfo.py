"""What this machine is, read once: CPU model, ISA flags and the cores this process may use."""

from __future__ import annotations

import functools
import numbers
import os
import platform
import shlex
import sys
from pathlib import Path

__all__ = [
    "INFERENCE_ISA",
    "available_memory",
    "cpu_flags",
    "cpu_model",
    "first_process",
    "invocation",
    "processes_per_node",
    "relaunch",
    "usable_cores",
    "world_size",
]

# the CPU features inference kernels are chosen by (two "AMD EPYC" hosts, one with AVX-512 and
# one without, differ by 3x in latency): what a bench report shows and a NAS latency cache keys
INFERENCE_ISA = (
    "avx2",
    "avx512f",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "amx_bf16",
    "amx_int8",
    "amx_tile",
)


@functools.cache
def _cpuinfo() -> tuple[str, frozenset[str]]:
    model, flags = platform.processor(), frozenset()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = frozenset(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    return model, flags


def invocation(drop: tuple[str, ...] = ()) -> str:
    """How this process was started, as a shell takes it back from its working folder:
    ``cd DIR && yoloslim ARGS`` for the command line (its script or ``python -m yoloslim``),
    ``cd DIR && python SCRIPT ARGS`` for a script, and a note for an interactive session.
    ``drop``: flags (taking no value) left out of a command line's arguments."""
    argv = list(sys.argv)
    if not argv or not argv[0] or argv[0] == "-c":
        return "(the Python API, from an interactive session or python -c)"
    first = Path(argv[0])
    cli = first.name == "yoloslim" or (
        first.name == "__main__.py" and first.parent.name == "yoloslim"
    )
    args = [a for a in argv[1:] if a not in drop] if cli else argv[1:]
    command = shlex.join(["yoloslim", *args] if cli else ["python", argv[0], *args])
    return f"cd {shlex.quote(os.getcwd())} && {command}"


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; else ``platform.processor()``)."""
    return _cpuinfo()[0]


def cpu_flags() -> frozenset[str]:
    """The CPU's ISA flags (``avx2``, ``avx512_vnni``, ``amx_int8``, ...; empty off Linux)."""
    return _cpuinfo()[1]


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask), else the machine's."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def check_threads(
    value: int | None,
    arg: str,
    flag: str = "",
    advice: str = "or leave it out (the runtime's default)",
) -> None:
    """Refuse a thread count over the cores this process may run on: no runtime runs faster
    for it, and a huge one hung ONNX Runtime (a thread per count, GBs of memory) or crashed
    torch (audit47 bench F4). ``arg`` names the setting in the error, ``flag`` (" (--threads)")
    the option that sets it, ``advice`` what else the user may do. A value that is not
    an integer is left to the caller's own check.

    Raises:
        ConfigError: ``value`` is more than :func:`usable_cores`.
    """
    from yoloslim.errors import ConfigError

    have = usable_cores()
    if isinstance(value, numbers.Integral) and value > have:
        raise ConfigError(
            f"{arg}={value}{flag} is more than the {have} cores this process may run on; give at "
            f"most {have}, {advice}"
        )


def available_memory() -> int | None:
    """Bytes of memory a new allocation can take without swapping: Linux's
    ``MemAvailable``, or less where the process's cgroup (a container, a batch job) caps it
    lower; elsewhere the free physical pages. None where none of these can be read. Not
    cached."""
    free = None
    try:
        for line in _MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                free = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    if free is None:
        try:
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    capped = _cgroup_room()
    return free if capped is None else min(free, capped)


def _cgroup_room() -> int | None:
    """The room left under the tightest memory limit of this process's cgroup and its
    ancestors (v2, else v1), counting reclaimable page cache (``inactive_file``) as room, or
    None where no limit is set or none can be read."""
    rooms = [room for folder in _cgroup_folders() if (room := _room_in(folder)) is not None]
    return min(rooms) if rooms else None


_CGROUP = Path("/sys/fs/cgroup")
_SELF_CGROUP = Path("/proc/self/cgroup")
_MEMINFO = Path("/proc/meminfo")


def _cgroup_folders() -> list[Path]:
    """The memory cgroup folders of this process, its own first, then its ancestors."""
    try:
        lines = _SELF_CGROUP.read_text().splitlines()
    except OSError:
        return []
    folders = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":  # v2: one unified tree
            base = _CGROUP
        elif "memory" in controllers.split(","):
            base = _CGROUP / "memory"
        else:
            continue
        own = base / path.lstrip("/")
        folders += [own, *(p for p in own.parents if p.is_relative_to(base))]
    return [f for f in dict.fromkeys(folders) if f.is_dir()]


def _room_in(folder: Path) -> int | None:
    for limit, usage, cache in (
        ("memory.max", "memory.current", "inactive_file"),
        ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file"),
    ):
        try:
            cap = (folder / limit).read_text().strip()
            used = int((folder / usage).read_text().strip())
        except (OSError, ValueError):
            continue
        if cap == "max" or not cap.isdigit() or int(cap) >= 1 << 60:  # no limit here
            return None
        reclaimable = 0
        try:
            for line in (folder / "memory.stat").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == cache:
                    reclaimable = int(value)
        except (OSError, ValueError):
            pass
        return max(0, int(cap) - max(0, used - reclaimable))
    return None


def first_process() -> bool:
    """Whether this is the process that reports: always, except under torchrun (rank 0)."""
    return int(os.environ.get("RANK", "0") or 0) == 0


def world_size() -> int:
    """The processes of this torchrun run (``WORLD_SIZE``); 1 outside torchrun."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def processes_per_node(world: int) -> int:
    """This torchrun run's processes on one node (``LOCAL_WORLD_SIZE``), of its ``world``:
    all of them where torchrun does not say."""
    return int(os.environ.get("LOCAL_WORLD_SIZE") or world)


def relaunch(
    command: str, processes: int | str | None = None, per_node: int | str | None = None
) -> str:
    """``command`` (``yoloslim ...``) launched as the run was: after ``torchrun
    --nproc_per_node N -m`` for a run of N > 1 processes, since the same count goes on
    exactly; a run of several nodes keeps torchrun at one process a node too, and names its
    nodes. ``processes``: the run's count, ``per_node`` its count on one node (None: all on
    one); both None: this process's run, read from torchrun's environment."""
    if processes is None:
        processes = world_size()
        per_node = processes_per_node(processes)
    world = int(processes)
    if world <= 1:
        return command
    local = int(per_node or world)
    if local < world:  # its nodes again, with the run's own rendezvous options
        return (
            f"torchrun --nnodes {world // local} --nproc_per_node {local} (and this run's "
            f"rendezvous options) -m {command}"
        )
    return f"torchrun --nproc_per_node {world} -m {command}"
