"""COCO reader (``instances.json`` + an image folder).

Category ids map to contiguous class indices by name (or in sorted id order); crowd
annotations become ignore regions; a malformed entry is a ``DataError`` naming the json
and the ``images[k]`` or ``annotations[k] (id=...)`` entry.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from yoloslim.data.sample import Sample, probe_images, warn_empty, warn_outside
from yoloslim.errors import DataError

__all__ = ["read_coco"]

logger = logging.getLogger(__name__)


def _coco_error(json_path: Path, msg: str) -> DataError:
    return DataError(f"{json_path}: {msg}")


def read_coco(
    json_path: str | Path,
    images_dir: str | Path,
    names: Sequence[str] | None = None,
    *,
    skipped: list[Path] | None = None,
) -> tuple[list[Sample], list[str]]:
    """Read a COCO ``instances.json``.

    Category ids map to contiguous indices ``0..K-1`` in sorted id order. Crowd
    annotations become the sample's ``ignore`` regions (not trained on; evaluation
    ignores detections on them, as COCOeval does), each annotation's ``area`` is kept
    for COCO's size split, boxes are clipped to the image and zero-area boxes dropped.

    Args:
        json_path: The annotation file.
        images_dir: Folder the ``file_name`` entries are relative to.
        names: Expected class names (from ``data.yaml``). Categories are matched
            by name when given; the json's names are used otherwise.
        skipped: If given, unreadable image paths are appended to it.

    Returns:
        ``(samples, names)``; ``image_id`` keeps the json's image ids.

    Raises:
        DataError: Malformed json or annotation (the message names the file and
            the line or annotation id), or no readable image.
    """
    jp, idir = Path(json_path), Path(images_dir)
    try:
        data = json.loads(jp.read_text(encoding="utf-8-sig"))
    except FileNotFoundError as e:
        raise _coco_error(jp, "annotation file not found") from e
    except json.JSONDecodeError as e:
        raise _coco_error(jp, f"line {e.lineno}: invalid JSON: {e.msg}") from e
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise _coco_error(jp, "missing 'images' list")
    try:
        cats = sorted(data.get("categories", []), key=lambda c: int(c["id"]))
        cat_names = [str(c["name"]) for c in cats]
        cat_ids = [int(c["id"]) for c in cats]
    except (KeyError, TypeError, ValueError) as e:
        raise _coco_error(jp, f"malformed 'categories': {e!r}") from e
    if names is not None and (set(cat_names) - set(names) or len(cat_names) != len(names)):
        cat_ids, cat_names = _drop_unused_categories(data, jp, cat_ids, cat_names, names)
    if names is None:
        out_names = cat_names
        cat_map = {cid: i for i, cid in enumerate(cat_ids)}
    else:
        out_names = list(names)
        if set(cat_names) != set(out_names) or len(cat_names) != len(out_names):
            raise _coco_error(jp, f"categories {cat_names} do not match names {out_names}")
        cat_map = {cid: out_names.index(n) for cid, n in zip(cat_ids, cat_names, strict=True)}
    if not cat_map:
        raise _coco_error(jp, "no categories")

    images: dict[int, dict] = {}
    for k, im in enumerate(data["images"]):
        try:
            img_id, file_name = int(im["id"]), str(im["file_name"])
        except (KeyError, TypeError, ValueError) as e:
            raise _coco_error(jp, f"images[{k}]: malformed entry ({e!r})") from e
        if img_id in images:  # merged exports that both count from 1, say
            if images[img_id]["file_name"] == file_name:
                continue  # the same image listed twice: one entry serves
            raise _coco_error(
                jp, f"images[{k}]: duplicate image id {img_id} (also images[{images[img_id]['k']}])"
            )
        path = idir / file_name
        if "\\" in file_name and not path.exists():  # written on Windows
            path = idir / file_name.replace("\\", "/")
        images[img_id] = {"path": path, "k": k, "file_name": file_name}
    # per image: (class, bbox, area or None, crowd)
    anns: dict[int, list[tuple[int, list[float], float | None, bool]]] = {i: [] for i in images}
    empty: list[str] = []  # annotations whose box has no width or height
    for k, a in enumerate(data.get("annotations", [])):
        where = f"annotations[{k}] (id={a.get('id') if isinstance(a, dict) else '?'})"
        try:
            img_id, cat = int(a["image_id"]), int(a["category_id"])
            bbox = [float(v) for v in a["bbox"]]
        except (KeyError, TypeError, ValueError) as e:
            raise _coco_error(jp, f"{where}: malformed annotation ({e!r})") from e
        if img_id not in images:
            raise _coco_error(jp, f"{where}: unknown image_id {img_id}")
        if cat not in cat_map:
            raise _coco_error(jp, f"{where}: unknown category_id {cat}")
        if len(bbox) != 4 or not all(math.isfinite(v) for v in bbox) or min(bbox[2:]) < 0:
            raise _coco_error(jp, f"{where}: bbox must be 4 finite values with w, h >= 0")
        area = a.get("area")
        if area is not None:
            try:
                area = float(area)
            except (TypeError, ValueError) as e:
                raise _coco_error(jp, f"{where}: area {area!r} is not a number") from e
            if not math.isfinite(area) or area < 0:
                raise _coco_error(jp, f"{where}: area must be finite and >= 0, got {area}")
        crowd = bool(a.get("iscrowd", 0))
        if not crowd and min(bbox[2:]) == 0:
            empty.append(where)
        anns[img_id].append((cat_map[cat], bbox, area, crowd))
    warn_empty(jp, "annotation(s)", empty)

    hint = (
        f"is {idir} (the data.yaml's train_images or val_images) the folder the "
        "file_name entries are relative to?"
    )
    sizes = probe_images([v["path"] for v in images.values()], jp, skipped, hint=hint)
    samples = []
    outside: dict[str, int] = {}
    for img_id, v in images.items():
        if v["path"] not in sizes:
            continue
        size = sizes[v["path"]]
        objects = [x for x in anns[img_id] if not x[3]]
        crowds = [x for x in anns[img_id] if x[3]]
        boxes, classes, areas = _coco_boxes(objects, *size)
        ignore, ignore_classes, ignore_areas = _coco_boxes(crowds, *size)
        lost = sum(min(b[2:]) > 0 for _, b, _, _ in objects) - len(boxes)  # not the empty ones
        if lost:
            outside[f"image id {img_id}"] = lost
        samples.append(
            Sample(
                v["path"],
                boxes,
                classes,
                *size,
                img_id,
                ignore=ignore,
                ignore_classes=ignore_classes,
                areas=areas,
                ignore_areas=ignore_areas,
            )
        )
    warn_outside(jp, outside)
    return samples, out_names


def _drop_unused_categories(
    data: dict, jp: Path, cat_ids: list[int], cat_names: list[str], names: Sequence[str]
) -> tuple[list[int], list[str]]:
    """Categories that no annotation uses left out, with a note, where they are outside
    ``names`` or repeat another category's name (a Roboflow export's project-wide category,
    id 0, named after the project or its only class); a used one stays, for the mismatch
    error."""
    used = set()
    for a in data.get("annotations", []):
        with contextlib.suppress(KeyError, TypeError, ValueError):
            used.add(int(a["category_id"]))
    repeated = {n for n in cat_names if cat_names.count(n) > 1}
    extra = [
        (cid, n)
        for cid, n in zip(cat_ids, cat_names, strict=True)
        if (n not in names or n in repeated) and cid not in used
    ]
    if not extra:
        return cat_ids, cat_names
    logger.info(
        "%s: left out %d categor%s outside the data's names that no annotation uses: %s",
        jp,
        len(extra),
        "y" if len(extra) == 1 else "ies",
        ", ".join(f"{n!r} (id {cid})" for cid, n in extra),
    )
    keep = [(cid, n) for cid, n in zip(cat_ids, cat_names, strict=True) if (cid, n) not in extra]
    return [c for c, _ in keep], [n for _, n in keep]


def _coco_boxes(anns: list, w: int, h: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """xyxy boxes clipped to the image (empty ones dropped), their classes, and their
    annotations' own areas (a box's area where an annotation has none)."""
    boxes = np.array([b for _, b, _, _ in anns], np.float64).reshape(-1, 4)
    boxes[:, 2:] += boxes[:, :2]
    boxes = np.clip(boxes, 0, [w, h, w, h])
    box_areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    areas = np.array(
        [b if a is None else a for (_, _, a, _), b in zip(anns, box_areas, strict=True)],
        np.float64,
    )
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    classes = np.array([c for c, _, _, _ in anns], np.int64)
    return boxes[keep], classes[keep], areas[keep]
