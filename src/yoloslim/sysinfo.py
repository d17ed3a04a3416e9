"""What this machine is, read once: CPU model, ISA flags and the cores this process may use."""

from __future__ import annotations

import functools
import os
import platform

__all__ = ["available_memory", "cpu_flags", "cpu_model", "usable_cores"]


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


def available_memory() -> int | None:
    """Bytes of memory a new allocation can take without swapping: Linux's
    ``MemAvailable``, or less where the process's cgroup (a container, a batch job) caps it
    lower; elsewhere the free physical pages. None where none of these can be read. Not
    cached."""
    free = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
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
    """The room left under this process's cgroup memory limit (v2, else v1), or None."""
    for limit, usage in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ),
    ):
        try:
            with open(limit) as f:
                cap = f.read().strip()
            with open(usage) as f:
                used = int(f.read().strip())
            if cap == "max" or int(cap) >= 1 << 60:  # no limit
                return None
            return max(0, int(cap) - used)
        except (OSError, ValueError):
            continue
    return None
