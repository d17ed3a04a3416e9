"""Depth pruning: remove whole residual blocks, the least important first.

At batch 1 on a CPU a small detector is overhead-bound: fewer layers buy more
latency than thinner ones (FIELD_NOTES.md, "Measuring CPU latency honestly").
A block's importance is the rise of the detection loss on a few batches when
the block is skipped (its residual branch dropped, so it acts as the identity).
Removal is greedy: after each removal the remaining blocks are scored again.

A removed block leaves the model rebuildable from its arch: backbone stage
depths are updated in ``model.spec``, and the neck's per-stage block counts are
carried by the ``layers`` record (see :func:`yoloslim.models.arch.apply_layers`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import nn

from yoloslim.extras import require
from yoloslim.models.blocks import BasicBlock

__all__ = ["removable_blocks", "block_scores", "remove_block", "prune_depth"]

log = logging.getLogger(__name__)


def removable_blocks(model: nn.Module) -> list[str]:
    """Paths of the residual blocks (``BasicBlock`` with a shortcut) in ``ModuleList``s."""
    out = []
    for name, m in model.named_modules():
        parent, _, idx = name.rpartition(".")
        if isinstance(m, BasicBlock) and m.shortcut and idx.isdigit() and parent.endswith("blocks"):
            out.append(name)
    return out


@torch.no_grad()
def _mean_loss(model: nn.Module, batches, crit) -> float:
    device = next(model.parameters()).device
    total, n = 0.0, 0
    for imgs, targets, _ in batches:
        imgs = imgs.to(device).float().div_(255)
        total += float(crit(model.forward_raw(imgs), targets.to(device))[0])
        n += 1
    return total / max(n, 1)


def block_scores(model: nn.Module, batches, paths: list[str] | None = None) -> dict[str, float]:
    """Loss increase on ``batches`` when each block is skipped (eval mode)."""
    from yoloslim.train.loss import DetectionLoss

    crit = DetectionLoss(model.nc, model.reg_max, model.strides)
    model.eval()
    base = _mean_loss(model, batches, crit)
    scores = {}
    for path in paths if paths is not None else removable_blocks(model):
        # a forward hook's return value replaces the output: the block becomes the identity
        h = model.get_submodule(path).register_forward_hook(lambda m, inp, out: inp[0])
        try:
            scores[path] = _mean_loss(model, batches, crit) - base
        finally:
            h.remove()
    return scores


def remove_block(model: nn.Module, path: str) -> None:
    """Delete the residual block at ``path`` and fix the consumers of its output."""
    stage_path, _, idx_s = path.rpartition(".")
    owner = model.get_submodule(stage_path.rpartition(".")[0])  # CSPStage / ResStage
    blocks: nn.ModuleList = owner.blocks
    idx = int(idx_s)
    if getattr(owner, "concat_all", False) and len(blocks) > 1:
        # GFPN fusion: conv3 reads cat([bypass, block0, block1, ...]); drop this block's slice
        start = owner.conv1.conv.out_channels + idx * owner.conv2.conv.out_channels
        width = owner.conv2.conv.out_channels
        require("torch_pruning", "prune").prune_conv_in_channels(
            owner.conv3.conv, list(range(start, start + width))
        )
    del blocks[idx]
    spec = getattr(model, "spec", None)
    if spec is None:
        return
    parts = path.split(".")
    if parts[:2] == ["backbone", "stages"]:
        spec["backbone"]["stages"][int(parts[2])]["depth"] = len(blocks)
    elif parts[0] == "neck":
        depths = [len(m.blocks) for m in model.neck.modules() if hasattr(m, "concat_all")]
        spec["neck"]["depth"] = max(depths)


def prune_depth(
    model: nn.Module,
    batches,
    *,
    count: int | None = None,
    until: Callable[[nn.Module], bool] | None = None,
) -> dict:
    """Remove ``count`` blocks, or blocks until ``until(model)`` holds, least important first.

    Returns:
        ``{"removed": [{"block", "loss_increase"}...], "remaining": n, "budget_met": bool | None}``.
    """
    removed = []
    met = None
    while True:
        if until is not None and until(model):
            met = True
            break
        if count is not None and len(removed) >= count:
            break
        paths = removable_blocks(model)
        if not paths:
            met = False if until is not None else None
            log.warning("depth pruning: no residual block left to remove")
            break
        scores = block_scores(model, batches, paths)
        path = min(scores, key=scores.get)
        remove_block(model, path)
        removed.append({"block": path, "loss_increase": round(scores[path], 5)})
        log.info("depth pruning: removed %s (loss +%.4f)", path, scores[path])
    return {"removed": removed, "remaining": len(removable_blocks(model)), "budget_met": met}
