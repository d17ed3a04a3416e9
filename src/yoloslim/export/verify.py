"""Run an artifact in its own runtime and compare it with the PyTorch model.

Tolerances (on decoded outputs: box coordinates in pixels and scores in [0, 1]),
compared per element as ``|a - b| <= atol + rtol * |b|``:
- FP32 artifacts: ``atol = 1e-3 * imgsz`` on boxes is too loose, so boxes and scores
  are checked apart: boxes ``atol 1e-2 px, rtol 1e-3``; scores ``atol 1e-3``.
- FP16 artifacts, and OpenVINO when its plugin runs in bf16: boxes ``atol 1 px, rtol 2e-2``,
  scores ``atol 2e-2`` (half precision keeps ~3 significant digits).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from yoloslim.errors import ExportError
from yoloslim.runtime.backends import load_backend

__all__ = ["Tolerance", "FP32", "HALF", "verify_artifact", "test_images"]


@dataclass(frozen=True)
class Tolerance:
    box_atol: float
    box_rtol: float
    score_atol: float
    name: str


FP32 = Tolerance(box_atol=1e-2, box_rtol=1e-3, score_atol=1e-3, name="fp32")
HALF = Tolerance(box_atol=1.0, box_rtol=2e-2, score_atol=2e-2, name="half (fp16/bf16)")


def test_images(imgsz: int, batch: int = 2) -> torch.Tensor:
    """A random image and a structured one (gradient + rectangles), values in [0, 1]."""
    g = torch.Generator().manual_seed(0)
    rand = torch.rand(1, 3, imgsz, imgsz, generator=g)
    ramp = torch.linspace(0, 1, imgsz)
    struct = torch.stack(
        [
            ramp[None].expand(imgsz, -1),
            ramp[:, None].expand(-1, imgsz),
            torch.full((imgsz, imgsz), 0.45),
        ]
    )[None].clone()
    q = imgsz // 4
    struct[:, :, q : 2 * q, q : 3 * q] = torch.tensor([0.9, 0.1, 0.1])[None, :, None, None]
    struct[:, :, 2 * q + q // 2 : 3 * q + q // 2, q // 2 : q + q // 2] = 0.05
    return (
        torch.cat([rand, struct][:batch])
        if batch <= 2
        else torch.cat([rand, struct, torch.rand(batch - 2, 3, imgsz, imgsz, generator=g)])
    )


@torch.no_grad()
def verify_artifact(path: str | Path, model: nn.Module, imgsz: int, *, half: bool = False) -> dict:
    """Compare an artifact with ``model`` (deploy form, eval) on :func:`test_images`.

    Returns a report dict; raises :class:`ExportError` on a mismatch.
    """
    backend = load_backend(path)
    x = test_images(imgsz, batch=1 if getattr(backend, "static_batch", False) else 2)
    ref = model.eval()(x)
    out = backend(x)
    precision = str(backend.precision).lower()
    tol = HALF if half or "16" in precision else FP32
    if out.shape != ref.shape:
        raise ExportError(f"{path}: output shape {tuple(out.shape)} != PyTorch {tuple(ref.shape)}")
    box_diff = (out[..., :4] - ref[..., :4]).abs()
    score_diff = (out[..., 4:] - ref[..., 4:]).abs()
    box_ok = bool((box_diff <= tol.box_atol + tol.box_rtol * ref[..., :4].abs()).all())
    score_ok = bool((score_diff <= tol.score_atol).all())
    report = {
        "path": str(path),
        "runtime": backend.kind,
        "precision": str(backend.precision),
        "size_mb": round(_size(Path(path)) / 2**20, 3),
        "max_abs_diff_boxes_px": float(box_diff.max()),
        "max_abs_diff_scores": float(score_diff.max()),
        "tolerance": tol.__dict__,
        "passed": box_ok and score_ok,
    }
    if not report["passed"]:
        raise ExportError(
            f"{path}: {backend.kind} output differs from PyTorch beyond {tol.name} tolerance "
            f"(boxes max |diff| {report['max_abs_diff_boxes_px']:.4g} px, scores {report['max_abs_diff_scores']:.4g})"
        )
    return report


def _size(p: Path) -> int:
    if p.suffix == ".xml":
        return p.stat().st_size + p.with_suffix(".bin").stat().st_size
    return p.stat().st_size
