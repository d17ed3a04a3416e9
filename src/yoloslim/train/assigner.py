"""Label assignment: task-aligned (TOOD) and, for the first epochs, ATSS.

Task-aligned (Feng et al., TOOD, 2021), as YOLOv8/PP-YOLOE use it: for each
ground-truth box, anchors whose centre lies inside it are ranked by the alignment
metric ``t = s**alpha * iou**beta`` (``s``: the predicted score of the gt's class,
``iou``: predicted box vs gt). The top-k become positives; an anchor claimed by
several gts keeps the one with the highest IoU. Soft targets are the alignment
metric normalised per gt so that its best anchor gets that gt's best IoU.

ATSS (Zhang et al., 2020) picks positives from geometry alone, so it does not depend
on what a freshly initialised head predicts; PP-YOLOE and YOLOv6 assign with it for
the first epochs, then switch to task-aligned. Each anchor point gets a square prior
box ``prior_scale x stride`` wide. Per gt and pyramid level, the ``topk`` anchors
nearest the gt's centre are candidates; those whose prior's IoU with the gt reaches
the mean + standard deviation of the candidates' IoUs, and whose centre is inside the
gt, become positives (several gts: the highest prior IoU wins). Soft targets are the
IoU of the predicted box with its gt, as in GFL.
"""

from __future__ import annotations

import torch
from torch import nn

from yoloslim.boxes import box_iou

__all__ = ["ATSSAssigner", "TaskAlignedAssigner"]


