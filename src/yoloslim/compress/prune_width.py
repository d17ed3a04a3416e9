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
from collections.abc import Callable, Iterable

import torch
import torch_pruning as tp
from torch import nn

from yoloslim.errors import ConfigError

__all__ = [
    "CRITERIA",
    "make_importance",
    "ignored_modules",
    "prune_width",
    "taylor_gradients",
    "bn_sparsity_train",
    "profile",
]

log = logging.getLogger(__name__)

#: importance criteria by name -> factory (Torch-Pruning importance classes)
CRITERIA: dict[str, Callable[[], tp.importance.Importance]] = {
    "l1": lambda: tp.importance.MagnitudeImportance(p=1),
    "l2": lambda: tp.importance.MagnitudeImportance(p=2),
    "bn-scale": lambda: tp.importance.BNScaleImportance(),
    "taylor": lambda: tp.importance.TaylorImportance(),
    "random": lambda: tp.importance.RandomImportance(),
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
    """``{"params", "gflops"}`` of the deploy (re-parameterised) form at ``imgsz``."""
    from yoloslim.bench.flops import count_flops, count_params

    deploy = copy.deepcopy(model).eval()
    if hasattr(deploy, "fuse"):
        deploy.fuse()
    return {"params": count_params(deploy), "gflops": count_flops(deploy, imgsz)["gflops"]}


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
) -> None:
    """One-shot pruning of ``model`` in place by ``ratio`` of the (remaining) channels."""
    if ratio <= 0:
        return
    p = next(model.parameters())
    x = torch.zeros(1, 3, imgsz, imgsz, device=p.device, dtype=p.dtype)
    was_training = model.training
    model.eval()  # tracing in eval mode leaves BN statistics untouched
    try:
        pruner = tp.pruner.BasePruner(
            model,
            x,
            make_importance(criterion),
            global_pruning=global_pruning,
            pruning_ratio=ratio,
            max_pruning_ratio=max_layer_ratio,
            ignored_layers=ignored_modules(model, ignore),
            round_to=round_to,
            forward_fn=_forward,
        )
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
) -> tuple[nn.Module, dict]:
    """Prune ``model`` by a channel ratio, or to a GFLOPs / params (millions) budget.

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
    )
    if ratio is not None:
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
    for _ in range(8):
        mid = (lo + hi) / 2
        m, value = trial(mid)
        if value <= target:
            hi, best = mid, (m, mid)
            if value >= target * (1 - tolerance):
                break
        else:
            lo = mid
    if best is None:
        m, value = trial(hi)
        best = (m, hi)
        met = value <= target
        if not met:
            log.warning(
                "budget %s <= %.4g not reachable by width pruning (%.4g)", key, target, value
            )
    else:
        met = True
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
