"""Task-aligned label assignment (Feng et al., TOOD, 2021), as YOLOv8/PP-YOLOE use it.

For each ground-truth box, anchors whose centre lies inside it are ranked by the
alignment metric ``t = s**alpha * iou**beta`` (``s``: the predicted score of the
gt's class, ``iou``: predicted box vs gt). The top-k become positives; an anchor
claimed by several gts keeps the one with the highest IoU. Soft targets are the
alignment metric normalised per gt so that its best anchor gets that gt's best IoU.
"""

from __future__ import annotations

import torch
from torch import nn

from yoloslim.boxes import box_iou

__all__ = ["TaskAlignedAssigner"]


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
        device = pred_scores.device
        if m == 0:
            return (
                torch.zeros(b, a, dtype=torch.long, device=device),
                torch.zeros(b, a, 4, device=device),
                torch.zeros(b, a, c, device=device),
                torch.zeros(b, a, dtype=torch.bool, device=device),
            )
        # anchors whose centre is inside each gt: (B, M, A)
        lt = points[None, None] - gt_boxes[:, :, None, :2]
        rb = gt_boxes[:, :, None, 2:] - points[None, None]
        inside = torch.cat([lt, rb], -1).amin(-1) > self.eps
        valid = inside & gt_mask[:, :, None]

        ious = torch.stack([box_iou(gt_boxes[i], pred_boxes[i]) for i in range(b)]).clamp_(0)
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

        # an anchor claimed by several gts keeps the gt with the highest IoU
        multi = pos.sum(1) > 1  # (B, A)
        if multi.any():
            best = (ious * pos).argmax(1)  # (B, A)
            one_hot = torch.zeros_like(pos).scatter_(1, best[:, None, :], True)
            pos = torch.where(multi[:, None, :], one_hot & pos, pos)
        fg = pos.any(1)
        gt_idx = pos.float().argmax(1)  # (B, A)

        t_labels = labels.gather(1, gt_idx)
        t_boxes = gt_boxes.gather(1, gt_idx[..., None].expand(b, a, 4))

        align = align * pos
        max_align = align.amax(-1, keepdim=True)
        max_iou = (ious * pos).amax(-1, keepdim=True)
        norm = (align * max_iou / (max_align + self.eps)).amax(1)  # (B, A)
        t_scores = torch.zeros(b, a, c, device=device, dtype=pred_scores.dtype)
        t_scores.scatter_(2, t_labels[..., None], 1.0)
        t_scores = t_scores * (norm * fg)[..., None]
        return t_labels, t_boxes, t_scores, fg
