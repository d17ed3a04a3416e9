"""Channel (width) pruning on Torch-Pruning's dependency graph.

Mechanism apart from policy (Torch-Pruning's own split): the
:class:`torch_pruning.DependencyGraph` finds the coupled groups (residual adds,
RepConv's summed branches and identity BN, concats), an importance criterion
scores each group's channels, and :func:`prune_width` decides how many go --
a ratio, or the ratio found by bisection that meets a FLOPs / parameter budget.
"""

from __future__ import annotations

import copy
import fnmatch
import logging
import math
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import torch
from torch import nn

from yoloslim.errors import ConfigError
from yoloslim.extras import require

if TYPE_CHECKING:
    import torch_pruning as tp

__all__ = [
    "CRITERIA",
    "conv_widths",
    "make_importance",
    "ignored_modules",
    "prune_width",
    "taylor_gradients",
    "bn_sparsity_train",
    "profile",
]

log = logging.getLogger(__name__)


def _tp():
    """Torch-Pruning (the ``prune`` extra), imported when pruning starts."""
    return require("torch_pruning", "prune")


#: importance criteria by name -> factory (Torch-Pruning importance classes)
CRITERIA: dict[str, Callable[[], tp.importance.Importance]] = {
    "l1": lambda: _tp().importance.MagnitudeImportance(p=1),
    "l2": lambda: _tp().importance.MagnitudeImportance(p=2),
    "bn-scale": lambda: _tp().importance.BNScaleImportance(),
    "taylor": lambda: _tp().importance.TaylorImportance(),
    "random": lambda: _tp().importance.RandomImportance(),
}

#: prediction convs of the built-in head: their outputs are the class logits and the DFL bins
HEAD_OUTPUTS = ("head.cls_preds.*", "head.reg_preds.*")


def make_importance(criterion: str) -> tp.importance.Importance:
    """A fresh Torch-Pruning importance object for ``criterion``."""
    if criterion not in CRITERIA:
        raise ConfigError(f"criterion={criterion!r}: expected one of {sorted(CRITERIA)}")
    return CRITERIA[criterion]()


def ignored_modules(model: nn.Module, patterns: Iterable[str]) -> list[nn.Module]:
    """Modules whose name matches one of the fnmatch ``patterns`` (their outputs stay whole)."""
    pats = list(patterns)
    if hasattr(model, "head") and hasattr(model, "spec"):
        pats += list(HEAD_OUTPUTS)
    return [m for name, m in model.named_modules() if name and _matches(name, pats)]


def _matches(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) or name == p for p in patterns)


def _forward(model: nn.Module, x: torch.Tensor):
    # raw head maps: the decode step's reshape/softmax would only confuse the graph
    return model.forward_raw(x) if hasattr(model, "forward_raw") else model(x)


def profile(model: nn.Module, imgsz: int) -> dict:
    """``{"params", "gflops"}`` at ``imgsz`` of the deploy form export and bench run
    (:func:`~yoloslim.compress.reparam.deploy_form`: RepConv and every Conv+BN folded)."""
    from yoloslim.bench.flops import count_flops, count_params
    from yoloslim.compress.reparam import deploy_form

    deploy = deploy_form(model)[0]
    return {"params": count_params(deploy), "gflops": count_flops(deploy, imgsz)["gflops"]}


def conv_widths(model: nn.Module) -> dict[str, int]:
    """Output channels of every convolution by module name (the widths a ratio refers to)."""
    return {n: m.out_channels for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}


