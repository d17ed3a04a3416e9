"""Box operations in pure torch (no torchvision).

All boxes are ``(..., 4)`` tensors; ``xyxy`` is ``(x1, y1, x2, y2)`` and ``xywh`` is
``(cx, cy, w, h)``. Every function is differentiable where the maths allows it.
"""

from __future__ import annotations

import math

import torch

__all__ = ["xywh2xyxy", "xyxy2xywh", "box_area", "box_iou", "bbox_iou", "clip_boxes"]

IOU_KINDS = ("iou", "giou", "diou", "ciou")


def xywh2xyxy(b: torch.Tensor) -> torch.Tensor:
    """Convert centre-size boxes to corner boxes.

    Args:
        b: ``(..., 4)`` boxes ``(cx, cy, w, h)``.

    Returns:
        ``(..., 4)`` boxes ``(x1, y1, x2, y2)``.
    """
    c, wh = b[..., :2], b[..., 2:4] / 2
    return torch.cat([c - wh, c + wh], -1)


def xyxy2xywh(b: torch.Tensor) -> torch.Tensor:
    """Convert corner boxes to centre-size boxes.

    Args:
        b: ``(..., 4)`` boxes ``(x1, y1, x2, y2)``.

    Returns:
        ``(..., 4)`` boxes ``(cx, cy, w, h)``.
    """
    return torch.cat([(b[..., :2] + b[..., 2:4]) / 2, b[..., 2:4] - b[..., :2]], -1)


def box_area(b: torch.Tensor) -> torch.Tensor:
    """Area of xyxy boxes; inverted boxes count as empty.

    Args:
        b: ``(..., 4)`` xyxy boxes.

    Returns:
        ``(...)`` areas, never negative.
    """
    return (b[..., 2] - b[..., 0]).clamp(min=0) * (b[..., 3] - b[..., 1]).clamp(min=0)


def box_iou(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Pairwise IoU of two sets of xyxy boxes.

    Args:
        a: ``(N, 4)`` boxes.
        b: ``(M, 4)`` boxes.
        eps: The least union divided by, so that empty boxes give 0, not NaN (a floor, not an
            addend: identical boxes give 1 down to an area of ``eps``; below it, less).
            Inverted boxes (x2 < x1) are empty, as in :func:`box_area` (ONNX's
            NonMaxSuppression, in an ``--nms`` export, reorders their corners instead; the
            heads here never make one).

    Returns:
        ``(N, M)`` IoU matrix.

    Example:
        >>> box_iou(torch.tensor([[0.0, 0, 10, 10]]), torch.tensor([[5.0, 0, 15, 10]]))
        tensor([[0.3333]])
    """
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    return inter / (box_area(a)[:, None] + box_area(b)[None] - inter).clamp(min=eps)


def bbox_iou(
    a: torch.Tensor, b: torch.Tensor, *, kind: str = "iou", eps: float = 1e-7
) -> torch.Tensor:
    """Elementwise IoU-family metric of matching xyxy boxes; differentiable.

    GIoU (Rezatofighi et al., 2019) subtracts the share of the enclosing box that the
    union leaves empty, so disjoint boxes still get a gradient (GIoU in ``(-1, 0]``).
    DIoU and CIoU (Zheng et al., 2020) subtract the squared centre distance over the
    squared enclosing diagonal; CIoU adds an aspect-ratio term whose weight ``alpha``
    is treated as a constant, as in the paper.

    Args:
        a: ``(..., 4)`` boxes.
        b: ``(..., 4)`` boxes, broadcastable against ``a``.
        kind: One of ``"iou"``, ``"giou"``, ``"diou"``, ``"ciou"``.
        eps: Numerical guard in every denominator.

    Returns:
        ``(...)`` metric per box pair.

    Raises:
        ValueError: ``kind`` is not one of the four.

    Example:
        >>> a, b = torch.tensor([0.0, 0, 1, 1]), torch.tensor([2.0, 0, 3, 1])
        >>> round(bbox_iou(a, b, kind="giou").item(), 4)
        -0.3333
    """
    if kind not in IOU_KINDS:
        raise ValueError(f"kind={kind!r}: expected one of {', '.join(IOU_KINDS)}")
    ax1, ay1, ax2, ay2 = a.unbind(-1)
    bx1, by1, bx2, by2 = b.unbind(-1)
    iw = (torch.minimum(ax2, bx2) - torch.maximum(ax1, bx1)).clamp(min=0)
    ih = (torch.minimum(ay2, by2) - torch.maximum(ay1, by1)).clamp(min=0)
    inter = iw * ih
    wa, ha = ax2 - ax1, ay2 - ay1
    wb, hb = bx2 - bx1, by2 - by1
    union = wa * ha + wb * hb - inter + eps
    iou = inter / union
    if kind == "iou":
        return iou
    cw = torch.maximum(ax2, bx2) - torch.minimum(ax1, bx1)
    ch = torch.maximum(ay2, by2) - torch.minimum(ay1, by1)
    if kind == "giou":
        c_area = cw * ch + eps
        return iou - (c_area - union) / c_area
    c2 = cw**2 + ch**2 + eps
    rho2 = ((bx1 + bx2 - ax1 - ax2) ** 2 + (by1 + by2 - ay1 - ay2) ** 2) / 4
    if kind == "diou":
        return iou - rho2 / c2
    v = (4 / math.pi**2) * (torch.atan(wb / (hb + eps)) - torch.atan(wa / (ha + eps))).pow(2)
    with torch.no_grad():
        alpha = v / (v - iou + (1 + eps))
    return iou - (rho2 / c2 + v * alpha)


def clip_boxes(b: torch.Tensor, h: float, w: float) -> torch.Tensor:
    """Clip xyxy boxes to an image.

    Args:
        b: ``(..., 4)`` xyxy boxes.
        h: Image height.
        w: Image width.

    Returns:
        A new tensor with x in ``[0, w]`` and y in ``[0, h]``.
    """
    out = b.clone()
    out[..., 0::2] = out[..., 0::2].clamp(0, w)
    out[..., 1::2] = out[..., 1::2].clamp(0, h)
    return out
