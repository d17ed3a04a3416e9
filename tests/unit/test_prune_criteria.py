"""Prune criteria beyond l1/l2: bn-scale ranks by BN gamma, random depends on the seed, and
the network-slimming sparsity phase shrinks the penalised BN scales only."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from yoloslim.compress.prune import PruneConfig, _calib_batches
from yoloslim.compress.prune_width import bn_sparsity_train, prune_width
from yoloslim.models import build_model
from yoloslim.models.testing import SMALL_ARCH, randomize_bn

IMG = 64
ARCH = SMALL_ARCH


@pytest.fixture()
def model() -> nn.Module:
    torch.manual_seed(0)
    # non-trivial BN, its gammas apart (in [0.5, 1.5)), so |gamma| ranks them
    return randomize_bn(build_model(ARCH, names=["a", "b"]), seed=0).eval()


def _kept_stem_channels(before: nn.Module, after: nn.Module) -> list[int]:
    """Which of the stem's 16 output channels the pruned model kept (its rows are copies)."""
    old = before.backbone.stages[0].down.conv.weight
    new = after.backbone.stages[0].down.conv.weight
    kept = [i for i in range(len(old)) if any(torch.equal(old[i], r) for r in new)]
    assert len(kept) == len(new)  # every kept row is one of the old rows
    return kept


def test_bn_scale_removes_the_channels_with_tiny_gamma(model):
    weak = [2, 5, 11, 14]
    with torch.no_grad():  # only the BN scale marks them: conv weights untouched
        model.backbone.stages[0].down.bn.weight[weak] *= 1e-4
    m, _ = prune_width(copy.deepcopy(model), criterion="bn-scale", imgsz=IMG, ratio=0.25)
    # 25 % of 16 channels: 4 go, and bn-scale picks the 4 smallest |gamma|
    assert _kept_stem_channels(model, m) == [i for i in range(16) if i not in weak]
    # l1 reads the conv weights, which do not single these out: another set goes
    m1, _ = prune_width(copy.deepcopy(model), criterion="l1", imgsz=IMG, ratio=0.25)
    assert _kept_stem_channels(model, m1) != _kept_stem_channels(model, m)


def test_random_depends_on_the_seed(model):
    kept = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        m, _ = prune_width(copy.deepcopy(model), criterion="random", imgsz=IMG, ratio=0.25)
        kept.append(_kept_stem_channels(model, m))
    torch.manual_seed(1)
    again, _ = prune_width(copy.deepcopy(model), criterion="random", imgsz=IMG, ratio=0.25)
    assert _kept_stem_channels(model, again) == kept[0]  # the seed decides it
    assert len(kept[0]) == len(kept[1]) == 12 and kept[0] != kept[1]
    l1, _ = prune_width(copy.deepcopy(model), criterion="l1", imgsz=IMG, ratio=0.25)
    assert kept[0] != _kept_stem_channels(model, l1)


@pytest.fixture(scope="module")
def batches(tmp_path_factory):
    from yoloslim.data.synth import synthesize

    data = synthesize(tmp_path_factory.mktemp("synth"), images=4, imgsz=IMG, classes=2, seed=3)
    cfg = PruneConfig(imgsz=IMG, batch=2, advanced={"calib_batches": 1})
    return _calib_batches(data, cfg)


def _gammas(m: nn.Module, ignored: bool) -> dict[str, torch.Tensor]:
    return {
        n: b.weight.detach().clone()
        for n, b in m.named_modules()
        if isinstance(b, nn.BatchNorm2d) and n.startswith("backbone.stages.0.") == ignored
    }


def test_bn_sparsity_train_shrinks_the_penalised_gammas_only(model, batches):
    ignore = ["backbone.stages.0.*"]  # the stem and its BN
    start = {**_gammas(model, False), **_gammas(model, True)}
    runs = {}
    for reg in (0.0, 10.0):
        m = copy.deepcopy(model)
        torch.manual_seed(0)
        losses = bn_sparsity_train(m, batches, epochs=2, reg=reg, lr=0.01, ignore=ignore)
        assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))
        assert not m.training  # left in eval mode
        runs[reg] = m
    penalised = {reg: _gammas(m, False) for reg, m in runs.items()}
    assert len(penalised[10.0]) > 10

    def mean_abs(gs):
        return torch.cat(list(gs.values())).abs().mean()

    # the L1 subgradient (10 * sign(gamma)) outweighs the loss's: every penalised gamma went
    # down (AdamW's first steps move each weight by about lr against its gradient's sign)
    assert mean_abs(penalised[10.0]) < mean_abs(penalised[0.0])
    for n, g in penalised[10.0].items():
        assert (g < start[n]).all(), n
    # without the penalty, the loss alone moves some gammas up
    assert any((g > start[n]).any() for n, g in penalised[0.0].items())
    # the ignored stem BN gets no penalty: it moves as the loss alone moves it, up for some
    # channels, the same direction as in the run without the penalty
    [(name, stem)] = _gammas(runs[10.0], True).items()
    stem0 = _gammas(runs[0.0], True)[name]
    assert name == "backbone.stages.0.down.bn" and (stem > start[name]).any()
    assert torch.equal(torch.sign(stem - start[name]), torch.sign(stem0 - start[name]))
