"""Decode-side post-processing: confidence filter, class-aware NMS, letterbox inverse."""

from __future__ import annotations

import torch

from yoloslim.boxes import box_iou

__all__ = ["nms", "batched_nms", "postprocess", "scale_boxes"]


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_thres: float) -> torch.Tensor:
    """Greedy NMS; returns kept indices sorted by descending score.

    The IoU matrix of the candidates is computed once; the greedy pass then walks
    a boolean suppression matrix, which keeps the Python loop cheap.
    """
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    order = scores.argsort(descending=True, stable=True)
    over = (box_iou(boxes[order], boxes[order]) > iou_thres).cpu()
    n = len(order)
    removed = torch.zeros(n, dtype=torch.bool)
    keep = []
    for i in range(n):
        if removed[i]:
            continue
        keep.append(i)
        removed |= over[i]
    return order[torch.tensor(keep, dtype=torch.long, device=order.device)]


def batched_nms(
    boxes: torch.Tensor, scores: torch.Tensor, classes: torch.Tensor, iou_thres: float
) -> torch.Tensor:
    """Class-aware NMS: boxes of different classes never suppress each other."""
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    offset = classes.to(boxes.dtype)[:, None] * (boxes.max() - boxes.min() + 1)
    return nms(boxes + offset, scores, iou_thres)


def postprocess(
    preds: torch.Tensor,
    *,
    conf: float = 0.001,
    iou: float = 0.65,
    max_det: int = 300,
    max_nms: int = 3000,
    agnostic: bool = False,
    multi_label: bool = False,
) -> list[torch.Tensor]:
    """Decoded predictions ``(B, A, 4 + C)`` -> per image ``(n, 6)`` rows ``[x1, y1, x2, y2, score, cls]``.

    Args:
        preds: boxes xyxy in input pixels followed by class scores in [0, 1].
        conf: minimum score.
        iou: NMS IoU threshold.
        max_det: detections kept per image.
        max_nms: candidates entering NMS (highest scores first).
        agnostic: one NMS over all classes.
        multi_label: one candidate per (anchor, class) above ``conf`` instead of the best class only.
    """
    out = []
    for p in preds:
        boxes, cls_scores = p[:, :4], p[:, 4:]
        if multi_label:
            a, c = (cls_scores > conf).nonzero(as_tuple=True)
            boxes, scores, classes = boxes[a], cls_scores[a, c], c
        else:
            scores, classes = cls_scores.max(1)
            keep = scores > conf
            boxes, scores, classes = boxes[keep], scores[keep], classes[keep]
        if len(scores) > max_nms:
            top = scores.topk(max_nms).indices
            boxes, scores, classes = boxes[top], scores[top], classes[top]
        idx = nms(boxes, scores, iou) if agnostic else batched_nms(boxes, scores, classes, iou)
        idx = idx[:max_det]
        out.append(
            torch.cat([boxes[idx], scores[idx, None], classes[idx, None].to(boxes.dtype)], 1)
        )
    return out


def scale_boxes(
    boxes: torch.Tensor, ratio: float, pad: tuple[float, float], orig_shape: tuple[int, int]
) -> torch.Tensor:
    """Letterboxed-image boxes -> original image boxes: ``(b - pad) / ratio``, clipped."""
    out = boxes.clone()
    out[..., 0::2] = ((out[..., 0::2] - pad[0]) / ratio).clamp(0, orig_shape[1])
    out[..., 1::2] = ((out[..., 1::2] - pad[1]) / ratio).clamp(0, orig_shape[0])
    return out
