"""Box operations in pure torch (no torchvision)."""

from __future__ import annotations

import math

import torch

__all__ = ["xywh2xyxy", "xyxy2xywh", "box_area", "box_iou", "bbox_iou", "clip_boxes"]


def xywh2xyxy(b: torch.Tensor) -> torch.Tensor:
    """(cx, cy, w, h) -> (x1, y1, x2, y2)."""
    c, wh = b[..., :2], b[..., 2:4] / 2
    return torch.cat([c - wh, c + wh], -1)


def xyxy2xywh(b: torch.Tensor) -> torch.Tensor:
    """(x1, y1, x2, y2) -> (cx, cy, w, h)."""
    return torch.cat([(b[..., :2] + b[..., 2:4]) / 2, b[..., 2:4] - b[..., :2]], -1)


def box_area(b: torch.Tensor) -> torch.Tensor:
    return (b[..., 2] - b[..., 0]).clamp(min=0) * (b[..., 3] - b[..., 1]).clamp(min=0)


def box_iou(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Pairwise IoU of ``a`` (N, 4) and ``b`` (M, 4), xyxy -> (N, M)."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    return inter / (box_area(a)[:, None] + box_area(b)[None] - inter + eps)


def bbox_iou(
    a: torch.Tensor, b: torch.Tensor, *, kind: str = "iou", eps: float = 1e-7
) -> torch.Tensor:
    """Elementwise IoU-family metric of matching boxes ``(..., 4)`` xyxy; differentiable.

    ``kind``: "iou", "giou" (Rezatofighi et al., 2019), "diou" or "ciou" (Zheng et al., 2020).
    """
    if kind not in ("iou", "giou", "diou", "ciou"):
        raise ValueError(f"kind={kind!r}: expected iou, giou, diou or ciou")
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
    """Clip xyxy boxes to an image of height ``h`` and width ``w`` (returns a new tensor)."""
    out = b.clone()
    out[..., 0::2] = out[..., 0::2].clamp(0, w)
    out[..., 1::2] = out[..., 1::2].clamp(0, h)
    return out
