"""Exponential moving average of model weights (Mean Teacher style, with warm-up ramp)."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

__all__ = ["ModelEMA"]


class ModelEMA:
    """Keeps ``ema = d * ema + (1 - d) * model`` with ``d = decay * (1 - exp(-updates / tau))``.

    The ramp lets the average follow the fast-changing early weights.
    """

    def __init__(
        self, model: nn.Module, decay: float = 0.9998, tau: float = 2000.0, updates: int = 0
    ):
        self.module = copy.deepcopy(getattr(model, "module", model)).eval().requires_grad_(False)
        self.decay, self.tau, self.updates = decay, tau, updates

    def _d(self) -> float:
        return self.decay * (1 - math.exp(-self.updates / self.tau))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self._d()
        src = getattr(model, "module", model).state_dict()
        avg, new = [], []
        for k, v in self.module.state_dict().items():
            if v.dtype.is_floating_point:
                avg.append(v)
                new.append(src[k].detach())
            else:
                v.copy_(src[k])
        # one foreach call per op instead of two ops per tensor: the same arithmetic, less
        # Python (the CPU foreach kernels run the per-tensor ops; bit-identical)
        if avg:
            torch._foreach_mul_(avg, d)
            torch._foreach_add_(avg, new, alpha=1 - d)

    def state_dict(self) -> dict:
        return {"updates": self.updates, "state_dict": self.module.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.updates = int(state["updates"])
        self.module.load_state_dict(state["state_dict"])
