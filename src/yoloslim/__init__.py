"""yoloslim: make YOLO-family detectors small and fast, with a report that proves it.

Example:
    >>> import yoloslim as ys
    >>> data = ys.synthesize("data/synth", images=200, imgsz=320)
    >>> res = ys.train("damo-nano", data, config=ys.TrainConfig(epochs=5), out="runs/nano")
    >>> ys.validate(res.best, data)["map"]
"""

from __future__ import annotations

from pathlib import Path

from yoloslim.data.synth import synthesize
from yoloslim.errors import ConfigError, DataError, ExportError, ModelError, YoloslimError
from yoloslim.eval.val import validate
from yoloslim.models import Detector, arch_of, build_model, list_models, register_model
from yoloslim.models.checkpoint import load_checkpoint, save_checkpoint
from yoloslim.train import TrainConfig, TrainResult, train

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DataError",
    "Detector",
    "ExportError",
    "ModelError",
    "TrainConfig",
    "TrainResult",
    "YoloslimError",
    "__version__",
    "arch_of",
    "build_model",
    "list_models",
    "load",
    "register_model",
    "save_checkpoint",
    "synthesize",
    "train",
    "validate",
]


def load(path: str | Path) -> Detector:
    """Rebuild a detector from a yoloslim checkpoint (``weights_only=True``, no pickled classes).

    Example:
        >>> model = load("runs/nano/best.pt")
    """
    return load_checkpoint(path)[0]
