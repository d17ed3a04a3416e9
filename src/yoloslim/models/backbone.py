"""Backbone built from a stage list: the structure zero-shot NAS searches.

A stage spec is a dict ``{"block": "csp"|"res", "out": C, "depth": n, "kernel": k,
"stride": s, "ratio": r}``. Stage 0 is the stem (a single strided conv, no blocks).
The backbone returns the outputs of the stages listed in ``out_indices``
(by default the last three, at strides 8, 16 and 32).
"""

from __future__ import annotations

import torch
from torch import nn

from yoloslim.models.blocks import BasicBlock, ConvBNAct, CSPStage, RepConv, inner_width

__all__ = ["BLOCKS", "SEARCHED_BLOCKS", "Backbone"]

BLOCKS = ("conv", "csp", "res")  # a stage's body: none (its strided conv only), CSP, residual
SEARCHED_BLOCKS = ("csp", "res")  # the bodies NAS builds a stage from


class ResStage(nn.Module):
    """A plain residual stage: ``depth`` BasicBlocks at width ``c``."""

    def __init__(self, c: int, depth: int, k: int, ratio: float, act: str) -> None:
        super().__init__()
        hidden = inner_width(c, ratio)
        self.blocks = nn.ModuleList(BasicBlock(c, hidden, k, act=act) for _ in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class Stage(nn.Module):
    """Downsample (RepConv, stride s) followed by a CSP or residual body."""

    def __init__(self, c1: int, spec: dict, act: str) -> None:
        super().__init__()
        c2, k, s = spec["out"], spec["kernel"], spec["stride"]
        block, depth, ratio = spec["block"], spec["depth"], spec["ratio"]
        self.down = (
            ConvBNAct(c1, c2, 3, s, act=act) if block == "conv" else RepConv(c1, c2, 3, s, act=act)
        )
        if block == "csp":
            self.body: nn.Module = CSPStage(c2, c2, depth, k, ratio, act=act)
        elif block == "res":
            self.body = ResStage(c2, depth, k, ratio, act)
        else:
            self.body = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.down(x))


class Backbone(nn.Module):
    """Sequence of stages; returns the feature maps of ``out_indices``."""

    def __init__(
        self, stages: list[dict], act: str = "silu", out_indices=(2, 3, 4), in_ch: int = 3
    ):
        super().__init__()
        self.stages = nn.ModuleList()
        c = in_ch
        for spec in stages:
            self.stages.append(Stage(c, spec, act))
            c = spec["out"]
        self.out_indices = tuple(out_indices)
        self.out_channels = [stages[i]["out"] for i in self.out_indices]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                outs.append(x)
        return outs
