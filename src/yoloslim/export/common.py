"""What every exporter receives, and the metadata every artifact carries."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

__all__ = ["ExportContext", "artifact_metadata"]


@dataclass
class ExportContext:
    """A deploy-form (re-parameterised, eval) model plus the export options."""

    model: nn.Module
    names: list[str]
    imgsz: int
    out: Path
    stem: str = "model"
    dynamic: bool = False
    half: bool = False
    nms: bool = False
    strides: tuple[int, ...] = (8, 16, 32)
    extra: dict = field(default_factory=dict)

    def example(self, batch: int = 1) -> torch.Tensor:
        g = torch.Generator().manual_seed(0)
        return torch.rand(batch, 3, self.imgsz, self.imgsz, generator=g)


def artifact_metadata(ctx: ExportContext) -> dict[str, str]:
    """String key/values stored inside every artifact (ONNX metadata_props, OpenVINO rt_info, ...)."""
    from yoloslim import __version__

    return {
        "yoloslim_version": __version__,
        "names": json.dumps(list(ctx.names)),
        "nc": str(len(ctx.names)),
        "imgsz": str(ctx.imgsz),
        "strides": json.dumps(list(ctx.strides)),
        "output": "preds: (B, A, 4 + nc), boxes xyxy in input pixels, then sigmoid class scores",
    }