def _keep(width: int, ratio: float, round_to: int | None, max_layer_ratio: float) -> int:
    """Channels a ``width``-channel layer keeps at ``ratio`` of it removed: a multiple of
    ``round_to`` (rounded to nearest, a tie upwards: Python's ``round`` sends ties to the
    even multiple, so at 0.25 a 16-channel layer kept 16 while a 48-channel one kept 32),
    never under ``round_to`` (or 1), never more than ``max_layer_ratio`` of the layer
    removed."""
    step = round_to or 1
    keep = max(step, step * math.floor(width * (1 - ratio) / step + 0.5))
    floor = -(-width * (1 - max_layer_ratio) // step) * step  # ceil to a multiple of step
    return int(min(width, max(keep, floor)))


def _global_step_ratio(pruner, model: nn.Module, ratio: float, widths: dict[str, int]) -> float:
    """The share of the prunable channels there are now that leaves ``1 - ratio`` of those
    in ``widths`` (before the first step): ``1 - (1 - ratio) * before / now``, counted as
    Torch-Pruning counts them (each coupled group's root layer, ignored layers left out).
    Its global ratio is a share of the channels when its pruner is built, so a cumulative
    ratio passed as is compounds (0.25 then 0.5 of a damo-nano kept 43 % of the channels,
    not 52 % as one step does)."""
    names = {id(m): n for n, m in model.named_modules()}
    now = before = 0
    for group in pruner.DG.get_all_groups(
        ignored_layers=pruner.ignored_layers, root_module_types=pruner.root_module_types
    ):
        root = group[0][0].target.module
        width = pruner.DG.get_out_channels(root)
        now += width
        before += widths.get(names.get(id(root), ""), width)
    return 1 - (1 - ratio) * before / now if now else 0.0


def _layer_ratios(
    model: nn.Module,
    ratio: float,
    widths: dict[str, int] | None,
    round_to: int | None,
    max_layer_ratio: float,
) -> dict[nn.Module, float]:
    """Per-convolution pruning ratios of the current widths that land each layer on its kept
    channel count, computed from ``widths`` (the widths before the first step).

    Torch-Pruning rounds a layer's kept channels *down* to ``round_to`` and skips a whole
    coupled group when one layer would keep none. A single global ratio therefore prunes
    less at high ratios (small layers reach zero and their groups are skipped) and more over
    several steps (rounding down compounds). Targets computed here per layer from the
    original widths avoid both: the kept count is a non-zero multiple of ``round_to``,
    monotone in ``ratio``, and the same whether reached in one step or several.
    """
    out = {}
    for name, m in model.named_modules():
        if not isinstance(m, nn.Conv2d):
            continue
        now = m.out_channels
        keep = min(now, _keep((widths or {}).get(name, now), ratio, round_to, max_layer_ratio))
        # + 0.5: Torch-Pruning keeps int(now * (1 - r)) channels; aim between two integers
        out[m] = max(0.0, 1 - (keep + 0.5) / now) if keep < now else 0.0
    return out


def _prune_once(
    model: nn.Module,
    ratio: float,
    *,
    criterion: str,
    imgsz: int,
    ignore: list[str],
    global_pruning: bool,
    round_to: int | None,
    max_layer_ratio: float,
    widths: dict[str, int] | None = None,
) -> None:
    """Prune ``model`` in place so that ``ratio`` of each layer's channels in ``widths`` (the
    widths before pruning began; default: the current ones) are gone.

    Local pruning sets each layer's kept count (see :func:`_layer_ratios`); global pruning
    ranks channels across layers with Torch-Pruning's own ratio (of the channels there are
    now, so a later step's cumulative ``ratio`` is first turned into a ratio of those: see
    :func:`_global_step_ratio`) and its per-layer cap (which applies to each step).
    """
    if ratio <= 0:
        return
    p = next(model.parameters())
    x = torch.zeros(1, 3, imgsz, imgsz, device=p.device, dtype=p.dtype)
    was_training = model.training
    model.eval()  # tracing in eval mode leaves BN statistics untouched
    if global_pruning:
        kw = dict(pruning_ratio=ratio, max_pruning_ratio=max_layer_ratio)
    else:
        per_layer = _layer_ratios(model, ratio, widths, round_to, max_layer_ratio)
        if not any(per_layer.values()):
            return
        kw = dict(pruning_ratio=0.0, pruning_ratio_dict=per_layer, max_pruning_ratio=1.0)

    def pruner_for(**kw):
        return _tp().pruner.BasePruner(
            model,
            x,
            make_importance(criterion),
            global_pruning=global_pruning,
            ignored_layers=ignored_modules(model, ignore),
            round_to=round_to,
            forward_fn=_forward,
            **kw,
        )

    try:
        pruner = pruner_for(**kw)
        if global_pruning and widths and widths != conv_widths(model):  # a later step
            step = _global_step_ratio(pruner, model, ratio, widths)
            if step <= 0:
                return
            pruner = pruner_for(**{**kw, "pruning_ratio": step})
        pruner.step()
    finally:
        model.train(was_training)


def prune_width(
    model: nn.Module,
    *,
    criterion: str,
    imgsz: int,
    ratio: float | None = None,
    target_flops: float | None = None,
    target_params: float | None = None,
    ignore: Iterable[str] = (),
    global_pruning: bool = False,
    round_to: int | None = None,
    max_layer_ratio: float = 0.9,
    tolerance: float = 0.01,
    widths: dict[str, int] | None = None,
) -> tuple[nn.Module, dict]:
    """Prune ``model`` by a channel ratio, or to a GFLOPs / params (millions) budget.

    ``ratio`` is the fraction of each layer's channels in ``widths`` (from
    :func:`conv_widths` before the first of several steps; default: the current widths)
    that is gone afterwards, so steps of an iterative schedule pass cumulative ratios.

    With a budget, the ratio is found by bisection on copies of the model (each
    trial prunes a copy and counts its deploy-form FLOPs or parameters); the
    largest model within the budget is kept. Taylor importance reads the
    parameters' ``.grad``, which the copies inherit.

    Returns:
        ``(pruned model, {"ratio": used ratio, "budget_met": bool | None})``; with a
        ratio the model is pruned in place, with a budget the pruned copy is returned.
    """
    kw = dict(
        criterion=criterion,
        imgsz=imgsz,
        ignore=list(ignore),
        global_pruning=global_pruning,
        round_to=round_to,
        max_layer_ratio=max_layer_ratio,
        widths=widths,
    )
    if ratio is not None:
        if ratio > max_layer_ratio and not global_pruning:
            log.warning(
                "ratio %.3g is above advanced.max_layer_ratio %.2f: no layer loses more than that",
                ratio,
                max_layer_ratio,
            )
        _prune_once(model, ratio, **kw)
        return model, {"ratio": ratio, "budget_met": None}
    key, target = ("gflops", target_flops) if target_flops is not None else ("params", None)
    if target is None:
        if target_params is None:
            raise ConfigError("prune_width needs ratio, target_flops or target_params")
        target = target_params * 1e6

    def trial(r: float) -> tuple[nn.Module, float]:
        m = _copy_with_grads(model)
        _prune_once(m, r, **kw)
        return m, profile(m, imgsz)[key]

    if profile(model, imgsz)[key] <= target:
        return model, {"ratio": 0.0, "budget_met": True}
    lo, hi = 0.0, 0.95
    best: tuple[nn.Module, float] | None = None
    smallest: tuple[nn.Module, float, float] | None = None  # the least over-budget trial
    for _ in range(8):
        mid = (lo + hi) / 2
        m, value = trial(mid)
        if value <= target:
            hi, best = mid, (m, mid)
            if value >= target * (1 - tolerance):
                break
        else:
            lo = mid
            if smallest is None or value < smallest[2]:
                smallest = (m, mid, value)
    met = best is not None
    if best is None:
        m, value = trial(hi)
        if smallest is not None and smallest[2] < value:
            m, hi, value = smallest
        best = (m, hi)
        met = value <= target
        if not met:
            log.warning(
                "budget %s <= %.4g not reachable by width pruning: the smallest is %.4g "
                "(ratio %.3g; advanced.max_layer_ratio %.2f caps each layer)",
                key,
                target,
                value,
                hi,
                max_layer_ratio,
            )
    return best[0], {"ratio": round(best[1], 4), "budget_met": met}


def _copy_with_grads(model: nn.Module) -> nn.Module:
    m = copy.deepcopy(model)
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    for n, p in m.named_parameters():
        if n in grads:
            p.grad = grads[n].clone()
    return m


def _loss_batches(model: nn.Module, batches, criterion) -> Iterable[torch.Tensor]:
    device = next(model.parameters()).device
    for imgs, targets, _ in batches:
        imgs = imgs.to(device).float().div_(255)
        yield criterion(model.forward_raw(imgs), targets.to(device))[0]


def taylor_gradients(model: nn.Module, batches) -> float:
    """Accumulate loss gradients over ``batches`` (for Taylor importance); returns the mean loss.

    Runs in eval mode (BN statistics untouched); gradients still flow.
    """
    from yoloslim.train.loss import DetectionLoss

    crit = DetectionLoss(model.nc, model.reg_max, model.strides)
    model.eval()
    model.zero_grad(set_to_none=True)
    total, n = 0.0, 0
    for loss in _loss_batches(model, batches, crit):
        loss.backward()
        total, n = total + float(loss.detach()), n + 1
    return total / max(n, 1)


def bn_sparsity_train(
    model: nn.Module, batches, *, epochs: int, reg: float, lr: float, ignore: Iterable[str] = ()
) -> list[float]:
    """Network slimming's sparsity phase: train with an L1 penalty on BN scales (Liu et al., 2017).

    ``reg * sign(gamma)`` is added to every BN weight's gradient (the subgradient
    of ``reg * |gamma|``), so unneeded channels drift to zero before BN-scale
    ranking. Returns the mean loss per epoch.
    """
    from yoloslim.train.loss import DetectionLoss

    crit = DetectionLoss(model.nc, model.reg_max, model.strides)
    skip = set(map(id, ignored_modules(model, ignore)))
    bns = [
        m
        for m in model.modules()
        if isinstance(m, nn.BatchNorm2d) and m.affine and id(m) not in skip
    ]
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    losses = []
    for _ in range(epochs):
        total, n = 0.0, 0
        for loss in _loss_batches(model, batches, crit):
            opt.zero_grad(set_to_none=True)
            loss.backward()
            for bn in bns:
                if bn.weight.grad is not None:
                    bn.weight.grad.add_(reg * torch.sign(bn.weight.detach()))
            nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            opt.step()
            total, n = total + float(loss.detach()), n + 1
        losses.append(total / max(n, 1))
    model.eval()
    return losses
