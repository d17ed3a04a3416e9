"""Building blocks: ConvBNAct, RepConv, residual and CSP stages.

Every block computes its forward without hard-coded channel arithmetic (no
``torch.chunk``/``split``), so a structurally pruned model rebuilds from the
recorded shapes of its convolutions alone (see :mod:`yoloslim.models.arch`).
"""

from __future__ import annotations

import torch
from torch import nn

from yoloslim.errors import ModelError

__all__ = [
    "ACTIVATIONS",
    "BasicBlock",
    "CSPStage",
    "ConvBNAct",
    "RepConv",
    "fuse_conv_bn",
    "inner_width",
    "is_fused",
    "make_act",
]

_ACTS = {"silu": nn.SiLU, "relu": nn.ReLU, "lrelu": nn.LeakyReLU, "identity": nn.Identity}
# what an arch's ``act`` may name (identity is the blocks' own "no activation")
ACTIVATIONS = ("silu", "relu", "lrelu")


def make_act(name: str) -> nn.Module:
    """Return a fresh activation module by name."""
    if name not in _ACTS:
        raise ValueError(f"act={name!r}: expected one of {sorted(_ACTS)}")
    return _ACTS[name]()


def fuse_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """Fold a BatchNorm into the preceding conv; returns a new conv with bias. The BatchNorm
    is taken as in eval mode (its running statistics) whatever mode it is in."""
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        bias=True,
        padding_mode=conv.padding_mode,
    ).to(conv.weight.device, conv.weight.dtype)  # a half or double model stays so
    w, b = _fold(conv.weight, conv.bias, bn)
    fused.weight.data.copy_(w)
    fused.bias.data.copy_(b)
    return fused.requires_grad_(False)


def _fold(
    weight: torch.Tensor, bias: torch.Tensor | None, bn: nn.BatchNorm2d
) -> tuple[torch.Tensor, torch.Tensor]:
    # y = gamma * (conv(x) + b - mean) / sqrt(var + eps) + beta
    std = (bn.running_var + bn.eps).sqrt()
    gamma = bn.weight if bn.affine else torch.ones_like(std)
    beta = bn.bias if bn.affine else torch.zeros_like(std)
    scale = gamma / std
    b = bias if bias is not None else torch.zeros_like(bn.running_mean)
    return (
        weight.detach() * scale.detach().reshape(-1, 1, 1, 1),
        (beta + (b - bn.running_mean) * scale).detach(),
    )


def _branch(cba: ConvBNAct) -> tuple[torch.Tensor, torch.Tensor]:
    """A conv-BN branch's kernel and bias with its BN folded in, whether or not it has
    been fused on its own already (its BN then is in the conv's bias)."""
    conv = cba.conv
    if isinstance(cba.bn, nn.BatchNorm2d):
        return _fold(conv.weight, conv.bias, cba.bn)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(conv.weight[:, 0, 0, 0])
    return conv.weight.detach(), bias.detach()


def inner_width(c: int, ratio: float) -> int:
    """The width of a block's inner convs at ``ratio`` of ``c``: never under 8 channels (so
    two ratios can build one network: 0.25 and 0.5 of 16 are both 8)."""
    return max(8, round(c * ratio))


class ConvBNAct(nn.Module):
    """Conv2d -> BatchNorm2d -> activation, 'same' padding."""

    def __init__(
        self, c1: int, c2: int, k: int = 1, s: int = 1, g: int = 1, act: str = "silu"
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, k // 2, groups=g, bias=False)
        self.bn: nn.Module = nn.BatchNorm2d(c2)
        self.act = make_act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))

    def fuse(self) -> None:
        """Fold the BatchNorm into the conv (deploy form); idempotent."""
        if isinstance(self.bn, nn.BatchNorm2d):
            self.conv = fuse_conv_bn(self.conv, self.bn)
            self.bn = nn.Identity()


