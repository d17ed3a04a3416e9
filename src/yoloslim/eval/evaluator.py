"""Run any inference callable over a detection dataset and score it with COCO mAP."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import torch

from yoloslim.eval.coco import MAX_DETS, coco_map
from yoloslim.eval.postprocess import postprocess_in_image, scale_boxes
from yoloslim.progress import progress_console

__all__ = ["evaluate"]


@torch.no_grad()
def evaluate(
    infer: Callable[[torch.Tensor], torch.Tensor],
    dataset: Any,
    *,
    batch_size: int = 16,
    conf: float = 0.001,
    iou: float = 0.65,
    max_det: int = 300,
    workers: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """COCO mAP of ``infer`` on ``dataset``, boxes mapped back to original image pixels.

    Args:
        infer: Takes float32 images in [0, 1] ``(B, 3, S, S)`` on the CPU and returns
            ``(B, A, 4 + C)``: xyxy boxes in input pixels, then class scores in [0, 1]
            (a tensor on any device, or a numpy array). It moves the images itself.
        dataset: A :class:`yoloslim.data.DetectionDataset` without augmentation, or
            anything with the same ``__getitem__`` -> ``(img, targets, meta)``,
            ``coco_gt()`` and ``names``.
        batch_size: Images per ``infer`` call.
        conf: Confidence threshold before NMS.
        iou: NMS IoU threshold.
        max_det: Detections kept per image by NMS (of which COCOeval scores the best
            :data:`~yoloslim.eval.coco.MAX_DETS` per class; only those are kept).
        workers: DataLoader worker processes (0: load in this process).
        progress: Show a rich progress bar.

    Returns:
        :func:`~yoloslim.eval.coco.coco_map`'s dict plus ``capped_images`` (images that
        gave ``max_det`` detections), ``capped_dense_images`` (those of them with at least
        ``max_det / DENSE`` ground-truth boxes) and ``speed_ms_per_image``
        (time inside ``infer`` only, CUDA synchronised; each batch shape is run once untimed
        first, so a runtime's one-time set-up at a shape is not counted).

    Example:
        >>> model.eval()  # doctest: +SKIP
        >>> evaluate(lambda x: model(x.cuda()), val_ds)["map50"]  # doctest: +SKIP
    """
    from yoloslim.data import build_dataloader

    loader = build_dataloader(dataset, batch_size, workers=workers)
    detections: list[dict[str, Any]] = []
    infer_s, n_images, capped = 0.0, 0, []
    shapes: set[tuple[int, ...]] = set()
    for imgs, _, metas in _progress(loader, progress):
        x = imgs.float().div_(255)
        if tuple(x.shape) not in shapes:
            # a runtime's first call at a shape sets up its kernels (oneDNN, a JIT): seconds
            # on a small split, which the speed would be made of; that call goes untimed
            shapes.add(tuple(x.shape))
            infer(x)
        t0 = time.perf_counter()
        preds = torch.as_tensor(infer(x))
        if preds.is_cuda:
            torch.cuda.synchronize(preds.device)
        infer_s += time.perf_counter() - t0
        n_images += len(imgs)
        # as predict: NMS on the boxes in the image's pixels, clipped to it (audit49 cli F1),
        # and a box wholly in the letterbox's padding is no detection (audit48 eval F1)
        preds = preds.float()
        boxes = torch.stack(
            [_original(p[:, :4], meta, x.shape[-1]) for p, meta in zip(preds, metas, strict=True)]
        )
        dets = postprocess_in_image(preds, boxes, conf=conf, iou=iou, max_det=max_det)
        capped += [
            int(m["image_id"]) for d, m in zip(dets, metas, strict=True) if len(d) >= max_det
        ]
        for det, meta in zip(dets, metas, strict=True):
            detections += _to_coco(scored_only(det.cpu()), meta)
    gt = dataset.coco_gt()
    res = coco_map(gt, detections, names=list(dataset.names))
    res["speed_ms_per_image"] = 1000 * infer_s / max(1, n_images)
    # images whose detections max_det cut; at a low conf most are (a few hundred candidate
    # boxes), and the cut ones, the lowest-scored, matter where an image holds many objects
    # (crowd regions and VOC "difficult" objects are no objects to find: audit50 eval F1)
    boxes = Counter(a["image_id"] for a in gt["annotations"] if not a.get("iscrowd"))
    res["capped_images"] = len(capped)
    res["capped_dense_images"] = sum(boxes[i] * DENSE >= max_det for i in capped)
    return res


#: an image with at least ``max_det / DENSE`` ground-truth boxes is one whose true detections
#: a ``max_det`` cap may cut (val warns when such an image hits it)
DENSE = 3


def scored_only(det: torch.Tensor, keep: int = MAX_DETS) -> torch.Tensor:
    """The rows of one image's ``(n, 6)`` detections that COCOeval can score: of each class,
    those at least as high as its ``keep``-th score (ties there all stay: COCOeval picks among
    them as it would have). The rest count for nothing, and held as result dicts they cost
    about 2 KB each: 1.5 million for COCO val at ``max_det`` 300, most of them of a dataset
    with few classes. Order is kept."""
    if len(det) <= keep:
        return det
    mask = torch.ones(len(det), dtype=torch.bool)
    for c in det[:, 5].unique():
        of_c = det[:, 5] == c
        scores = det[of_c, 4]
        if len(scores) > keep:
            floor = scores.topk(keep).values[-1]
            mask[of_c] = scores >= floor
    return det[mask]


def _to_coco(det: torch.Tensor, meta: dict[str, Any]) -> list[dict[str, Any]]:
    """``(n, 6)`` detections of one image, in its original pixels -> COCO result dicts."""
    boxes = det[:, :4]
    image_id = int(meta["image_id"])
    return [
        {
            "image_id": image_id,
            "category_id": int(c),
            "bbox": [x1, y1, x2 - x1, y2 - y1],
            "score": score,
        }
        for (x1, y1, x2, y2), score, c in zip(
            boxes.tolist(), det[:, 4].tolist(), det[:, 5].tolist(), strict=True
        )
    ]


def _original(boxes: torch.Tensor, meta: dict[str, Any], size: int) -> torch.Tensor:
    """Letterboxed xyxy ``boxes`` of one image in its original pixels."""
    if meta.get("flipped"):  # undo a horizontal flip in letterboxed space first
        boxes = boxes.clone()
        boxes[:, [0, 2]] = size - boxes[:, [2, 0]]
    return scale_boxes(boxes, meta["ratio"], meta["pad"], meta["orig_shape"])


def _progress(loader: Any, enabled: bool) -> Iterator[Any]:
    if not enabled:
        yield from loader
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    bar_columns = (TextColumn("[bold]val"), BarColumn(), MofNCompleteColumn())
    with Progress(*bar_columns, console=progress_console()) as bar:
        yield from bar.track(loader, total=len(loader))
