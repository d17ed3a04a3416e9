"""Helpers for tests of model transforms (fusion, export, pruning)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["SMALL_ARCH", "randomize_bn"]

# a small detector of every block kind (a 16-channel conv stem, then CSP and res stages) that
# tests prune, reload and fuse in seconds
SMALL_ARCH = {
    "nc": 2,
    "backbone": {
        "stages": [
            {"block": "conv", "out": 16, "depth": 0, "kernel": 3, "stride": 2, "ratio": 1.0},
            {"block": "csp", "out": 16, "depth": 1, "kernel": 3, "stride": 2, "ratio": 0.5},
            {"block": "csp", "out": 32, "depth": 2, "kernel": 3, "stride": 2, "ratio": 0.5},
            {"block": "csp", "out": 32, "depth": 1, "kernel": 3, "stride": 2, "ratio": 0.5},
            {"block": "res", "out": 32, "depth": 2, "kernel": 3, "stride": 2, "ratio": 0.5},
        ]
    },
    "neck": {"out": [16, 16, 32], "depth": 2},
    "head": {"width": [16, 16, 16]},
}


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
