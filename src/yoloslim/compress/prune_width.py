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


def ignored_tree(model: nn.Module, patterns: Iterable[str]) -> set[int]:
    """The ids of the :func:`ignored_modules` and of every module inside one (``backbone``
    names a parent: its convs are ignored too, as the channel pruner ignores them)."""
    return {id(sub) for m in ignored_modules(model, patterns) for sub in m.modules()}


def unmatched_patterns(model: nn.Module, patterns: Iterable[str]) -> list[str]:
    """The ``patterns`` (as :func:`ignored_modules` takes them) that name no module."""
    names = [name for name, _ in model.named_modules() if name]
    return [p for p in patterns if not any(_matches(n, [p]) for n in names)]


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


def _global_ratios(
    pruner,
    model: nn.Module,
    ratio: float,
    widths: dict[str, int] | None,
    round_to: int | None,
    max_layer_ratio: float,
) -> dict[nn.Module, float]:
    """Per-group pruning ratios (keyed by each coupled group's root layer) that leave
    ``1 - ratio`` of the prunable channels in ``widths`` (the widths before the first step),
    removing the channels Torch-Pruning's importance ranks lowest across all groups.

    Torch-Pruning's own global mode skips a whole group when every channel of it falls
    under its threshold (or ``round_to`` or its per-layer cap would leave it none), so a
    higher ratio could keep *more* channels (damo-nano at 0.9 kept 69 %, at 0.5 49 %).
    Here each group is capped instead: it keeps at least what :func:`_keep` allows at the
    ``max_layer_ratio`` of its original width, and the cut in the ranking is chosen over the capped
    counts, so the kept total is monotone in ``ratio`` and counted from the original widths
    whether reached in one step or several.
    """
    names = {id(m): n for n, m in model.named_modules()}
    groups = []  # (root, current width, original width, importance of each channel)
    convs = []  # how many convolutions each group's channels are the outputs of
    for group in pruner.DG.get_all_groups(
        ignored_layers=pruner.ignored_layers, root_module_types=pruner.root_module_types
    ):
        root = group[0].dep.target.module
        imp = pruner.estimate_importance(group)
        if imp is None:
            continue
        ch_groups = pruner._get_channel_groups(group)
        imp = (imp.view(ch_groups, -1).mean(0) if ch_groups > 1 else imp).float().cpu()
        now = len(imp)
        before = (widths or {}).get(names.get(id(root), ""), now)
        groups.append((root, now, before, imp))
        # the convolutions whose outputs the group's channels are (a residual chain's many)
        convs.append(
            sum(
                isinstance(dep.target.module, nn.Conv2d)
                and pruner.DG.is_out_channel_pruning_fn(dep.handler)
                for dep, _ in group
            )
            or 1
        )
    if not groups:
        return {}

    def total(counts) -> int:  # channels over all the convolutions of the groups
        return sum(c * n for c, n in zip(counts, convs, strict=True))

    target = total([before for _, _, before, _ in groups]) * (1 - ratio)
    floors = [
        min(now, _keep(before, 1.0, round_to, max_layer_ratio)) for _, now, before, _ in groups
    ]
    step = round_to or 1
    # every channel ranked by importance, ties by group and position (a stable sort), so
    # that equal scores (an untrained model's BN scales) are removed a rank at a time
    group_of = torch.cat([torch.full((now,), g) for g, (_, now, _, _) in enumerate(groups)])
    ranked = group_of[torch.sort(torch.cat([g[3] for g in groups]), stable=True).indices]

    def kept(k: int) -> list[int]:
        """Each group's kept channels when the ``k`` lowest-ranked channels go (then each
        group rounded to a multiple of ``round_to``, nearest, a tie upwards, and capped)."""
        below = torch.bincount(ranked[:k], minlength=len(groups)).tolist()
        out = []
        for (_, now, _, _), floor, gone in zip(groups, floors, below, strict=True):
            keep = now - gone
            if keep < now:
                keep = max(floor, step * math.floor(keep / step + 0.5))
            out.append(min(now, keep))
        return out

    # the number of lowest-ranked channels whose kept total comes nearest the target: totals
    # fall as it rises, so bisect for the first at or under the target
    lo, hi = 0, len(ranked)  # total(kept(lo)) > target >= total(kept(hi)), unless none is
    if total(kept(lo)) <= target:
        return {}
    if total(kept(hi)) > target:  # even the caps leave more: as far as they allow
        lo = hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if total(kept(mid)) > target:
            lo = mid
        else:
            hi = mid
    over, under = total(kept(lo)), total(kept(hi))
    keeps = kept(lo if over - target < target - under else hi)
    # + 0.5: Torch-Pruning keeps int(now * (1 - r)) channels; aim between two integers
    return {
        root: 1 - (keep + 0.5) / now
        for (root, now, _, _), keep in zip(groups, keeps, strict=True)
        if keep < now
    }


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
    ranks the channels of every layer together and caps each layer at ``max_layer_ratio``
    of its original width (see :func:`_global_ratios`).
    """
    if ratio <= 0:
        return
    p = next(model.parameters())
    x = torch.zeros(1, 3, imgsz, imgsz, device=p.device, dtype=p.dtype)
    was_training = model.training
    model.eval()  # tracing in eval mode leaves BN statistics untouched
    per_layer = (
        None if global_pruning else _layer_ratios(model, ratio, widths, round_to, max_layer_ratio)
    )
    if per_layer is not None and not any(per_layer.values()):
        return

    def pruner_for(ratios: dict):
        # always Torch-Pruning's local mode, each group at its own ratio: its global mode
        # skips whole groups (see _global_ratios)
        return _tp().pruner.BasePruner(
            model,
            x,
            make_importance(criterion),
            pruning_ratio=0.0,
            pruning_ratio_dict=ratios,
            max_pruning_ratio=1.0,
            ignored_layers=ignored_modules(model, ignore),
            round_to=round_to,
            forward_fn=_forward,
        )

    # Torch-Pruning traces the graph through autograd: a frozen parameter (a frozen backbone)
    # is not in it, its layers' couplings were missed, and the pruned network did not run.
    # Frozen again after, by name (a pruned layer's parameter is a new tensor)
    frozen = {n for n, q in model.named_parameters() if not q.requires_grad}
    for n, q in model.named_parameters():
        if n in frozen:
            q.requires_grad_(True)
    try:
        if per_layer is None:  # global: rank the channels of every group together
            per_layer = _global_ratios(
                pruner_for({}), model, ratio, widths, round_to, max_layer_ratio
            )
            if not per_layer:
                return
        pruner_for(per_layer).step()
    finally:
        model.train(was_training)
        for n, q in model.named_parameters():
            if n in frozen:
                q.requires_grad_(False)


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
        if ratio > max_layer_ratio and not global_pruning:  # prune() says it once, at the end
            log.info(
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
        if not met:  # prune() warns once, with what the whole schedule reached
            log.info(
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
    skip = ignored_tree(model, ignore)
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
