"""Anchor-free decoupled head with a GFL/DFL box distribution.

Per level: an optional stack of convs for each branch, then a classification
conv (``nc`` logits) and a regression conv (``4 * (reg_max + 1)`` logits: a
discrete distribution over the distances left/top/right/bottom in units of the
stride; Li et al., Generalized Focal Loss, 2020).

Training output: one tensor per level, ``(B, 4*(reg_max+1) + nc, H, W)``.
Decoded output (``decode``): ``(B, A, 4 + nc)``, boxes xyxy in input pixels,
then sigmoid class scores.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from yoloslim.models.blocks import ConvBNAct

__all__ = ["DetectHead", "dfl_expectation", "flatten_maps", "make_anchors"]


def make_anchors(maps: list[torch.Tensor], strides: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Cell-centre anchor points (A, 2) in input pixels and their strides (A, 1), for maps
    ``(B, C, H, W)``, on the maps' device and in their dtype.

    The centres come from ops on the maps themselves (ones counted along each axis), never
    from a ``device=`` argument: ``torch.jit.trace`` records such an argument as a constant,
    and a TorchScript file traced on the CPU then failed on CUDA ("found at least two
    devices"). The ONNX file (after onnxslim) holds the result as constants, as it held
    ``arange``'s. Centres are integers plus 0.5: exact in float16 for maps under 1024 cells a
    side (bfloat16: 128), the same limits as ``arange``.
    """
    points, stride_t = [], []
    for m, s in zip(maps, strides, strict=True):
        ones = torch.ones_like(m[0, 0])  # (H, W)
        ys, xs = (ones.cumsum(0) - 0.5) * s, (ones.cumsum(1) - 0.5) * s
        points.append(torch.stack([xs, ys], -1).reshape(-1, 2))
        stride_t.append(ones.reshape(-1, 1) * s)
    return torch.cat(points), torch.cat(stride_t)


def flatten_maps(maps: list[torch.Tensor]) -> torch.Tensor:
    """Per-level maps ``(B, C, H, W)`` -> ``(B, A, C)``, levels in order (A = sum of H*W)."""
    return torch.cat([m.flatten(2) for m in maps], 2).transpose(1, 2)


def dfl_expectation(reg: torch.Tensor, reg_max: int) -> torch.Tensor:
    """Expected distance (in stride units) from DFL logits ``(..., 4*(reg_max+1))`` -> ``(..., 4)``."""
    shape = reg.shape[:-1]
    prob = reg.reshape(*shape, 4, reg_max + 1).softmax(-1)
    bins = torch.arange(reg_max + 1, device=reg.device, dtype=reg.dtype)
    return (prob * bins).sum(-1)


class DetectHead(nn.Module):
    """Decoupled head over neck levels with strides ``strides``."""

    def __init__(
        self,
        in_channels: list[int],
        nc: int,
        *,
        width: int | list[int] | None = None,
        num_convs: int = 1,
        reg_max: int = 16,
        strides: tuple[int, ...] = (8, 16, 32),
        act: str = "silu",
    ) -> None:
        super().__init__()
        if len(in_channels) != len(strides):
            raise ValueError(f"{len(in_channels)} input levels but {len(strides)} strides")
        self.nc, self.reg_max, self.strides = nc, reg_max, tuple(strides)
        self.no = 4 * (reg_max + 1) + nc
        widths = width if isinstance(width, list) else [width or c for c in in_channels]
        self.cls_convs = nn.ModuleList()
        self.reg_convs = nn.ModuleList()
        self.cls_preds = nn.ModuleList()
        self.reg_preds = nn.ModuleList()
        for c, w in zip(in_channels, widths, strict=True):
            self.cls_convs.append(self._stack(c, w, num_convs, act))
            self.reg_convs.append(self._stack(c, w, num_convs, act))
            cw = w if num_convs else c
            self.cls_preds.append(nn.Conv2d(cw, nc, 1))
            self.reg_preds.append(nn.Conv2d(cw, 4 * (reg_max + 1), 1))
        self.init_bias()

    @staticmethod
    def _stack(c: int, w: int, n: int, act: str) -> nn.Sequential:
        return nn.Sequential(*(ConvBNAct(c if i == 0 else w, w, 3, act=act) for i in range(n)))

    def init_bias(self, prior: float = 0.01) -> None:
        """Class prior bias (focal-loss init) and a flat box distribution."""
        for conv in self.cls_preds:
            nn.init.constant_(conv.bias, -math.log((1 - prior) / prior))
            nn.init.normal_(conv.weight, std=0.01)
        for conv in self.reg_preds:
            nn.init.constant_(conv.bias, 1.0)
            nn.init.normal_(conv.weight, std=0.01)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        out = []
        for i, x in enumerate(feats):
            reg = self.reg_preds[i](self.reg_convs[i](x))
            cls = self.cls_preds[i](self.cls_convs[i](x))
            out.append(torch.cat([reg, cls], 1))
        return out

    def decode(self, raw: list[torch.Tensor]) -> torch.Tensor:
        """Raw maps -> ``(B, A, 4 + nc)``: boxes xyxy (input pixels) and class scores."""
        flat = flatten_maps(raw)  # (B, A, 4*(reg_max+1) + nc)
        nreg = 4 * (self.reg_max + 1)
        points, strides = make_anchors(raw, list(self.strides))
        dist = dfl_expectation(flat[..., :nreg], self.reg_max) * strides
        boxes = torch.cat([points - dist[..., :2], points + dist[..., 2:]], -1)
        return torch.cat([boxes, flat[..., nreg:].sigmoid()], -1)
