"""COCO mAP by the official protocol, computed with faster-coco-eval."""

from __future__ import annotations

import contextlib
import io
import logging
import math
from typing import Any

import numpy as np

from yoloslim.errors import DataError

__all__ = ["MAX_DETS", "coco_map"]

#: detections COCOeval scores per image and class (``maxDets``' last, which every AP reported
#: here uses): the lower-scored ones of an image and class count for nothing
MAX_DETS = 100

log = logging.getLogger(__name__)


class _Discard(io.TextIOBase):
    """A text stream that drops what is written and is never closed: a native extension that
    kept a reference to it past the redirect (a Ctrl-C in the middle of an evaluation) writes
    into nothing instead of aborting the process with "write to closed file"."""

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        return len(s)

    def close(self) -> None:
        pass


_DISCARD = _Discard()


def coco_map(
    gt: dict[str, Any], detections: list[dict[str, Any]], *, names: list[str] | None = None
) -> dict[str, Any]:
    """Evaluate box detections against a COCO ground-truth dict.

    Uses the COCO protocol (IoU 0.50:0.95, area "all", the best :data:`MAX_DETS`
    detections of each image and class). Neither ``gt`` nor ``detections`` is modified.

    Args:
        gt: COCO dict with ``images``, ``annotations`` (``bbox`` xywh in pixels) and
            ``categories``. Annotation ids are renumbered, missing ``iscrowd`` / ``area``
            fields filled in; an annotation of an unlisted category or image counts for
            nothing, as in COCOeval.
        detections: ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}`` dicts.
        names: Class names in category-id order (default: the categories' names).

    Returns:
        ``{"map", "map50", "map75", "per_class": {name: AP50-95}, "map_by_size":
        {"small", "medium", "large"}, "images", "detections"}``; APs are plain floats in
        [0, 1], or None where undefined: a class without (non-crowd) ground truth reports
        None, and so does every AP when ``gt`` has no box at all (with a warning), as COCO
        averages over the classes that have ground truth. ``map_by_size`` is COCO's AP50-95
        over boxes under 32x32 px, up to 96x96 px and above (in the ground truth's pixels);
        a size with no ground truth box reports None. No detections gives 0.0 wherever
        there is ground truth.

    Raises:
        DataError: ``names`` does not match the categories, a detection lacks a key,
            has a non-finite score, or names an image that is not in ``gt``.

    Example:
        >>> res = coco_map(dataset.coco_gt(), detections)  # doctest: +SKIP
        >>> res["map"], res["per_class"]["person"]  # doctest: +SKIP
    """
    cats = sorted(gt.get("categories", []), key=lambda c: c["id"])
    cat_ids = [c["id"] for c in cats]
    if names is None:
        names = [str(c.get("name", c["id"])) for c in cats]
    elif len(names) != len(cats):
        raise DataError(f"names has {len(names)} entries but gt has {len(cats)} categories")
    image_ids, known = {img["id"] for img in gt.get("images", [])}, set(cat_ids)
    dets = _clean_detections(detections, image_ids)
    unknown = {d["category_id"] for d in dets} - known
    if unknown:
        log.warning("detections with category ids %s not in gt are ignored", sorted(unknown))
    # COCOeval evaluates only the listed categories and images: boxes elsewhere count for nothing
    annotations = [
        a
        for a in gt.get("annotations", [])
        if a["category_id"] in known and a["image_id"] in image_ids
    ]
    with_gt = {a["category_id"] for a in annotations if not a.get("iscrowd")}
    undefined = not with_gt
    if undefined:
        log.warning(
            "the ground truth has no boxes in its categories and images (%d images): mAP is "
            "undefined, reported as None",
            len(gt.get("images", [])),
        )
    zero = None if undefined else 0.0
    result: dict[str, Any] = {
        "map": zero,
        "map50": zero,
        "map75": zero,
        "per_class": {
            n: 0.0 if c in with_gt else None for n, c in zip(names, cat_ids, strict=True)
        },
        "map_by_size": _sizes_present(annotations),
        "images": len(gt.get("images", [])),
        "detections": len(dets),
    }
    if not dets or undefined:
        return result
    gt = {
        "info": {},
        "licenses": [],
        **gt,
        "annotations": [
            # ids renumbered: bbox evaluation does not read them, and a repeated id or an id 0
            # would make the library drop or merge boxes
            {"iscrowd": 0, **a, "id": i + 1, "area": _area(a)}
            for i, a in enumerate(gt["annotations"])
        ],
    }
    from faster_coco_eval import COCO, COCOeval_faster

    # The library logs through its own print_function but a few paths still print().
    with contextlib.redirect_stdout(_DISCARD):
        coco_gt = COCO(gt, print_function=log.debug)
        coco_dt = coco_gt.loadRes(dets)
        ev = COCOeval_faster(coco_gt, coco_dt, iouType="bbox", print_function=log.debug)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = ev.stats  # -1 where undefined (no ground truth): None
    result.update(
        map=_defined(stats[0]),
        map50=_defined(stats[1]),
        map75=_defined(stats[2]),
        # stats[3:6]: areas small, medium, large
        map_by_size=dict(zip(_SIZES, map(_defined, stats[3:6]), strict=True)),
    )
    # precision: [T iou thresholds, R recall points, K categories, A areas, M max dets]
    precision = ev.eval["precision"]
    for k, cid in enumerate(ev.params.catIds):
        p = precision[:, :, k, 0, -1]
        if cid in cat_ids:
            valid = p[p > -1]
            result["per_class"][names[cat_ids.index(cid)]] = (
                float(np.mean(valid)) if valid.size else None
            )
    return result


