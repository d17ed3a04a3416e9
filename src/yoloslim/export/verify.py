"""Run an artifact in its own runtime and compare it with the PyTorch model.

Both see the same inputs, :func:`probe_images`: a random image and a structured one
(gradients and flat rectangles, closer to what a camera sees). Outputs are the
decoded ``(B, A, 4 + nc)`` tensors: box corners in input pixels, scores in [0, 1].
An element passes when ``|artifact - torch| <= atol + rtol * |torch|``, and a score also
when its logarithm (``log p``, ``p`` clamped to at least 1e-4) is within ``log_atol``:

======================  ==========================  ======================  ==========
precision               boxes (px)                  scores                  log scores
======================  ==========================  ======================  ==========
FP32                    atol 1e-3, rtol 1e-3        atol 1e-3               0.01
half (FP16 or bf16)     atol 1.0, rtol 1e-2         atol 2e-2               1.0
======================  ==========================  ======================  ==========

On the probe images an untrained or briefly trained detector scores every class near
0.01, as small as the absolute tolerances: a graph that zeroed the scores or swapped
the classes passed them. The log scores (a relative comparison of small scores; near 1
they differ no more than the scores do) see those where the absolute tolerance cannot:
zeroed scores moved them by 4.6 or more, swapped classes by 0.02 (a 2-epoch damo-nano,
whose classes score within 0.07 of each other) to 2.9 (15 epochs), while a faithful
export differs by 1e-4 (FP32), 0.01 (an FP16 IR computed at f32) or 0.1 (bf16). So at
half precision a class swap is caught only where the model's class scores differ by
more than a factor e (1.0 in log).

The half tolerance applies to FP16 weights and to any runtime that reports it
computes in half precision: half keeps ~3 significant digits, and a box corner is a
sum of 17 softmax-weighted bins times a stride of up to 32 px.

OpenVINO is checked at ``INFERENCE_PRECISION_HINT=f32``: what the check judges is the
export (the graph and its weights), not the plugin's choice of arithmetic. On
AVX512-BF16/AMX CPUs the plugin computes FP32 IR in bf16 by default; bf16 keeps 8
significant bits, its error compounds over the layers and depends on the model's
activations (a pruned and distilled damo-nano differed by 1.6 px at stride 8 on the
probe images, beyond the half tolerance, while the f32 run agreed to 1e-3). So the
default precision's differences are measured and reported beside the check
(``default_precision``), with a warning when they exceed the half tolerance; its
effect on accuracy is what ``yoloslim bench`` measures (mAP at the default precision).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from yoloslim.errors import ExportError
from yoloslim.export.common import ExportContext, path_size_mb
from yoloslim.runtime.backends import load_backend

__all__ = ["FP32", "HALF", "Tolerance", "probe_images", "verify_artifact", "verify_runtime"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tolerance:
    """Per-element tolerance on decoded outputs (boxes in pixels, scores in [0, 1])."""

    box_atol: float
    box_rtol: float
    score_atol: float
    score_log_atol: float
    name: str


FP32 = Tolerance(box_atol=1e-3, box_rtol=1e-3, score_atol=1e-3, score_log_atol=0.01, name="fp32")
HALF = Tolerance(
    box_atol=1.0, box_rtol=1e-2, score_atol=2e-2, score_log_atol=1.0, name="half (fp16/bf16)"
)
LOG_FLOOR = 1e-4  # scores below it compare as equal in log


def _log_scores(p: torch.Tensor) -> torch.Tensor:
    return p.double().clamp(min=LOG_FLOOR).log()


def probe_images(imgsz: int, batch: int = 2) -> torch.Tensor:
    """A random image, a structured one (gradient + rectangles), then more random ones; in [0, 1]."""
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
    images = [rand, struct]
    if batch > 2:
        images.append(torch.rand(batch - 2, 3, imgsz, imgsz, generator=g))
    return torch.cat(images)[:batch]


def compare(out: torch.Tensor, ref: torch.Tensor, tol: Tolerance) -> dict:
    """Max differences of decoded outputs and whether they are within ``tol``."""
    if out.shape != ref.shape:
        return {"passed": False, "shape": list(out.shape), "expected_shape": list(ref.shape)}
    box_diff = (out[..., :4] - ref[..., :4]).abs()
    score_diff = (out[..., 4:] - ref[..., 4:]).abs()
    log_diff = (_log_scores(out[..., 4:]) - _log_scores(ref[..., 4:])).abs()
    box_ok = bool((box_diff <= tol.box_atol + tol.box_rtol * ref[..., :4].abs()).all())
    score_ok = bool((score_diff <= tol.score_atol).all())
    log_ok = bool((log_diff <= tol.score_log_atol).all())
    return {
        "max_abs_diff": float(max(box_diff.max(), score_diff.max())),
        "max_abs_diff_boxes_px": float(box_diff.max()),
        "max_abs_diff_scores": float(score_diff.max()),
        "max_abs_diff_log_scores": float(log_diff.max()),
        "tolerance": asdict(tol),
        "passed": box_ok and score_ok and log_ok,
    }


@torch.no_grad()
def verify_artifact(
    path: str | Path, model: nn.Module, imgsz: int, *, half: bool = False, batch: int = 2
) -> dict:
    """Compare an artifact with ``model`` (deploy form, eval) on :func:`probe_images`.

    Args:
        path: an artifact :func:`yoloslim.runtime.load_backend` opens.
        model: the PyTorch model it was exported from.
        imgsz: input size.
        half: the artifact holds FP16 weights (use the half tolerance).
        batch: images per call (a static-batch artifact runs them one by one).

    Returns:
        The report entry: ``path``, ``runtime``, ``runtime_version``, ``precision`` (what
        the runtime computed the check in), ``size_mb``, ``max_abs_diff`` (and per boxes /
        scores), ``tolerance``, ``passed``. OpenVINO adds ``inference_precision_hint``
        (what the plugin computes in by default) and, when that is not f32,
        ``default_precision``: ``{precision, max_abs_diff_boxes_px, max_abs_diff_scores,
        within_half_tolerance}`` measured on the same inputs.

    Raises:
        ExportError: the outputs differ beyond the tolerance (or in shape).
    """
    is_ir = Path(path).suffix == ".xml"
    backend = load_backend(path, hint="f32" if is_ir else None)
    x = probe_images(imgsz, batch=batch)
    ref = model.eval()(x)
    out = backend(x)
    precision = str(backend.precision).lower()
    tol = HALF if half or "16" in precision else FP32
    report = {
        "path": str(path),
        "runtime": backend.kind,
        "runtime_version": backend.runtime_version,
        "precision": str(backend.precision),
        "size_mb": path_size_mb(Path(path)),
        "inputs": f"{batch} images {imgsz}px: random, structured",
        **compare(out, ref, tol),
    }
    if is_ir:
        report.update(_openvino_default_precision(path, x, ref))
    if not report["passed"]:
        if "shape" in report:
            raise ExportError(
                f"{path}: output shape {report['shape']} != PyTorch {report['expected_shape']}"
            )
        raise ExportError(
            f"{path}: {backend.kind} output differs from PyTorch beyond the {tol.name} tolerance "
            f"(boxes max |diff| {report['max_abs_diff_boxes_px']:.4g} px, "
            f"scores {report['max_abs_diff_scores']:.4g}, log scores "
            f"{report['max_abs_diff_log_scores']:.4g}; allowed {asdict(tol)})"
        )
    return report


def _openvino_default_precision(path: str | Path, x: torch.Tensor, ref: torch.Tensor) -> dict:
    """The plugin's default precision and, unless it is f32, how far it lands from ``ref``."""
    default = load_backend(path)
    hint = str(default.precision)
    # OpenVINO's own word for it (f32, bf16), as the plugin's property says
    entry: dict = {"inference_precision_hint": default.compiled_hint}
    if hint != "fp32":
        diff = compare(default(x), ref, HALF)
        entry["default_precision"] = {
            "precision": hint,
            "max_abs_diff_boxes_px": diff["max_abs_diff_boxes_px"],
            "max_abs_diff_scores": diff["max_abs_diff_scores"],
            "max_abs_diff_log_scores": diff["max_abs_diff_log_scores"],
            "within_half_tolerance": diff["passed"],
        }
        if not diff["passed"]:
            logger.warning(
                "%s: OpenVINO's default %s differs from PyTorch by up to %.3g px / %.3g in "
                "score (%.3g in log score) on the check's probe images, beyond the half "
                "tolerance (the f32 check passed; real images can differ more); measure its "
                "mAP with yoloslim bench, or run it at f32 (predict/val --ov-precision f32)",
                path,
                hint,
                diff["max_abs_diff_boxes_px"],
                diff["max_abs_diff_scores"],
                diff["max_abs_diff_log_scores"],
            )
    return entry


def verify_runtime(path: Path, ctx: ExportContext, *, half: bool = False) -> dict:
    """:func:`verify_artifact` for an exporter (its ``verify`` hook)."""
    return verify_artifact(path, ctx.model, ctx.imgsz, half=half)
