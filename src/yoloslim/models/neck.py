"""RepGFPN-style neck (DAMO-YOLO's "GiraffeNeckV2", simplified).

Queen-fusion pattern over three scales: a top-down pass fuses each level with
the upsampled coarser level and the downsampled finer level, then a bottom-up
pass refines the coarse levels with downsampled finer outputs. Every fusion is
a concat followed by a CSP stage whose 1x1 output conv concatenates all block
outputs (GFPN's dense connections).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from yoloslim.models.blocks import ConvBNAct, CSPStage

__all__ = ["RepGFPN"]


class RepGFPN(nn.Module):
    """Fuse backbone features (C3, C4, C5) into neck outputs (P3, P4, P5)."""

    def __init__(
        self,
        in_channels: list[int],
        out_channels: list[int],
        depth: int = 1,
        kernel: int = 3,
        ratio: float = 0.5,
        act: str = "silu",
    ) -> None:
        super().__init__()
        c3, c4, c5 = in_channels
        o3, o4, o5 = out_channels

        def csp(ci: int, co: int) -> CSPStage:
            return CSPStage(ci, co, depth, kernel, ratio, act=act, concat_all=True)

        # top-down: N5 = f(C5, down(C4)); N4 = f(C4, up(N5), down(C3)); P3 = f(C3, up(N4))
        self.down_c4 = ConvBNAct(c4, c4, 3, 2, act=act)
        self.fuse_n5 = csp(c5 + c4, o5)
        self.down_c3 = ConvBNAct(c3, c3, 3, 2, act=act)
        self.fuse_n4 = csp(c4 + o5 + c3, o4)
        self.fuse_p3 = csp(c3 + o4, o3)
        # bottom-up: P4 = f(N4, down(P3)); P5 = f(N5, down(P4))
        self.down_p3 = ConvBNAct(o3, o3, 3, 2, act=act)
        self.fuse_p4 = csp(o4 + o3, o4)
        self.down_p4 = ConvBNAct(o4, o4, 3, 2, act=act)
        self.fuse_p5 = csp(o5 + o4, o5)
        self.out_channels = list(out_channels)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        c3, c4, c5 = feats
        n5 = self.fuse_n5(torch.cat([c5, self.down_c4(c4)], 1))
        up5 = F.interpolate(n5, size=c4.shape[-2:], mode="nearest")
        n4 = self.fuse_n4(torch.cat([c4, up5, self.down_c3(c3)], 1))
        up4 = F.interpolate(n4, size=c3.shape[-2:], mode="nearest")
        p3 = self.fuse_p3(torch.cat([c3, up4], 1))
        p4 = self.fuse_p4(torch.cat([n4, self.down_p3(p3)], 1))
        p5 = self.fuse_p5(torch.cat([n5, self.down_p4(p4)], 1))
        return [p3, p4, p5]
