"""Run any inference callable over a detection dataset and score it with COCO mAP."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import torch
from torch.utils.data import DataLoader

from yoloslim.eval.coco import coco_map
from yoloslim.eval.postprocess import postprocess, scale_boxes

__all__ = ["evaluate"]


@torch.no_grad()
def evaluate(
    infer: Callable[[torch.Tensor], torch.Tensor],
    dataset,
    *,
    batch_size: int = 16,
    conf: float = 0.001,
    iou: float = 0.65,
    max_det: int = 300,
    workers: int = 0,
    progress: bool = False,
) -> dict:
    """COCO mAP of ``infer`` on ``dataset`` (boxes mapped back to original image pixels).

    Args:
        infer: takes float32 images in [0, 1] ``(B, 3, S, S)``, returns ``(B, A, 4 + C)``.
        dataset: a :class:`yoloslim.data.DetectionDataset` (``augment=False``).

    Returns:
        :func:`coco_map`'s dict plus ``speed_ms_per_image`` (inference only).
    """
    from yoloslim.data import collate

    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate
    )
    detections: list[dict] = []
    infer_s, n_images = 0.0, 0
    bar = _bar(progress, len(loader))
    with bar as pbar:
        task = pbar.add_task("val", total=len(loader)) if pbar else None
        for imgs, _, metas in loader:
            x = imgs.float().div_(255)
            t0 = time.perf_counter()
            preds = infer(x)
            infer_s += time.perf_counter() - t0
            n_images += len(imgs)
            preds = torch.as_tensor(preds).float().cpu()
            for det, meta in zip(
                postprocess(preds, conf=conf, iou=iou, max_det=max_det), metas, strict=True
            ):
                if meta.get("flipped"):
                    s = x.shape[-1]
                    det[:, [0, 2]] = s - det[:, [2, 0]]
                boxes = scale_boxes(det[:, :4], meta["ratio"], meta["pad"], meta["orig_shape"])
                for b, score, c in zip(
                    boxes.tolist(), det[:, 4].tolist(), det[:, 5].tolist(), strict=True
                ):
                    detections.append(
                        {
                            "image_id": int(meta["image_id"]),
                            "category_id": int(c),
                            "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                            "score": float(score),
                        }
                    )
            if pbar:
                pbar.update(task, advance=1)
    res = coco_map(dataset.coco_gt(), detections, names=list(dataset.names))
    res["speed_ms_per_image"] = 1000 * infer_s / max(1, n_images)
    return res


def _bar(enabled: bool, total: int):
    if not enabled:
        return contextlib.nullcontext(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    return Progress(TextColumn("[bold]val"), BarColumn(), MofNCompleteColumn())
