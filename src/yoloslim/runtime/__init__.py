"""Runtimes: one interface over PyTorch, TorchScript, ONNX Runtime and OpenVINO."""

from yoloslim.runtime.backends import Backend, load_backend

__all__ = ["Backend", "load_backend"]
