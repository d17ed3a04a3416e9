"""Runtimes: one interface over PyTorch, TorchScript, ONNX Runtime and OpenVINO; predictors."""

from yoloslim.runtime.backends import Backend, load_backend
from yoloslim.runtime.predictor import BatchingPredictor, Detections, Predictor

__all__ = ["Backend", "BatchingPredictor", "Detections", "Predictor", "load_backend"]
