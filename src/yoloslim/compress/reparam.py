"""Re-parameterisation: fold RepConv branches and Conv2d -> BatchNorm2d pairs into single convs.

Built-in blocks fuse through their own ``fuse()`` methods. For any other module,
Conv -> BN pairs are found by tracing the graph with ``torch.fx`` (not by module
names): a pair is folded only when the BN reads the conv's output and nothing else
reads it, so the rewrite is exact.
"""

from __future__ import annotations

import copy
import logging
import statistics
import time

import torch
from torch import fx, nn

from yoloslim.bench.flops import count_params
from yoloslim.models.blocks import fuse_conv_bn
from yoloslim.result import Result

__all__ = ["reparameterize", "fuse_traced_conv_bn"]

log = logging.getLogger(__name__)


def _set_module(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, attr, new)


def fuse_traced_conv_bn(model: nn.Module) -> int:
    """Fold every traced Conv2d -> BatchNorm2d pair in place (eval mode); returns the count.

    Modules that ``torch.fx`` cannot trace are left untouched (logged), never guessed at.
    """
    if not any(isinstance(m, nn.BatchNorm2d) for m in model.modules()):
        return 0
    try:
        graph = fx.symbolic_trace(model).graph
    except Exception as e:  # noqa: BLE001 - fx raises many types on untraceable code
        log.warning(
            "torch.fx could not trace %s (%s); Conv+BN pairs left unfused", type(model).__name__, e
        )
        return 0
    modules = dict(model.named_modules())
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), nn.BatchNorm2d):
            continue
        src = node.args[0] if node.args else None
        if (
            isinstance(src, fx.Node)
            and src.op == "call_module"
            and isinstance(modules.get(src.target), nn.Conv2d)
            and len(src.users) == 1
        ):
            pairs.append((src.target, node.target))
    for conv_name, bn_name in pairs:
        _set_module(model, conv_name, fuse_conv_bn(modules[conv_name], modules[bn_name]))
        _set_module(model, bn_name, nn.Identity())
    return len(pairs)


@torch.no_grad()
def _latency_ms(model: nn.Module, x: torch.Tensor, runs: int = 10) -> float:
    model(x)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        model(x)
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


@torch.no_grad()
def reparameterize(
    model: nn.Module, *, example_input: torch.Tensor | None = None, measure: bool = True
) -> Result:
    """Return a deploy-form copy of ``model``: RepConv and Conv+BN folded; the input is untouched.

    Args:
        model: a yoloslim Detector or any ``nn.Module``.
        example_input: input used to check equivalence and time the models
            (default: a ``(1, 3, 320, 320)`` standard-normal tensor).
        measure: time both models (median of 10 runs at batch 1).

    Returns:
        Result with the fused model (eval mode) and a report: ``params_before``,
        ``params_after``, ``fused_blocks``, ``fused_pairs``, ``max_abs_diff``,
        ``latency_ms_before``/``after``.

    Example:
        >>> res = reparameterize(build_model("damo-nano"))
        >>> res.report["max_abs_diff"] < 1e-3
        True
    """
    src = model
    fused = copy.deepcopy(model).eval()
    n_blocks = 0
    for m in fused.modules():
        fuse = getattr(m, "fuse", None)
        if callable(fuse) and m is not fused:
            fuse()
            n_blocks += 1
    if hasattr(fused, "deploy"):
        fused.deploy = True
    n_pairs = fuse_traced_conv_bn(fused)
    x = example_input if example_input is not None else torch.randn(1, 3, 320, 320)
    was_training = src.training
    src.eval()
    try:
        ref = src(x)
        out = fused(x)
        diff = max(float((a - b).abs().max()) for a, b in zip(_flat(ref), _flat(out), strict=True))
        report = {
            "params_before": count_params(src),
            "params_after": count_params(fused),
            "fused_blocks": n_blocks,
            "fused_pairs": n_pairs,
            "max_abs_diff": diff,
            "input_shape": list(x.shape),
        }
        if measure:
            report["latency_ms_before"] = _latency_ms(src, x)
            report["latency_ms_after"] = _latency_ms(fused, x)
    finally:
        src.train(was_training)
    return Result(fused, report)


def _flat(y) -> list[torch.Tensor]:
    return [t for t in y] if isinstance(y, (list, tuple)) else [y]
