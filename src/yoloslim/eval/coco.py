"""COCO mAP by the official protocol, computed with faster-coco-eval."""

from __future__ import annotations

import contextlib
import copy
import io
import logging

import numpy as np

__all__ = ["coco_map"]

log = logging.getLogger(__name__)


def coco_map(gt: dict, detections: list[dict], *, names: list[str] | None = None) -> dict:
    """Evaluate box detections against a COCO ground-truth dict.

    Args:
        gt: COCO dict (``images``, ``annotations`` with ``bbox`` xywh, ``categories``).
        detections: ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}`` dicts.
        names: class names in category order (default: the gt's category names).

    Returns:
        ``{"map", "map50", "map75", "per_class": {name: AP50-95}, "images", "detections"}``,
        all APs fractions in [0, 1].
    """
    from faster_coco_eval import COCO, COCOeval_faster

    cats = sorted(gt.get("categories", []), key=lambda c: c["id"])
    names = names or [c["name"] for c in cats]
    result = {
        "map": 0.0,
        "map50": 0.0,
        "map75": 0.0,
        "per_class": dict.fromkeys(names, 0.0),
        "images": len(gt.get("images", [])),
        "detections": len(detections),
    }
    if not detections or not gt.get("annotations"):
        return result
    gt = copy.deepcopy(gt)
    gt.setdefault("info", {})
    gt.setdefault("licenses", [])
    for i, a in enumerate(gt["annotations"]):
        a.setdefault("id", i + 1)
        a.setdefault("iscrowd", 0)
        a.setdefault("area", float(a["bbox"][2] * a["bbox"][3]))
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(gt)
        coco_dt = coco_gt.loadRes(list(detections))
        ev = COCOeval_faster(coco_gt, coco_dt, iouType="bbox", print_function=log.debug)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = ev.stats
    result.update(
        map=float(max(stats[0], 0.0)),
        map50=float(max(stats[1], 0.0)),
        map75=float(max(stats[2], 0.0)),
    )
    # precision: [T iou thresholds, R recall points, K categories, A areas, M max dets]
    precision = ev.eval["precision"]
    cat_ids = [c["id"] for c in cats]
    for k, cid in enumerate(ev.params.catIds):
        p = precision[:, :, k, 0, -1]
        ap = float(np.mean(p[p > -1])) if (p > -1).any() else 0.0
        idx = cat_ids.index(cid) if cid in cat_ids else k
        if idx < len(names):
            result["per_class"][names[idx]] = ap
    return result
