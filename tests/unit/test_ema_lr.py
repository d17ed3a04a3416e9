"""ModelEMA's update rule and lr_at's schedule, against their documented formulas."""

import math

import pytest
import torch
from torch import nn

from yoloslim.train.config import TrainConfig
from yoloslim.train.ema import ModelEMA
from yoloslim.train.loop import lr_at


def _net(fill: float) -> nn.Module:
    net = nn.Sequential(nn.Conv2d(2, 3, 1), nn.BatchNorm2d(3))
    with torch.no_grad():
        for i, t in enumerate(net.state_dict().values()):
            if t.dtype.is_floating_point:
                t.copy_(fill + i + torch.arange(t.numel(), dtype=t.dtype).reshape(t.shape))
    return net


class _Wrapped(nn.Module):
    """Stands in for DistributedDataParallel: the trained net is ``.module``."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module


def _set(net: nn.Module, fill: float, batches: int) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        for k, t in _net(fill).state_dict().items():
            if t.dtype.is_floating_point:
                net.state_dict()[k].copy_(t)
        net[1].num_batches_tracked.fill_(batches)
    return {k: v.clone() for k, v in net.state_dict().items()}


@pytest.mark.parametrize("wrap", [False, True])
def test_ema_update_follows_the_documented_formula_with_its_ramp(wrap):
    net = _net(0.0)
    model = _Wrapped(net) if wrap else net
    ema = ModelEMA(model, decay=0.9, tau=1.0)
    old = {k: v.clone() for k, v in ema.module.state_dict().items()}
    assert set(old) == set(net.state_dict())  # the net itself, not the wrapper
    assert not ema.module.training
    assert not any(p.requires_grad for p in ema.module.parameters())

    new = _set(net, 10.0, batches=7)  # the model moves on; the EMA is a copy, not a view
    assert torch.equal(ema.module[0].weight, old["0.weight"])
    # ema = d * ema + (1 - d) * model, d = decay * (1 - exp(-updates / tau)); updates = 1
    ema.update(model)
    d1 = 0.9 * (1 - math.exp(-1.0))
    assert ema.updates == 1
    for k, v in ema.module.state_dict().items():
        if v.dtype.is_floating_point:
            torch.testing.assert_close(v, d1 * old[k] + (1 - d1) * new[k], msg=k)
            assert not torch.equal(v, new[k]) and not torch.equal(v, old[k])
        else:  # an integer buffer is copied, not averaged
            assert torch.equal(v, new[k]), k
    assert int(ema.module[1].num_batches_tracked) == 7

    # the second update's weight has ramped up: d = 0.9 * (1 - exp(-2))
    after1 = {k: v.clone() for k, v in ema.module.state_dict().items()}
    new2 = _set(net, -5.0, batches=9)
    ema.update(model)
    d2 = 0.9 * (1 - math.exp(-2.0))
    for k, v in ema.module.state_dict().items():
        want = d2 * after1[k] + (1 - d2) * new2[k] if v.dtype.is_floating_point else new2[k]
        torch.testing.assert_close(v, want, msg=k)


def test_ema_state_dict_round_trips_and_the_ramp_continues():
    net = _net(0.0)
    ema = ModelEMA(net, decay=0.9, tau=2.0)
    for fill in (3.0, 6.0, 9.0):
        _set(net, fill, batches=int(fill))
        ema.update(net)
    state = ema.state_dict()
    assert state["updates"] == 3

    other = ModelEMA(_net(100.0), decay=0.9, tau=2.0)  # other weights, no updates
    other.load_state_dict(state)
    assert other.updates == 3
    for k, v in ema.module.state_dict().items():
        assert torch.equal(other.module.state_dict()[k], v), k
    # the next update uses d at updates=4 in both (a lost count would restart the ramp)
    _set(net, 12.0, batches=12)
    ema.update(net)
    other.update(net)
    assert other.updates == ema.updates == 4
    for k, v in ema.module.state_dict().items():
        assert torch.equal(other.module.state_dict()[k], v), k
    fresh = ModelEMA(_net(0.0), decay=0.9, tau=2.0, updates=3)
    assert fresh.updates == 3


def test_lr_at_warms_up_linearly_then_follows_the_cosine_to_lr0_times_lrf():
    cfg = TrainConfig(lr0=0.01, lrf=0.1)
    total, warmup = 25, 4
    # warm-up: lr0 * (step + 1) / warmup, reaching lr0 at its last step
    assert [lr_at(s, total, warmup, cfg) for s in range(warmup)] == pytest.approx(
        [0.0025, 0.005, 0.0075, 0.01]
    )
    # then lr0 * (lrf + (1 - lrf) * (1 + cos(pi * t)) / 2),
    # t = (step - warmup) / (total - 1 - warmup): 0 at the first step after warm-up, 1 at the last
    assert lr_at(warmup, total, warmup, cfg) == pytest.approx(0.01)  # t = 0: the peak
    # t = 0.5 (step 14): cos = 0 -> 0.01 * (0.1 + 0.9 / 2) = 0.0055
    assert lr_at(14, total, warmup, cfg) == pytest.approx(0.0055)
    # t = 0.25 (step 9): 0.01 * (0.1 + 0.9 * (1 + sqrt(2)/2) / 2)
    assert lr_at(9, total, warmup, cfg) == pytest.approx(
        0.01 * (0.1 + 0.9 * (1 + math.sqrt(0.5)) / 2)
    )
    # t = 1 at the run's last step (total - 1): lr0 * lrf = 0.001 (audit25 train L1: the
    # last step was at t = (total - 1 - warmup) / (total - warmup), short of lrf); past it, clamped
    assert lr_at(total - 1, total, warmup, cfg) == pytest.approx(0.001)
    assert lr_at(total + 7, total, warmup, cfg) == pytest.approx(0.001)
    # one step after warm-up: it is the last, at the end of the cosine (a 2-step run with a
    # 1-step warm-up stayed at lr0); no warm-up and one step: the peak
    assert [lr_at(s, 2, 1, cfg) for s in range(2)] == pytest.approx([0.01, 0.001])
    assert lr_at(0, 1, 0, cfg) == pytest.approx(0.01)
    # non-increasing over the cosine part
    lrs = [lr_at(s, total, warmup, cfg) for s in range(warmup, total + 1)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:], strict=False))
    # no warm-up: the first step is at the peak already
    assert lr_at(0, total, 0, cfg) == pytest.approx(0.01)


def test_a_step_under_several_processes_takes_the_global_batchs_gradient(tmp_path):
    # the loss is scaled by this process's batch and DDP averages the processes' gradients:
    # with N processes the step took 1/N of the gradient of one process of the global batch
    # (audit28 ddp M1: norm 5.7 for 13.0); the step scales it by the process count
    from pathlib import Path

    from yoloslim.models.registry import build_model
    from yoloslim.train.loop import Fit
    from yoloslim.train.loss import DetectionLoss

    grads = {}
    for world in (1, 2):
        torch.manual_seed(0)
        net = build_model("damo-nano", names=["a", "b"]).train()
        cfg = TrainConfig(epochs=1, imgsz=64, batch=2, grad_clip=0.0, lr0=1e-9)
        fit = Fit(
            net=net,
            wrapped=net,
            trainable=net,
            criterion=DetectionLoss(net.nc, net.reg_max, net.strides, cfg.loss),
            optimizer=torch.optim.SGD(net.parameters(), lr=1e-9),
            scaler=torch.amp.GradScaler("cuda", enabled=False),
            ema=None,
            hook=None,
            cfg=cfg,
            device=torch.device("cpu"),
            fmt=torch.contiguous_format,
            world=world,
            n_batches=1,
            out=Path(tmp_path),
        )
        imgs = torch.full((2, 3, 64, 64), 128, dtype=torch.uint8)
        targets = torch.tensor([[0, 0, 10.0, 10.0, 40.0, 40.0], [1, 1, 20.0, 5.0, 60.0, 30.0]])
        fit.step(imgs, targets, 1e-9, 0, 0)
        grads[world] = torch.cat([p.grad.flatten() for p in net.parameters() if p.grad is not None])
    torch.testing.assert_close(grads[2], 2 * grads[1])
