"""torchrun / DistributedDataParallel helpers (gloo on CPU, nccl on CUDA)."""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist

__all__ = ["init_distributed", "barrier", "cleanup"]

# Rank 0 validates and saves each epoch while the other ranks wait at a barrier. The
# collectives' default timeout (30 minutes for gloo, 10 for nccl) would end a run whose
# validation takes longer than that (a large val split on CPU), so it is raised.
TIMEOUT = timedelta(hours=3)


def init_distributed(device: torch.device) -> tuple[int, int]:
    """Join the process group when launched by torchrun; returns ``(rank, world_size)``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or dist.is_initialized():
        return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, timeout=TIMEOUT)
    return dist.get_rank(), dist.get_world_size()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
