"""Built-in DAMO-YOLO-style detectors, their building blocks and checkpoints."""

from yoloslim.models.arch import arch_of, load_arch_yaml, validate_arch
from yoloslim.models.blocks import ConvBNAct, CSPStage, RepConv
from yoloslim.models.detector import Detector
from yoloslim.models.registry import build_model, get_arch, list_models, register_model

__all__ = [
    "ConvBNAct",
    "CSPStage",
    "Detector",
    "RepConv",
    "arch_of",
    "build_model",
    "get_arch",
    "list_models",
    "load_arch_yaml",
    "register_model",
    "validate_arch",
]
