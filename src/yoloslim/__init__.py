"""yoloslim: make YOLO-family detectors small and fast, with a report that proves it.

Example:
    >>> import yoloslim as ys
    >>> data = ys.synthesize("data/synth", images=200, imgsz=320)
    >>> res = ys.train("damo-nano", data, config=ys.TrainConfig(epochs=5), out="runs/nano")
    >>> mAP = ys.validate(res.best, data)["map"]  # mAP50-95 as a fraction (0.25: 25%)

The names below are imported on first use (PEP 562), so ``import yoloslim`` and the
command line's ``--help`` do not pay for torch until a command needs it, and a Ctrl-C during
that import reaches the command's own handler.
"""

from __future__ import annotations

import importlib
import os
import sys
import types
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from yoloslim.bench.latency import LatencyConfig
    from yoloslim.bench.measure import benchmark
    from yoloslim.budget_mode import run_budget
    from yoloslim.compress.distill import DistillConfig, distill
    from yoloslim.compress.prune import prune
    from yoloslim.compress.prune_config import PruneConfig
    from yoloslim.compress.quantize import QuantConfig, quantize
    from yoloslim.compress.reparam import reparameterize
    from yoloslim.data.synth import synthesize
    from yoloslim.errors import (
        ConfigError,
        DataError,
        ExportError,
        ModelError,
        TrainingError,
        YoloslimError,
    )
    from yoloslim.eval.val import validate
    from yoloslim.export import export
    from yoloslim.models import Detector, arch_of, build_model, list_models, register_model
    from yoloslim.models.checkpoint import load_checkpoint, save_checkpoint
    from yoloslim.nas import Budget, SearchResult, SearchSpace, search
    from yoloslim.pipeline import load_recipe, run_recipe
    from yoloslim.runtime import BatchingPredictor, Detections, Predictor
    from yoloslim.runtime.describe import describe
    from yoloslim.train import TrainConfig, TrainResult, train

__version__ = "0.1.0"

# public name -> the module that defines it
_LAZY = {
    "LatencyConfig": "yoloslim.bench.latency",
    "benchmark": "yoloslim.bench.measure",
    "run_budget": "yoloslim.budget_mode",
    "DistillConfig": "yoloslim.compress.distill",
    "distill": "yoloslim.compress.distill",
    "PruneConfig": "yoloslim.compress.prune_config",
    "prune": "yoloslim.compress.prune",
    "QuantConfig": "yoloslim.compress.quantize",
    "quantize": "yoloslim.compress.quantize",
    "reparameterize": "yoloslim.compress.reparam",
    "synthesize": "yoloslim.data.synth",
    "ConfigError": "yoloslim.errors",
    "DataError": "yoloslim.errors",
    "ExportError": "yoloslim.errors",
    "ModelError": "yoloslim.errors",
    "TrainingError": "yoloslim.errors",
    "YoloslimError": "yoloslim.errors",
    "validate": "yoloslim.eval.val",
    "export": "yoloslim.export",
    "Detector": "yoloslim.models",
    "arch_of": "yoloslim.models",
    "build_model": "yoloslim.models",
    "list_models": "yoloslim.models",
    "register_model": "yoloslim.models",
    "load_checkpoint": "yoloslim.models.checkpoint",
    "save_checkpoint": "yoloslim.models.checkpoint",
    "Budget": "yoloslim.nas",
    "SearchResult": "yoloslim.nas",
    "SearchSpace": "yoloslim.nas",
    "search": "yoloslim.nas",
    "load_recipe": "yoloslim.pipeline",
    "run_recipe": "yoloslim.pipeline",
    "BatchingPredictor": "yoloslim.runtime",
    "Detections": "yoloslim.runtime",
    "Predictor": "yoloslim.runtime",
    "describe": "yoloslim.runtime.describe",
    "TrainConfig": "yoloslim.train",
    "TrainResult": "yoloslim.train",
    "train": "yoloslim.train",
}