def _integral(v: Any) -> int:
    """An id as an int; a non-integral number (0.7) is a ValueError, not truncated."""
    if isinstance(v, bool) or float(v) != int(v):
        raise ValueError(f"{v!r} is not an integer id")
    return int(v)


def _defined(v: float) -> float | None:
    return None if v < 0 else float(v)


_SIZES = {"small": (0, 32**2), "medium": (32**2, 96**2), "large": (96**2, float("inf"))}


def _area(annotation: dict[str, Any]) -> float:
    """The area COCO ranks a ground-truth box by: its own ``area`` if given, else w x h."""
    return float(annotation.get("area", annotation["bbox"][2] * annotation["bbox"][3]))


def _sizes_present(annotations: list[dict[str, Any]]) -> dict[str, float | None]:
    """0.0 for each COCO size range that some box falls in (bounds inclusive, as COCO), else
    None; crowd regions are not boxes to find (COCOeval leaves a range of only crowds undefined)."""
    areas = [_area(a) for a in annotations if not a.get("iscrowd")]
    return {k: 0.0 if any(lo <= x <= hi for x in areas) else None for k, (lo, hi) in _SIZES.items()}


def _clean_detections(detections: list[dict[str, Any]], image_ids: set) -> list[dict[str, Any]]:
    """Fresh plain-typed copies: loadRes mutates its input, and numpy scalars confuse it."""
    out = []
    for i, d in enumerate(detections):
        try:
            x, y, w, h = (float(v) for v in d["bbox"])
            det = {
                "image_id": _integral(d["image_id"]),
                "category_id": _integral(d["category_id"]),
                "bbox": [x, y, w, h],
                "score": float(d["score"]),
            }
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(
                f"detections[{i}]={d!r}: expected image_id, category_id, bbox [x, y, w, h], "
                f"score ({e})"
            ) from e
        if not math.isfinite(det["score"]):
            raise DataError(f"detections[{i}] has a non-finite score {det['score']}")
        if det["image_id"] not in image_ids:
            raise DataError(f"detections[{i}] has image_id={det['image_id']}, which is not in gt")
        out.append(det)
    return out