class RepConv(nn.Module):
    """RepVGG-style block: kxk conv-BN + 1x1 conv-BN + identity BN while training.

    ``fuse()`` folds the three branches into one kxk conv with bias (Ding et al.,
    RepVGG, 2021): the 1x1 kernel is zero-padded to kxk and the identity branch is
    a kxk kernel with a centred one per channel.
    """

    def __init__(self, c1: int, c2: int, k: int = 3, s: int = 1, act: str = "silu") -> None:
        super().__init__()
        if k % 2 != 1:
            raise ValueError(f"RepConv kernel k={k} must be odd")
        self.k, self.s = k, s
        self.dense = ConvBNAct(c1, c2, k, s, act="identity")
        self.one = ConvBNAct(c1, c2, 1, s, act="identity")
        self.identity = nn.BatchNorm2d(c1) if c1 == c2 and s == 1 else None
        self.act = make_act(act)
        self.fused: nn.Conv2d | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused is not None:
            return self.act(self.fused(x))
        y = self.dense(x) + self.one(x)
        if self.identity is not None:
            y = y + self.identity(x)
        return self.act(y)

    def fuse(self) -> None:
        """Collapse the branches into ``self.fused``; idempotent."""
        if self.fused is not None:
            return
        conv, g = self.dense.conv, self.dense.conv.groups
        if self.one.conv.groups != g:  # an arch's layers record may give each its own
            raise ModelError(  # an error line, not a traceback (review F2)
                f"RepConv: its {self.k}x{self.k} conv has groups={g} and its 1x1 conv "
                f"groups={self.one.conv.groups}: they do not fold into one conv"
            )
        w, b = _branch(self.dense)
        w1, b1 = _branch(self.one)
        p = self.k // 2
        w = w + nn.functional.pad(w1, [p, p, p, p])
        b = b + b1
        if self.identity is not None:  # channel i is input i % (c / g) of its group
            c = conv.in_channels
            eye = torch.zeros(c, c // g, self.k, self.k, device=w.device, dtype=w.dtype)
            eye[torch.arange(c), torch.arange(c) % (c // g), p, p] = 1.0
            wi, bi = _fold(eye, None, self.identity)
            w, b = w + wi, b + bi
        # with the branches' groups (a grouped RepConv, which an arch's layers record can
        # give, failed to fold or, depthwise, was broadcast into a dense conv: audit50
        # reparam F4)
        fused = nn.Conv2d(
            conv.in_channels, conv.out_channels, self.k, self.s, p, groups=g, bias=True
        )
        fused = fused.to(w.device, w.dtype)
        if fused.weight.shape != w.shape:  # copy_ would broadcast
            raise ModelError(f"RepConv: folded kernel {tuple(w.shape)}, conv {fused.weight.shape}")
        fused.weight.data.copy_(w)
        fused.bias.data.copy_(b)
        self.fused = fused.requires_grad_(False)
        del self.dense, self.one, self.identity
        self.identity = None


def is_fused(model: nn.Module) -> bool:
    """Whether ``model`` is in deploy form, in whole (``Detector.fuse()``,
    ``reparameterize``: its ``deploy`` flag) or in part (a block's own ``fuse()`` called): a
    folded RepConv or Conv+BN cannot be trained (its conv is frozen, its branches gone) or
    checkpointed (the checkpoint's layers are the training form's)."""
    if getattr(model, "deploy", False):
        return True
    return any(
        (isinstance(m, RepConv) and m.fused is not None)
        or (isinstance(m, ConvBNAct) and not isinstance(m.bn, nn.BatchNorm2d))
        for m in model.modules()
    )


class BasicBlock(nn.Module):
    """Residual block: RepConv(k) -> ConvBNAct(k), plus the input when ``shortcut``."""

    def __init__(self, c: int, c_hidden: int, k: int = 3, act: str = "silu", shortcut: bool = True):
        super().__init__()
        self.conv1 = RepConv(c, c_hidden, k, act=act)
        self.conv2 = ConvBNAct(c_hidden, c, k, act=act)
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.conv1(x))
        return x + y if self.shortcut else y


class CSPStage(nn.Module):
    """Cross-stage-partial stage (as in DAMO-YOLO's TinyNAS-CSP and RepGFPN).

    Two 1x1 projections split the input; one path runs ``depth`` residual blocks.
    The output 1x1 conv reads the concatenation of the bypass, and either the last
    block's output (``concat_all=False``, backbone) or every block's output
    (``concat_all=True``, GFPN-style neck fusion).
    """

    def __init__(
        self,
        c1: int,
        c2: int,
        depth: int = 1,
        k: int = 3,
        ratio: float = 0.5,
        act: str = "silu",
        concat_all: bool = False,
        hidden_ratio: float = 1.0,
    ) -> None:
        super().__init__()
        mid = inner_width(c2, ratio)
        self.conv1 = ConvBNAct(c1, mid, 1, act=act)
        self.conv2 = ConvBNAct(c1, mid, 1, act=act)
        hidden = inner_width(mid, hidden_ratio)
        self.blocks = nn.ModuleList(BasicBlock(mid, hidden, k, act=act) for _ in range(depth))
        self.concat_all = concat_all
        n_cat = 1 + (depth if concat_all and depth else 1)
        self.conv3 = ConvBNAct(mid * n_cat, c2, 1, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bypass = self.conv1(x)
        y = self.conv2(x)
        outs = [bypass]
        for block in self.blocks:
            y = block(y)
            if self.concat_all:
                outs.append(y)
        if not self.concat_all or not self.blocks:
            outs.append(y)
        return self.conv3(torch.cat(outs, 1))
