"""Detection loss: quality/varifocal classification + GIoU + distribution focal loss.

- Classification: quality focal loss (Li et al., GFL, 2020) against IoU-aware soft
  targets from the task-aligned assigner (ATSS for the first epochs if configured); or varifocal loss (Zhang et al.,
  VarifocalNet, 2021); ``bce`` is QFL with beta = 0.
- Box: 1 - GIoU on positives, weighted by their soft target.
- DFL: cross-entropy on the two bins around the target distance (GFL).
All terms are normalised by the sum of the soft targets (at least 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from yoloslim.boxes import bbox_iou
from yoloslim.configs import check_field_types, check_ranges
from yoloslim.models.head import dfl_expectation, flatten_maps, make_anchors
from yoloslim.train.assigner import ATSSAssigner, TaskAlignedAssigner

__all__ = ["LossConfig", "DetectionLoss"]


@dataclass(frozen=True)
class LossConfig:
    """Loss gains and options.

    Attributes:
        cls: gain of the classification term.
        box: gain of the GIoU term.
        dfl: gain of the distribution focal term.
        cls_loss: "qfl", "vfl" or "bce".
        qfl_beta: QFL modulating exponent.
        topk: positives per gt in the task-aligned assigner (the ATSS epochs take the 9
            nearest anchors per level, as ATSS defines it, whatever topk is).
        static_assigner_epochs: assign with ATSS (geometry only, independent of the
            initial weights' predictions) for this many epochs, then task-aligned, as
            PP-YOLOE and YOLOv6 do; 0: task-aligned from the start. ``None`` (auto):
            :func:`yoloslim.train.train` picks ``max(1, min(4, epochs // 4))`` for a model that
            starts from random weights (a name or an arch) and 0 for a Detector it is
            given (fine-tuning), and saves the number it picked; elsewhere 0.
    """

    cls: float = 1.0
    box: float = 7.5
    dfl: float = 1.5
    cls_loss: str = "qfl"
    qfl_beta: float = 2.0
    topk: int = 10
    static_assigner_epochs: int | None = None

    def __post_init__(self) -> None:
        check_field_types(
            self,
            ints=("topk", "static_assigner_epochs"),
            numbers=("cls", "box", "dfl", "qfl_beta"),
            optional=("static_assigner_epochs",),
        )
        finite = {n: 0 <= getattr(self, n) < math.inf for n in ("cls", "box", "dfl", "qfl_beta")}
        check_ranges(
            self,
            [
                (self.cls_loss in ("qfl", "vfl", "bce"), "cls_loss", "must be qfl, vfl or bce"),
                (
                    self.static_assigner_epochs is None or self.static_assigner_epochs >= 0,
                    "static_assigner_epochs",
                    "must be >= 0",
                ),
                # topk 0 gave no positives (a run that learnt nothing), -1 an error in the
                # first step
                (self.topk >= 1, "topk", "must be >= 1 (positives per object)"),
                *((ok, n, "must be finite, >= 0") for n, ok in finite.items()),
            ],
        )


def _cls_loss(logits: torch.Tensor, target: torch.Tensor, kind: str, beta: float) -> torch.Tensor:
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    if kind == "bce":
        return bce.sum()
    p = logits.sigmoid()
    if kind == "qfl":
        return (bce * (target - p).abs().pow(beta)).sum()
    # varifocal: positives weighted by their IoU target, negatives by alpha * p^gamma
    weight = torch.where(target > 0, target, 0.75 * p.pow(2.0)).detach()
    return (bce * weight).sum()


class DetectionLoss(nn.Module):
    """Compute the training loss from raw head maps and targets.

    ``targets`` is ``(M, 6)``: ``[batch_idx, cls, x1, y1, x2, y2]`` in input pixels.
    Returns ``(total, parts)`` where ``parts`` is a detached tensor ``[box, cls, dfl]``;
    ``total`` is multiplied by the batch size (the usual convention with mean-free sums).
    """

    def __init__(
        self, nc: int, reg_max: int, strides: tuple[int, ...], config: LossConfig | None = None
    ):
        super().__init__()
        self.nc, self.reg_max, self.strides = nc, reg_max, tuple(strides)
        self.cfg = config or LossConfig()
        self.assigner = TaskAlignedAssigner(topk=self.cfg.topk)
        self.static_assigner = ATSSAssigner()
        self.epoch = 0  # the trainer sets it; picks the assigner

    def forward(
        self, raw: list[torch.Tensor], targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        b = raw[0].shape[0]
        flat = flatten_maps(raw)  # (B, A, no)
        nreg = 4 * (self.reg_max + 1)
        reg_logits, cls_logits = flat[..., :nreg], flat[..., nreg:]
        points, strides = make_anchors(raw, list(self.strides))

        dist = dfl_expectation(reg_logits, self.reg_max)  # stride units
        pred_boxes = torch.cat(
            [points / strides - dist[..., :2], points / strides + dist[..., 2:]], -1
        )

        gt_labels, gt_boxes, gt_mask = self._pad_targets(targets, b, flat.device)
        boxes_px = (pred_boxes.detach() * strides).to(gt_boxes.dtype)
        if self.epoch < (self.cfg.static_assigner_epochs or 0):
            sizes = [r.shape[-2] * r.shape[-1] for r in raw]
            t_labels, t_boxes, t_scores, fg = self.static_assigner(
                boxes_px, points, strides, sizes, gt_labels, gt_boxes, gt_mask, self.nc
            )
        else:
            t_labels, t_boxes, t_scores, fg = self.assigner(
                cls_logits.detach().sigmoid(), boxes_px, points, gt_labels, gt_boxes, gt_mask
            )
        norm = t_scores.sum().clamp(min=1.0)
        loss_cls = (
            _cls_loss(
                cls_logits, t_scores.to(cls_logits.dtype), self.cfg.cls_loss, self.cfg.qfl_beta
            )
            / norm
        )

        loss_box = flat.new_zeros(())
        loss_dfl = flat.new_zeros(())
        if fg.any():
            weight = t_scores.sum(-1)[fg]
            t_boxes_s = t_boxes / strides  # stride units, like pred_boxes
            iou = bbox_iou(pred_boxes[fg], t_boxes_s[fg], kind="giou")
            loss_box = ((1.0 - iou) * weight).sum() / norm
            anchor = (points / strides)[None].expand(b, -1, -1)[fg]
            t_dist = torch.cat([anchor - t_boxes_s[fg][:, :2], t_boxes_s[fg][:, 2:] - anchor], -1)
            t_dist = t_dist.clamp(0, self.reg_max - 0.01)
            loss_dfl = (
                self._dfl(reg_logits[fg].reshape(-1, self.reg_max + 1), t_dist.reshape(-1))
                .reshape(-1, 4)
                .mean(-1)
                * weight
            ).sum() / norm
        total = self.cfg.box * loss_box + self.cfg.cls * loss_cls + self.cfg.dfl * loss_dfl
        parts = torch.stack([loss_box, loss_cls, loss_dfl]).detach()
        return total * b, parts

    @staticmethod
    def _dfl(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        left = target.long()
        right = left + 1
        wl = right.float() - target
        wr = 1.0 - wl
        return (
            F.cross_entropy(logits, left, reduction="none") * wl
            + F.cross_entropy(logits, right, reduction="none") * wr
        )

    @staticmethod
    def _pad_targets(
        targets: torch.Tensor, b: int, device
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if targets.numel() == 0:
            return (
                torch.zeros(b, 0, dtype=torch.long, device=device),
                torch.zeros(b, 0, 4, device=device),
                torch.zeros(b, 0, dtype=torch.bool, device=device),
            )
        idx = targets[:, 0].long()
        counts = torch.bincount(idx, minlength=b)
        m = int(counts.max())
        labels = torch.zeros(b, m, dtype=torch.long, device=device)
        boxes = torch.zeros(b, m, 4, device=device)
        mask = torch.zeros(b, m, dtype=torch.bool, device=device)
        order = torch.argsort(idx, stable=True)
        t = targets[order].to(device)
        starts = torch.cumsum(counts, 0) - counts
        slot = torch.arange(len(t), device=device) - starts[idx[order]]
        bi = idx[order]
        labels[bi, slot] = t[:, 1].long()
        boxes[bi, slot] = t[:, 2:6].float()
        mask[bi, slot] = True
        return labels, boxes, mask
