"""Unstructured (weight-level) sparsity: global L1 magnitude, made permanent.

Zeros in dense tensors make neither the file smaller nor a dense runtime faster
(ultralytics issues 16806, 3507): the report states the sparsity per layer and
that size and latency are unchanged. Note also that re-parameterisation sums a
RepConv's branches, so the deployed kernels are less sparse than the trained
ones; :func:`sparsity` of the fused model measures that.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from yoloslim.compress.prune_width import ignored_tree

__all__ = ["apply_unstructured", "sparsity"]


@torch.no_grad()
def sparsity(model: nn.Module) -> dict:
    """``{"overall": fraction of zero conv weights, "layers": {name: fraction}}``."""
    layers, zeros, total = {}, 0, 0
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            z = int((m.weight == 0).sum())
            layers[name] = round(z / m.weight.numel(), 4)
            zeros, total = zeros + z, total + m.weight.numel()
    return {"overall": round(zeros / max(total, 1), 4), "layers": layers}


def apply_unstructured(model: nn.Module, amount: float, ignore=()) -> dict:
    """Zero the ``amount`` smallest conv weights network-wide (in place) and make it permanent.

    ``torch.nn.utils.prune.global_unstructured`` with L1 magnitude, then
    ``prune.remove`` so the model holds plain dense tensors (no masks, no
    re-parametrised ``weight_orig``) and saves and exports like any other.

    Returns:
        ``{"amount", "trained_form": sparsity(...), "deploy_form": sparsity(fused copy)}``.
    """
    skip = ignored_tree(model, ignore)  # a parent's convs too (--ignore backbone)
    params = [
        (m, "weight") for m in model.modules() if isinstance(m, nn.Conv2d) and id(m) not in skip
    ]
    torch_prune.global_unstructured(
        params, pruning_method=torch_prune.L1Unstructured, amount=amount
    )
    for m, name in params:
        torch_prune.remove(m, name)
    report = {"amount": amount, "trained_form": sparsity(model)}
    if hasattr(model, "fuse"):
        report["deploy_form"] = sparsity(copy.deepcopy(model).eval().fuse())
    return report
