"""torchrun / DistributedDataParallel helpers (gloo on CPU, nccl on CUDA)."""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist

__all__ = [
    "init_distributed",
    "barrier",
    "agree",
    "cleanup",
    "broadcast_module",
    "average_gradients",
]

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


def agree(ok: bool) -> bool:
    """Whether every process says ``ok`` (True outside torchrun): a step that only the
    first process takes (the folder lock, the checks made under it) ends the run on every
    process alike when it fails, where the others would otherwise learn of it only as a
    lost peer in their next collective."""
    if not dist.is_initialized():
        return ok
    flag = torch.tensor([1 if ok else 0], dtype=torch.int32)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def broadcast_module(module: torch.nn.Module) -> None:
    """Give every process rank 0's parameters and buffers of ``module`` (what DDP does for
    the model it wraps, here for modules it does not: a distillation's align convs)."""
    if dist.is_initialized():
        for t in [*module.parameters(), *module.buffers()]:
            dist.broadcast(t.data, src=0)


@torch.no_grad()
def average_gradients(module: torch.nn.Module) -> None:
    """Average the gradients of ``module``'s parameters over the processes (DDP averages
    only those of the model it wraps). A parameter without a gradient here takes part
    with zeros, so every process makes the same calls."""
    if not dist.is_initialized():
        return
    world = dist.get_world_size()
    for p in module.parameters():
        if not p.requires_grad:
            continue
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
        p.grad.div_(world)
