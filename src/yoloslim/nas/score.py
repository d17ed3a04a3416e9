"""MAE-DET entropy score (Sun et al., "MAE-DET", ICML 2022), as TinyNAS computes it.

No data and no training: every conv gets weights ~ N(0, 1) and no bias, BatchNorm
and activations are skipped, the input is N(0, 1) of shape ``[B, 3, R, R]``. Each
conv's output is divided by its own standard deviation and the std is recorded;
a block's sigma is the product of its layers' stds. For each of the five stride-2
stages ``i``::

    S_i = sum(log sigma_b for every block b from the input to the end of stage i) + log(C_i)
    score = sum_i alpha_i * S_i            alpha = [0, 0, 1, 1, 6] by default

averaged over ``repeats`` fresh random initialisations (reference:
alibaba/lightweight-neural-architecture-search, ``compute_entropy.py``; the block
forward is ``entropy_forward``).

``method="analytic"`` is the closed form the reference's current ``compute_madnas.py``
uses (each block's ``get_madnas_forward``): a conv with N(0, 1) weights on a unit-std
input has output std ``sqrt(fan_in)``, ``fan_in = C_in / groups * k_h * k_w``, so each
conv adds ``log sqrt(fan_in)`` with no forward pass and no randomness. The Gaussian
forward measures the same quantity, a little lower where zero padding thins the borders
(most on small maps with large kernels), and with sampling noise. The closed form has no
seed, and computing it is about a hundred times faster (a search then spends its time
on the exact FLOPs count).

Mapping our blocks onto the reference's:

- The reference's residual links are not part of the entropy forward (only the
  main path's convs are run), so a :class:`BasicBlock` contributes its two convs
  and its shortcut is ignored.
- A :class:`RepConv` is one kxk conv after re-parameterisation, and the search
  ranks deploy-form networks, so it counts as one kxk conv (its 1x1 and identity
  branches are training-time only).
- In a CSP stage the main path is ``conv2 -> blocks -> conv3``; the bypass ``conv1``
  runs on the same input and is normalised the same way so that ``conv3`` sees the
  concatenation of two unit-std maps, but its std is not on the path and is not
  recorded (like the reference's residual projection).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from yoloslim.errors import ConfigError
from yoloslim.models.backbone import Backbone, ResStage, Stage
from yoloslim.models.blocks import BasicBlock, ConvBNAct, CSPStage, RepConv

__all__ = ["DEFAULT_STAGE_WEIGHTS", "SCORE_METHODS", "SCORE_TEXT", "entropy_score", "stage_scores"]

DEFAULT_STAGE_WEIGHTS = (0.0, 0.0, 1.0, 1.0, 6.0)
SCORE_TEXT = {  # what each method computes, for reports
    "gaussian": "MAE-DET entropy (N(0,1) weights, BN and activations skipped, Gaussian input)",
    "analytic": "MAE-DET entropy, closed form (log sqrt(fan_in) per conv, as TinyNAS madnas)",
}
SCORE_METHODS = tuple(SCORE_TEXT)


class _Walker:
    """Runs the entropy forward with fresh N(0, 1) weights drawn from one generator, or,
    with ``gen=None``, the analytic form on meta tensors (shapes only)."""

    def __init__(self, gen: torch.Generator | None) -> None:
        self.gen = gen
        self.log_sigmas: list[float] = []  # one per block, in forward order

    def conv(self, x: torch.Tensor, conv: nn.Conv2d) -> tuple[torch.Tensor, float]:
        if self.gen is None:
            kh, kw = conv.kernel_size
            std = math.sqrt(x.shape[1] // conv.groups * kh * kw)
            w = torch.empty(conv.weight.shape, device="meta")
            return F.conv2d(x, w, None, conv.stride, conv.padding, conv.dilation, conv.groups), std
        w = torch.randn(conv.weight.shape, generator=self.gen, dtype=x.dtype)
        y = F.conv2d(x, w, None, conv.stride, conv.padding, conv.dilation, conv.groups)
        std = y.std()
        return y / std, float(std)

    def block(self, x: torch.Tensor, convs: Sequence[nn.Conv2d]) -> torch.Tensor:
        """A block = a chain of convs; records log(product of their output stds)."""
        log_sigma = 0.0
        for conv in convs:
            x, std = self.conv(x, conv)
            log_sigma += math.log(std)
        self.log_sigmas.append(log_sigma)
        return x

    def stage(self, x: torch.Tensor, stage: Stage) -> torch.Tensor:
        x = self.block(x, [_conv_of(stage.down)])
        body = stage.body
        if isinstance(body, CSPStage):
            bypass, _ = self.conv(x, body.conv1.conv)
            y = self.block(x, [body.conv2.conv])
            outs = [bypass]
            for blk in body.blocks:
                y = self.block(y, _basic_convs(blk))
                if body.concat_all:
                    outs.append(y)
            if not body.concat_all or not body.blocks:
                outs.append(y)
            x = self.block(torch.cat(outs, 1), [body.conv3.conv])
        elif isinstance(body, ResStage):
            for blk in body.blocks:
                x = self.block(x, _basic_convs(blk))
        elif not isinstance(body, nn.Identity):
            raise ConfigError(f"entropy score: unsupported stage body {type(body).__name__}")
        return x


def _conv_of(m: nn.Module) -> nn.Conv2d:
    """The deploy-form conv of a ConvBNAct or RepConv (shape, stride and padding only)."""
    if isinstance(m, RepConv):
        return m.fused if m.fused is not None else m.dense.conv
    if isinstance(m, ConvBNAct):
        return m.conv
    raise ConfigError(f"entropy score: unsupported layer {type(m).__name__}")


def _basic_convs(blk: nn.Module) -> list[nn.Conv2d]:
    if not isinstance(blk, BasicBlock):
        raise ConfigError(f"entropy score: unsupported block {type(blk).__name__}")
    return [_conv_of(blk.conv1), _conv_of(blk.conv2)]


def stage_scores(
    backbone: Backbone, imgsz: int, *, batch: int = 4, seed: int = 0, method: str = "gaussian"
) -> list[float]:
    """``S_i`` of every stage (unweighted): for one random initialisation, or analytic."""
    if method == "analytic":
        walker = _Walker(None)
        x = torch.empty((1, 3, imgsz, imgsz), device="meta")
    else:
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn((batch, 3, imgsz, imgsz), generator=gen)
        walker = _Walker(gen)
    scores = []
    with torch.no_grad():
        for stage in backbone.stages:
            x = walker.stage(x, stage)
            scores.append(sum(walker.log_sigmas) + math.log(x.shape[1]))
    return scores


def entropy_score(
    backbone: Backbone,
    imgsz: int,
    *,
    stage_weights: Sequence[float] = DEFAULT_STAGE_WEIGHTS,
    repeats: int = 3,
    batch: int = 4,
    seed: int = 0,
    method: str = "gaussian",
) -> dict:
    """The MAE-DET score of a backbone, averaged over ``repeats`` random initialisations.

    Args:
        backbone: a built :class:`Backbone` (only its conv shapes are read, so a
            meta-device model is fine); pruned widths are honoured.
        imgsz: side of the Gaussian input.
        stage_weights: ``alpha_i``, one per stage.
        repeats: random initialisations to average over.
        batch: batch size of the Gaussian input.
        seed: initialisation ``r`` uses seed ``seed * 1000 + r`` (deterministic on CPU).
        method: ``"gaussian"`` (the random forward) or ``"analytic"`` (the closed form;
            ``repeats``, ``batch`` and ``seed`` do not apply and ``std`` is 0).

    Returns:
        ``{"score": mean, "std": across repeats, "stages": mean S_i per stage}``.

    Example:
        >>> from yoloslim.models import build_model
        >>> round(entropy_score(build_model("damo-nano").backbone, 320)["score"])
        503
    """
    if len(stage_weights) != len(backbone.stages):
        raise ConfigError(
            f"stage_weights has {len(stage_weights)} entries; the backbone has "
            f"{len(backbone.stages)} stages"
        )
    if repeats < 1:
        raise ConfigError(f"init_repeats={repeats} must be >= 1")
    if method not in SCORE_METHODS:
        raise ConfigError(f"score method={method!r} must be one of {SCORE_METHODS}")
    if method == "analytic":
        repeats = 1
    per_repeat = [
        stage_scores(backbone, imgsz, batch=batch, seed=seed * 1000 + r, method=method)
        for r in range(repeats)
    ]
    totals = [sum(a * s for a, s in zip(stage_weights, ss, strict=True)) for ss in per_repeat]
    mean = sum(totals) / repeats
    var = sum((t - mean) ** 2 for t in totals) / repeats
    stages = [sum(ss[i] for ss in per_repeat) / repeats for i in range(len(stage_weights))]
    return {"score": mean, "std": math.sqrt(var), "stages": stages}