__all__ = [
    "BatchingPredictor",
    "Budget",
    "ConfigError",
    "DataError",
    "Detections",
    "Detector",
    "DistillConfig",
    "ExportError",
    "LatencyConfig",
    "ModelError",
    "Predictor",
    "PruneConfig",
    "QuantConfig",
    "SearchResult",
    "SearchSpace",
    "TrainConfig",
    "TrainResult",
    "TrainingError",
    "YoloslimError",
    "__version__",
    "arch_of",
    "benchmark",
    "build_model",
    "describe",
    "distill",
    "export",
    "list_models",
    "load_recipe",
    "load",
    "load_checkpoint",
    "prune",
    "quantize",
    "register_model",
    "reparameterize",
    "run_budget",
    "run_recipe",
    "save_checkpoint",
    "search",
    "synthesize",
    "train",
    "validate",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'yoloslim' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    if name in _SHADOWING:
        # ``import yoloslim.train.trainer as t`` looks ``trainer`` up on what ``yoloslim.train``
        # is, this function, and failing that, on the module named ``{its __name__}.trainer``:
        # named after its subpackage, the submodule is found (it failed: "cannot import name
        # 'trainer' from 'train'"); its repr and qualified name stay the function's
        value.__name__ = module
    globals()[name] = value  # later lookups skip this function
    return value


# the functions named like the subpackage they live in (see _Package)
_SHADOWING = ("export", "train")


def __dir__() -> list[str]:
    """The public names and the subpackages imported so far, not this module's own imports."""
    g = globals()
    subpackages = (k for k, v in g.items() if getattr(v, "__name__", "").startswith("yoloslim."))
    return sorted({*__all__, *subpackages})


class _Package(types.ModuleType):
    """``yoloslim.export`` and ``yoloslim.train`` name both a subpackage and the function the
    package exports. Importing the subpackage would bind its module over the function's name;
    here the name stays the function's, as it was when the package imported everything."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _LAZY and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def load(path: str | Path, **options) -> Predictor:
    """Open any artifact (.pt, .torchscript, .onnx, .xml) as a :class:`Predictor`.

    Checkpoints load with ``torch.load(weights_only=True)`` (no pickled classes);
    ``load(path).model`` is the rebuilt torch Detector. ``options`` go to Predictor
    (``conf``, ``iou``, ``imgsz``, ``threads``, ``max_det``, ``ov_precision``, ``device``).

    Args:
        path: a yoloslim checkpoint, or an artifact that ``yoloslim export`` or
            ``quantize`` wrote (a Triton config or model folder runs as its ONNX); or a
            Predictor, whose file is loaded anew with ``options`` (its own settings are not
            carried over).
        **options: the Predictor's settings.

    Returns:
        A :class:`Predictor` over the artifact's runtime.

    Raises:
        ModelError: the file is missing, of an unknown kind, or not yoloslim's.
        ConfigError: ``path`` is not a path (nor a Predictor), or an option out of range
            (``conf``, ``iou``, ``imgsz`` ...).

    Example:
        >>> pred = load("runs/nano/best.pt", conf=0.3)
        >>> dets = pred.predict("data/synth/images/val")
        >>> model = pred.model
    """
    import inspect

    from yoloslim.errors import ConfigError
    from yoloslim.runtime import Predictor
    from yoloslim.runtime.predictor import as_artifact

    known = [k for k in inspect.signature(Predictor).parameters if k != "artifact"]
    unknown = sorted(set(options) - set(known))
    if unknown:  # a TypeError named Predictor.__init__, which the caller never called
        raise ConfigError(
            f"load(): unknown option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
            f"the options are {', '.join(known)}"
        )
    if isinstance(path, Predictor):  # its file, loaded anew with these options
        path = as_artifact(path)
    elif not isinstance(path, (str, os.PathLike)):  # Predictor's error named "artifact"
        raise ConfigError(
            f"load(): path={type(path).__name__}: expected an artifact file's path (a Detector "
            "needs no loading: ys.validate, ys.export and ys.prune take it as it is)"
        )
    from yoloslim.rng import keeps_rng_state  # a model built to load into: no draw of the caller's

    return keeps_rng_state(Predictor)(path, **options)
