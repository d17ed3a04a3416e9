"""Training: task-aligned assignment, GFL losses, the trainer (EMA, schedule, resume, DDP)."""

from yoloslim.train.config import Optimizer, TrainConfig, config_from_dict
from yoloslim.train.loss import DetectionLoss, LossConfig
from yoloslim.train.trainer import TrainResult, train

__all__ = [
    "DetectionLoss",
    "LossConfig",
    "Optimizer",
    "TrainConfig",
    "TrainResult",
    "config_from_dict",
    "train",
]
