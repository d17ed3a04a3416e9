"""Parameter and FLOP counts of torch models.

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode``, which counts a
multiply-add as 2 FLOPs. We report both conventions: ``gmacs`` (multiply-adds,
the unit DAMO-YOLO/YOLOX tables call "FLOPs") and ``gflops`` = 2 x ``gmacs``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["count_params", "count_flops", "model_profile"]


def count_params(model: nn.Module) -> int:
    """Number of parameters (all, trainable or not)."""
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_flops(model: nn.Module, imgsz: int | tuple[int, int], batch: int = 1) -> dict[str, float]:
    """``{"gflops": 2*MACs/1e9, "gmacs": MACs/1e9}`` for one forward at ``imgsz``."""
    h, w = (imgsz, imgsz) if isinstance(imgsz, int) else imgsz
    was_training = model.training
    model.eval()
    try:
        p = next(model.parameters())
        x = torch.zeros(batch, 3, h, w, device=p.device, dtype=p.dtype)
        with FlopCounterMode(display=False) as fc:
            model(x)
    finally:
        model.train(was_training)
    flops = fc.get_total_flops()
    return {"gflops": flops / 1e9, "gmacs": flops / 2e9}


def model_profile(model: str | nn.Module, imgsz: int | None = 320, nc: int = 80) -> dict:
    """Params in training and deploy (re-parameterised) form, and FLOPs of the deploy form
    (:func:`~yoloslim.compress.reparam.deploy_form`: what export and bench run)."""
    from yoloslim.compress.reparam import deploy_form
    from yoloslim.configs import DEFAULT_IMGSZ, check_imgsz
    from yoloslim.models import build_model

    check_imgsz(imgsz)
    if imgsz is None:  # the default size, as check_imgsz lets None stand for
        imgsz = DEFAULT_IMGSZ
    net = build_model(model, nc=nc) if isinstance(model, str) else model
    params = count_params(net)
    deploy = deploy_form(net)[0]
    return {
        "params": params,
        "params_deploy": count_params(deploy),
        "imgsz": imgsz,
        **count_flops(deploy, imgsz),
    }