class TaskAlignedAssigner(nn.Module):
    """Assign gts to anchors; returns per-anchor targets."""

    def __init__(self, topk: int = 10, alpha: float = 1.0, beta: float = 6.0, eps: float = 1e-9):
        super().__init__()
        self.topk, self.alpha, self.beta, self.eps = topk, alpha, beta, eps

    @torch.no_grad()
    def forward(
        self,
        pred_scores: torch.Tensor,
        pred_boxes: torch.Tensor,
        points: torch.Tensor,
        gt_labels: torch.Tensor,
        gt_boxes: torch.Tensor,
        gt_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Assign.

        Args:
            pred_scores: (B, A, C) sigmoid scores.
            pred_boxes: (B, A, 4) xyxy pixels.
            points: (A, 2) anchor centres in pixels.
            gt_labels: (B, M) class ids (long).
            gt_boxes: (B, M, 4) xyxy pixels.
            gt_mask: (B, M) bool, True for real (non-padding) gts.

        Returns:
            target_labels (B, A) long, target_boxes (B, A, 4), target_scores (B, A, C),
            fg_mask (B, A) bool.
        """
        b, a, c = pred_scores.shape
        m = gt_boxes.shape[1]
        if m == 0:
            return _no_targets(b, a, c, pred_scores.device)
        valid = _inside(points, gt_boxes, self.eps) & gt_mask[:, :, None]  # (B, M, A)
        ious = _pairwise_iou(gt_boxes, pred_boxes)
        labels = gt_labels.clamp(0, c - 1)
        scores = pred_scores.gather(2, labels[:, None, :].expand(b, a, m)).transpose(
            1, 2
        )  # (B,M,A)
        align = scores.pow(self.alpha) * ious.pow(self.beta) * valid

        k = min(self.topk, a)
        top_vals, top_idx = align.topk(k, dim=-1)
        pos = torch.zeros_like(align, dtype=torch.bool)
        pos.scatter_(-1, top_idx, top_vals > self.eps)
        pos &= valid

        pos = _one_gt_per_anchor(pos, ious)
        align = align * pos
        max_align = align.amax(-1, keepdim=True)
        max_iou = (ious * pos).amax(-1, keepdim=True)
        norm = (align * max_iou / (max_align + self.eps)).amax(1)  # (B, A)
        return _targets(pos, labels, gt_boxes, norm, c, pred_scores.dtype)


class ATSSAssigner(nn.Module):
    """Adaptive training sample selection on anchor points (geometry only; see the module)."""

    def __init__(self, topk: int = 9, prior_scale: float = 5.0, eps: float = 1e-9):
        super().__init__()
        self.topk, self.prior_scale, self.eps = topk, prior_scale, eps

    @torch.no_grad()
    def forward(
        self,
        pred_boxes: torch.Tensor,
        points: torch.Tensor,
        strides: torch.Tensor,
        level_sizes: list[int],
        gt_labels: torch.Tensor,
        gt_boxes: torch.Tensor,
        gt_mask: torch.Tensor,
        nc: int,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Assign.

        Args:
            pred_boxes: (B, A, 4) xyxy pixels (only for the soft targets).
            points: (A, 2) anchor centres in pixels.
            strides: (A, 1) each anchor's stride.
            level_sizes: anchors per pyramid level, in the order of ``points``.
            gt_labels, gt_boxes, gt_mask: as for :class:`TaskAlignedAssigner`.
            nc: number of classes.

        Returns:
            target_labels (B, A) long, target_boxes (B, A, 4), target_scores (B, A, nc),
            fg_mask (B, A) bool.
        """
        b, a = pred_boxes.shape[:2]
        m = gt_boxes.shape[1]
        if m == 0:
            return _no_targets(b, a, nc, pred_boxes.device)
        if sum(level_sizes) != a:
            raise ValueError(f"level_sizes {level_sizes} sum to {sum(level_sizes)}, not {a}")
        half = strides * (self.prior_scale / 2)
        priors = torch.cat([points - half, points + half], -1)  # (A, 4)
        prior_iou = box_iou(gt_boxes.reshape(-1, 4), priors).reshape(b, m, a)
        centres = (gt_boxes[..., :2] + gt_boxes[..., 2:]) / 2
        dist = (centres[:, :, None] - points[None, None]).square().sum(-1)  # (B, M, A)

        cand = torch.zeros_like(dist, dtype=torch.bool)
        start = 0
        for n in level_sizes:
            idx = dist[..., start : start + n].topk(min(self.topk, n), -1, largest=False).indices
            cand.scatter_(-1, idx + start, True)
            start += n
        cnt = cand.sum(-1, keepdim=True)
        mean = (prior_iou * cand).sum(-1, keepdim=True) / cnt
        var = ((prior_iou - mean).square() * cand).sum(-1, keepdim=True) / (cnt - 1).clamp(min=1)
        pos = cand & (prior_iou >= mean + var.sqrt())
        pos &= _inside(points, gt_boxes, self.eps) & gt_mask[:, :, None]
        pos = _one_gt_per_anchor(pos, prior_iou)

        pred_iou = _pairwise_iou(gt_boxes, pred_boxes)
        soft = (pred_iou * pos).amax(1)  # (B, A): IoU of each positive's box with its gt
        return _targets(pos, gt_labels.clamp(0, nc - 1), gt_boxes, soft, nc, pred_boxes.dtype)


def _no_targets(b: int, a: int, c: int, device) -> tuple[torch.Tensor, ...]:
    return (
        torch.zeros(b, a, dtype=torch.long, device=device),
        torch.zeros(b, a, 4, device=device),
        torch.zeros(b, a, c, device=device),
        torch.zeros(b, a, dtype=torch.bool, device=device),
    )


def _inside(points: torch.Tensor, gt_boxes: torch.Tensor, eps: float) -> torch.Tensor:
    """(B, M, A): whether each anchor centre lies strictly inside each gt."""
    lt = points[None, None] - gt_boxes[:, :, None, :2]
    rb = gt_boxes[:, :, None, 2:] - points[None, None]
    return torch.cat([lt, rb], -1).amin(-1) > eps


def _pairwise_iou(gt_boxes: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """(B, M, A) IoU of each image's gts with its boxes, clamped at 0."""
    return torch.stack([box_iou(g, p) for g, p in zip(gt_boxes, boxes, strict=True)]).clamp_(0)


def _one_gt_per_anchor(pos: torch.Tensor, ious: torch.Tensor) -> torch.Tensor:
    """An anchor claimed by several gts keeps the gt with the highest IoU."""
    multi = pos.sum(1) > 1  # (B, A)
    if multi.any():
        best = (ious * pos).argmax(1)  # (B, A)
        one_hot = torch.zeros_like(pos).scatter_(1, best[:, None, :], True)
        pos = torch.where(multi[:, None, :], one_hot & pos, pos)
    return pos


def _targets(
    pos: torch.Tensor,
    labels: torch.Tensor,
    gt_boxes: torch.Tensor,
    score: torch.Tensor,
    c: int,
    dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-anchor labels, boxes, soft class scores (``score`` at the label) and fg mask."""
    b, _, a = pos.shape
    fg = pos.any(1)
    gt_idx = pos.float().argmax(1)  # (B, A)
    t_labels = labels.gather(1, gt_idx)
    t_boxes = gt_boxes.gather(1, gt_idx[..., None].expand(b, a, 4))
    t_scores = torch.zeros(b, a, c, device=pos.device, dtype=dtype)
    t_scores.scatter_(2, t_labels[..., None], 1.0)
    return t_labels, t_boxes, t_scores * (score * fg)[..., None], fg
