"""Helpers for tests of model transforms (fusion, export, pruning)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["randomize_bn"]


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm2d non-trivial statistics and affine terms (in place).

    Freshly built BNs are identities in eval mode, so a fusion bug could go unseen.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
    return model
