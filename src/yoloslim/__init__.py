"""yoloslim: make YOLO-family detectors small and fast, with a report that proves it.

Example:
    >>> import yoloslim as ys
    >>> data = ys.synthesize("data/synth", images=200, imgsz=320)
    >>> res = ys.train("damo-nano", data, config=ys.TrainConfig(epochs=5), out="runs/nano")
    >>> ys.validate(res.best, data)["map"]
"""

from __future__ import annotations

from pathlib import Path

from yoloslim.bench.measure import benchmark
from yoloslim.budget_mode import run_budget
from yoloslim.compress.distill import DistillConfig, distill
from yoloslim.compress.prune import PruneConfig, prune
from yoloslim.compress.quantize import QuantConfig, quantize
from yoloslim.compress.reparam import reparameterize
from yoloslim.data.synth import synthesize
from yoloslim.errors import ConfigError, DataError, ExportError, ModelError, YoloslimError
from yoloslim.eval.val import validate
from yoloslim.export import export
from yoloslim.models import Detector, arch_of, build_model, list_models, register_model
from yoloslim.models.checkpoint import load_checkpoint, save_checkpoint
from yoloslim.nas import Budget, SearchResult, SearchSpace, search
from yoloslim.pipeline import load_recipe, run_recipe
from yoloslim.runtime import BatchingPredictor, Detections, Predictor
from yoloslim.train import TrainConfig, TrainResult, train

__version__ = "0.1.0"

__all__ = [
    "BatchingPredictor",
    "Budget",
    "ConfigError",
    "DataError",
    "Detections",
    "Detector",
    "DistillConfig",
    "ExportError",
    "ModelError",
    "Predictor",
    "PruneConfig",
    "QuantConfig",
    "SearchResult",
    "SearchSpace",
    "TrainConfig",
    "TrainResult",
    "YoloslimError",
    "__version__",
    "arch_of",
    "benchmark",
    "build_model",
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


def load(path: str | Path, **options) -> Predictor:
    """Open any artifact (.pt, .torchscript, .onnx, .xml) as a :class:`Predictor`.

    Checkpoints load with ``torch.load(weights_only=True)`` (no pickled classes);
    ``load(path).model`` is the rebuilt torch Detector. ``options`` go to Predictor
    (``conf``, ``iou``, ``imgsz``, ``threads``, ``max_det``).

    Example:
        >>> pred = load("runs/nano/best.pt", conf=0.3)
        >>> dets = pred.predict("images/")
        >>> model = pred.model
    """
    return Predictor(path, **options)
