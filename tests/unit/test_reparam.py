import copy

import torch
from torch import nn

from yoloslim.compress import reparameterize
from yoloslim.models import build_model
from yoloslim.models.testing import randomize_bn


def _randomize_bn(model):
    randomize_bn(model, seed=2)


def test_reparameterize_builtin_is_equivalent_and_leaves_input():
    model = build_model("damo-nano", nc=3)
    _randomize_bn(model)
    before = copy.deepcopy(model.state_dict())
    x = torch.rand(2, 3, 96, 96)
    res = reparameterize(model, example_input=x, measure=False)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in res.model.modules())
    with torch.no_grad():
        ref, out = model.eval().forward_raw(x), res.model.forward_raw(x)
    for a, b in zip(out, ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    assert res.report["params_after"] < res.report["params_before"]
    assert res.report["max_abs_diff"] <= 1e-3


def test_reparameterize_traces_custom_module():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 4, 1, bias=False),
        nn.BatchNorm2d(4),
    )
    _randomize_bn(model)
    x = torch.rand(1, 3, 16, 16)
    res = reparameterize(model, example_input=x)
    assert res.report["fused_pairs"] == 2
    assert sum(isinstance(m, nn.BatchNorm2d) for m in res.model.modules()) == 0
    torch.testing.assert_close(res.model(x), model.eval()(x), atol=1e-5, rtol=1e-5)
    assert res.report["latency_ms_before"] > 0 and res.report["latency_ms_after"] > 0


def test_bn_with_two_readers_is_not_folded():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)
            self.bn = nn.BatchNorm2d(4)

        def forward(self, x):
            y = self.conv(x)
            return self.bn(y) + y  # conv output read twice: folding would change the result

    model = Branchy()
    _randomize_bn(model)
    x = torch.rand(1, 3, 8, 8)
    res = reparameterize(model, example_input=x, measure=False)
    assert res.report["fused_pairs"] == 0
    torch.testing.assert_close(res.model(x), model.eval()(x))
