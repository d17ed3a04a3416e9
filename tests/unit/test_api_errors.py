"""Wrong-typed arguments to the public API are ConfigError/DataError naming the argument,
not a TypeError or AttributeError from deep inside (each is refused before any file is read)."""

import pytest
from torch import nn

import yoloslim as ys
from yoloslim.bench.flops import model_profile
from yoloslim.errors import ConfigError, DataError


@pytest.mark.parametrize(
    ("call", "err", "match"),
    [
        (
            lambda: ys.train("damo-nano", "data.yaml", config={"epochs": 1}),
            ConfigError,
            r"config must be a TrainConfig, got dict \(TrainConfig.from_dict\(d\) reads",
        ),
        (
            lambda: ys.benchmark("model.onnx", latency={"rounds": 1}),
            ConfigError,
            r"latency must be a LatencyConfig, got dict \(LatencyConfig\(\*\*d\) reads",
        ),
        (lambda: ys.quantize("m.pt", "d.yaml", config=3), ConfigError, r"QuantConfig, got int$"),
        (lambda: ys.validate("m.pt", "d.yaml", batch="8"), ConfigError, r"batch='8' must be"),
        (lambda: ys.validate("m.pt", "d.yaml", batch=0), ConfigError, r"^batch=0 must be >= 1"),
        (lambda: ys.validate(5, "d.yaml"), ConfigError, r"^model=5: expected a checkpoint"),
        (lambda: ys.quantize(3.0, "d.yaml"), ConfigError, r"^model_or_artifact=3.0: expected"),
        (lambda: ys.export("m.pt", "out", formats=None), ConfigError, r"^formats=None: give"),
        (lambda: ys.export("m.pt", "out", formats=[1]), ConfigError, r"^formats=\[1\]: give"),
        (lambda: ys.BatchingPredictor("m.pt"), ConfigError, r"^predictor='m.pt': expected a"),
        (lambda: ys.synthesize(None), ConfigError, r"^out=None: expected the dataset folder"),
        (lambda: ys.validate(nn.Identity(), None), DataError, r"^data=None: expected the path"),
        (lambda: model_profile("damo-nano", imgsz=100), ConfigError, r"^imgsz=100 must be a"),
        (lambda: ys.validate(None, "d.yaml"), ConfigError, r"^model=None: expected a checkpoint"),
        (lambda: ys.export(nn.Identity(), None), ConfigError, r"^out=None: expected the output"),
        (lambda: ys.describe(3), ConfigError, r"^path=3: expected a file's path"),
        (lambda: ys.quantize("m.pt", "d.yaml", out=None), ConfigError, r"^out=None: expected"),
        (lambda: ys.search(budget={"flops": 1}), ConfigError, r"Budget.from_dict\(d\) reads"),
    ],
)
def test_wrong_types_name_the_argument(call, err, match):
    with pytest.raises(err, match=match):
        call()


def test_latency_config_is_public():
    from yoloslim.bench.latency import LatencyConfig

    assert ys.LatencyConfig is LatencyConfig and "LatencyConfig" in ys.__all__
