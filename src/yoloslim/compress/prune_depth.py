"""Depth pruning: remove whole residual blocks, the least important first.

At batch 1 on a CPU a small detector is overhead-bound: fewer layers buy more
latency than thinner ones.
A block's importance is the rise of the detection loss on a few batches when
it is removed, as :func:`remove_block` removes it. In a chain (the backbone) that
is the same as skipping it (its residual branch dropped, so it acts as the
identity); in a GFPN fusion stage, whose output conv reads every block's output,
removal folds the block's input weights onto the slot of the block before it,
which is exact for the same skip, except for the first block (its input has no
slot of its own), so every block is scored by the model its removal leaves.
Removal is greedy: after each removal the remaining blocks are scored again.

A removed block leaves the model rebuildable from its arch: backbone stage
depths are updated in ``model.spec``, and the neck's per-stage block counts are
carried by the ``layers`` record (see :func:`yoloslim.models.arch.apply_layers`).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
from collections.abc import Callable

import torch
from torch import nn

from yoloslim.extras import require
from yoloslim.models.blocks import BasicBlock
from yoloslim.progress import scoring_bar

__all__ = ["removable_blocks", "block_scores", "remove_block", "prune_depth", "ORIGIN"]

log = logging.getLogger(__name__)

# a block's path in the model before any block was removed: a removal renumbers the blocks
# after it (blocks.1 becomes blocks.0), so reports name blocks by this attribute
ORIGIN = "_yoloslim_origin"


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


def block_scores(
    model: nn.Module,
    batches,
    paths: list[str] | None = None,
    done: Callable[[], None] | None = None,
) -> dict[str, float]:
    """Loss increase on ``batches`` when each block is removed as :func:`remove_block`
    removes it (eval mode): skipped, where that is the same, else on a copy without it.
    ``done`` is called after each block is scored (a progress bar's step)."""
    from yoloslim.train.loss import DetectionLoss

    crit = DetectionLoss(model.nc, model.reg_max, model.strides)
    model.eval()
    base = _mean_loss(model, batches, crit)
    scores = {}
    for path in paths if paths is not None else removable_blocks(model):
        if _removal_is_skip(model, path):
            # a forward hook's return value replaces the output: the block becomes the identity
            h = model.get_submodule(path).register_forward_hook(lambda m, inp, out: inp[0])
            try:
                scores[path] = _mean_loss(model, batches, crit) - base
            finally:
                h.remove()
        else:  # scored on a copy without it (a deep copy costs more than the hook)
            trial = copy.deepcopy(model)
            remove_block(trial, path)
            scores[path] = _mean_loss(trial, batches, crit) - base
        if done is not None:
            done()
    return scores


def _removal_is_skip(model: nn.Module, path: str) -> bool:
    """Whether :func:`remove_block` leaves the model that skipping the block gives: in a
    chain, and in a GFPN fusion stage except for its first block of several."""
    stage_path, _, idx = path.rpartition(".")
    owner = model.get_submodule(stage_path.rpartition(".")[0])
    return not (getattr(owner, "concat_all", False) and len(owner.blocks) > 1 and idx == "0")


def remove_block(model: nn.Module, path: str) -> None:
    """Delete the residual block at ``path`` and fix the consumers of its output."""
    stage_path, _, idx_s = path.rpartition(".")
    owner = model.get_submodule(stage_path.rpartition(".")[0])  # CSPStage / ResStage
    blocks: nn.ModuleList = owner.blocks
    idx = int(idx_s)
    if getattr(owner, "concat_all", False) and len(blocks) > 1:
        # GFPN fusion: conv3 reads cat([bypass, block0, block1, ...]). Without block i, slot
        # i - 1's output is what block i would have passed on, so conv3's weights on block
        # i's slot move onto slot i - 1's (conv3 is linear in its input: exact); block 0's
        # input (conv2's output) has no slot, so its weights just go
        start = owner.conv1.conv.out_channels + idx * owner.conv2.conv.out_channels
        width = owner.conv2.conv.out_channels
        if idx > 0:
            with torch.no_grad():
                w = owner.conv3.conv.weight
                w[:, start - width : start] += w[:, start : start + width]
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
    progress: bool = False,
) -> dict:
    """Remove ``count`` blocks, or blocks until ``until(model)`` holds, least important first.

    ``progress``: a bar on stderr over the blocks each removal scores (every removal scores
    all the blocks left, each on all of ``batches``: minutes for a larger model).

    Returns:
        ``{"removed": [{"block", "loss_increase"}...], "remaining": n, "budget_met": bool | None}``.
    """
    removed = []
    met = None
    for p in removable_blocks(model):  # named as they are before this call's first removal
        block = model.get_submodule(p)
        if not hasattr(block, ORIGIN):
            setattr(block, ORIGIN, p)
    with contextlib.ExitStack() as stack:
        bar = None
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
            done = None
            if progress:
                if bar is None:
                    bar = stack.enter_context(scoring_bar())
                of = f" of {count}" if count is not None else ""
                task = bar.add_task(
                    f"depth pruning: removal {len(removed) + 1}{of}", total=len(paths)
                )
                done = functools.partial(bar.advance, task)
            scores = block_scores(model, batches, paths, done=done)
            path = min(scores, key=scores.get)
            name = getattr(model.get_submodule(path), ORIGIN, path)
            remove_block(model, path)
            increase = round(scores[path], 5) + 0.0  # not -0.0
            removed.append({"block": name, "loss_increase": increase})
            log.info("depth pruning: removed %s (loss %+.4f)", name, scores[path])
    return {"removed": removed, "remaining": len(removable_blocks(model)), "budget_met": met}
