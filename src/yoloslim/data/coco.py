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
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from yoloslim.data.sample import (
    Sample,
    SizeCheck,
    annotated_size,
    clip_to_image,
    count_change,
    examples,
    past_edge,
    probe_images,
    read_text,
    warn_clipped,
    warn_empty,
    warn_outside,
)
from yoloslim.errors import DataError

__all__ = ["read_coco"]

logger = logging.getLogger(__name__)


def _coco_error(json_path: Path, msg: str) -> DataError:
    return DataError(f"{json_path}: {msg}")


def _integer(jp: Path, where: str, entry: dict, key: str) -> int:
    """``entry[key]`` as an int (COCO's ids are integers; a numeric string is taken), or a
    DataError naming the entry and the key."""
    if key not in entry:
        raise _coco_error(jp, f"{where}: no '{key}'")
    value = entry[key]
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*-?[0-9]+\s*", value, re.ASCII):
        return int(value)  # ("--1" and "¹" passed an isdigit() test, and int() refused them)
    raise _coco_error(jp, f"{where}: {key} {value!r} is not an integer (COCO's ids are integers)")


def _crowd(jp: Path, where: str, value: object) -> bool:
    """``iscrowd`` as a flag: 0/1, a bool, or "0"/"1" (``bool("0")`` is True: the object
    became an ignore region without a word); anything else is a DataError naming it."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip() in ("0", "1"):
        return value.strip() == "1"
    raise _coco_error(jp, f"{where}: iscrowd {value!r} is not 0 or 1")


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
            by name when given (a file may list fewer: a split without a class; a name
            outside them is an error); the json's names are used otherwise.
        skipped: If given, unreadable image paths are appended to it.

    Returns:
        ``(samples, names)``; ``image_id`` keeps the json's image ids. A ``file_name``
        listed under several ids is one sample, under its first id, with the annotations
        of all of them (warned about). Where ``images[].width/height`` differ from the
        file, see :class:`~yoloslim.data.sample.SizeCheck`.

    Raises:
        DataError: Malformed json or annotation (the message names the file and
            the line, the key or the annotation id), one ``file_name`` under ids giving
            it different sizes, or no readable image.
    """
    jp, idir = Path(json_path), Path(images_dir)
    try:
        data = json.loads(read_text(jp, "COCO annotation file"))
    except FileNotFoundError as e:
        raise _coco_error(jp, "annotation file not found") from e
    except json.JSONDecodeError as e:
        raise _coco_error(jp, f"line {e.lineno}: invalid JSON: {e.msg}") from e
    if not isinstance(data, dict):
        raise _coco_error(jp, f"expected a JSON object at top level, got {_kind(data)}")
    if "images" not in data:
        raise _coco_error(jp, "missing key 'images' (a list of {id, file_name, ...})")
    for key in ("images", "annotations", "categories"):
        if key in data and not isinstance(data[key], list):
            raise _coco_error(jp, f"key '{key}' must be a list, got {_kind(data[key])}")
    annotations = data.get("annotations", [])  # absent: an image list without labels
    cat_ids, cat_names = _categories(jp, data.get("categories", []))
    if names is not None and (set(cat_names) - set(names) or len(cat_names) != len(names)):
        cat_ids, cat_names = _drop_unused_categories(annotations, jp, cat_ids, cat_names, names)
    if names is None:
        out_names = cat_names
        cat_map = {cid: i for i, cid in enumerate(cat_ids)}
    else:
        out_names = list(names)
        if set(cat_names) - set(out_names) or len(set(cat_names)) != len(cat_names):
            raise _coco_error(jp, f"categories {cat_names} do not match names {out_names}")
        if len(cat_names) < len(out_names):  # a split's file listing only the classes it holds
            absent = [n for n in out_names if n not in cat_names]
            logger.info(
                "%s: no category named %s: that class has no box here",
                jp,
                ", ".join(map(repr, absent)),
            )
        cat_map = {cid: out_names.index(n) for cid, n in zip(cat_ids, cat_names, strict=True)}
    if not cat_map:
        raise _coco_error(jp, "no categories")

    images, alias = _images(jp, idir, data["images"])
    # per image: (class, bbox, area or None, crowd)
    anns: dict[int, list[tuple[int, list[float], float | None, bool]]] = {i: [] for i in images}
    empty: list[str] = []  # annotations whose box has no width or height
    repeated: list[str] = []  # annotations an earlier one of the same image id repeats
    given: dict[int, list] = {}  # per image id as the file gives it
    for k, a in enumerate(annotations):
        where = f"annotations[{k}] (id={a.get('id') if isinstance(a, dict) else '?'})"
        if not isinstance(a, dict):
            raise _coco_error(jp, f"{where}: expected an object, got {_kind(a)}")
        if "bbox" not in a:
            seg = (
                " (a segmentation without a box: yoloslim trains on boxes)"
                if ("segmentation" in a)
                else ""
            )
            raise _coco_error(jp, f"{where}: no 'bbox'{seg}")
        img_id = _integer(jp, where, a, "image_id")
        cat = _integer(jp, where, a, "category_id")
        try:
            if not isinstance(a["bbox"], list) or any(isinstance(v, bool) for v in a["bbox"]):
                raise TypeError  # a string's characters, true: taken as numbers
            bbox = [float(v) for v in a["bbox"]]
        except (TypeError, ValueError) as e:
            raise _coco_error(jp, f"{where}: bbox {a['bbox']!r} is not 4 numbers") from e
        own_id, img_id = img_id, alias.get(img_id, img_id)
        if img_id not in images:
            raise _coco_error(jp, f"{where}: unknown image_id {img_id}")
        if cat not in cat_map:
            raise _coco_error(jp, f"{where}: unknown category_id {cat}")
        if len(bbox) != 4 or not all(math.isfinite(v) for v in bbox) or min(bbox[2:]) < 0:
            raise _coco_error(jp, f"{where}: bbox must be 4 finite values with w, h >= 0")
        area = a.get("area")
        if area is not None:
            try:
                if isinstance(area, bool):
                    raise TypeError
                area = float(area)
            except (TypeError, ValueError) as e:
                raise _coco_error(jp, f"{where}: area {area!r} is not a number") from e
            if not math.isfinite(area) or area < 0:
                raise _coco_error(jp, f"{where}: area must be finite and >= 0, got {area}")
        crowd = _crowd(jp, where, a.get("iscrowd", 0))
        if not crowd and min(bbox[2:]) == 0:
            empty.append(where)
        entry = (cat_map[cat], bbox, area, crowd)
        # the same object twice under one id: one ground truth box stays unmatched (repeats
        # across the ids of one file are _merge's)
        if entry in given.setdefault(own_id, []):
            repeated.append(where)
            continue
        given[own_id].append(entry)
        anns[img_id].append(entry)
    warn_empty(jp, "annotation(s)", empty)
    if repeated:
        count_change("duplicates_dropped", len(repeated))
        logger.warning(
            "%s: %d annotation(s) repeating another of the same image (class, bbox, area, "
            "iscrowd) left out, one copy kept (%s)",
            jp,
            len(repeated),
            examples(repeated),
        )
    _merge(jp, images, anns)

    hint = (
        f"is {idir} (the data.yaml's train_images or val_images) the folder the "
        "file_name entries are relative to?"
    )
    sizes = probe_images([v["path"] for v in images.values()], jp, skipped, hint=hint)
    samples = []
    outside: dict[str, int] = {}
    clipped: dict[str, int] = {}
    check = SizeCheck()
    for img_id, v in images.items():
        if v["path"] not in sizes:
            continue
        size = sizes[v["path"]]
        scale = check.scale(v["file_name"], v["size"], size)
        objects = [x for x in anns[img_id] if not x[3]]
        crowds = [x for x in anns[img_id] if x[3]]
        boxes, classes, areas, cut = _coco_boxes(objects, *size, scale)
        ignore, ignore_classes, ignore_areas, _ = _coco_boxes(crowds, *size, scale)
        if cut:
            clipped[f"image id {img_id}"] = cut
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
    check.warn(jp)
    warn_clipped(jp, clipped)
    warn_outside(jp, outside)
    return samples, out_names


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _images(jp: Path, idir: Path, entries: list) -> tuple[dict[int, dict], dict[int, int]]:
    """``{image id: {path, k, file_name, size, ids}}`` and ``{image id: the id it merges
    into}`` for the ids whose ``file_name`` an earlier entry already has.

    One file under several ids is one sample with the annotations of all of them: its
    boxes are all in that file's pixels (the entries must give it the same size, else it is
    refused), and two samples of one image would each teach the other's objects as
    background. Merging is not right only if the ids meant different pictures, which one
    file cannot show. :func:`_merge` drops the exact repeats (one export concatenated with
    itself) and warns.
    """
    images: dict[int, dict] = {}
    alias: dict[int, int] = {}
    by_file: dict[str, int] = {}
    for k, im in enumerate(entries):
        if not isinstance(im, dict) or "file_name" not in im:
            raise _coco_error(jp, f"images[{k}]: expected an object with 'id' and 'file_name'")
        img_id, file_name = _integer(jp, f"images[{k}]", im, "id"), str(im["file_name"])
        if img_id in images or img_id in alias:  # merged exports that both count from 1, say
            first = images[alias.get(img_id, img_id)]
            if first["file_name"] == file_name:
                continue  # the same image listed twice: one entry serves
            raise _coco_error(
                jp, f"images[{k}]: duplicate image id {img_id} (also images[{first['k']}])"
            )
        path = idir / file_name
        if "\\" in file_name and not path.exists():  # written on Windows
            path = idir / file_name.replace("\\", "/")
        size = annotated_size(im.get("width"), im.get("height"))
        key = os.path.normpath(path)
        if key in by_file:
            first = images[by_file[key]]
            if size != first["size"] and None not in (size, first["size"]):
                raise _coco_error(
                    jp,
                    f"images[{k}] (id {img_id}) and images[{first['k']}] (id {by_file[key]}) "
                    f"name one file {file_name!r} with different sizes ({_wh(size)} and "
                    f"{_wh(first['size'])}): their annotations cannot be merged; give each "
                    "image its own file_name",
                )
            alias[img_id] = by_file[key]
            first["ids"].append(img_id)
            first["size"] = first["size"] or size
            continue
        by_file[key] = img_id
        images[img_id] = {"path": path, "k": k, "file_name": file_name, "size": size}
        images[img_id]["ids"] = [img_id]
    return images, alias


def _wh(size: tuple[float, float] | None) -> str:
    return "none" if size is None else f"{size[0]:g}x{size[1]:g}"


def _merge(jp: Path, images: dict[int, dict], anns: dict[int, list]) -> None:
    """Drop the exact repeats among the annotations of a file listed under several ids
    (see :func:`_images`), and warn once about those files."""
    merged, repeats = [], 0
    for img_id, v in images.items():
        if len(v["ids"]) == 1:
            continue
        merged.append(f"{v['file_name']} (ids {', '.join(map(str, v['ids']))})")
        seen, kept = set(), []
        for cls, bbox, area, crowd in anns[img_id]:
            key = (cls, tuple(bbox), crowd)
            if key not in seen:
                seen.add(key)
                kept.append((cls, bbox, area, crowd))
        repeats += len(anns[img_id]) - len(kept)
        anns[img_id] = kept
    if merged:
        logger.warning(
            "%s: %d file_name(s) listed under several image ids: each is one sample with the "
            "annotations of all its ids, %d exact repeat(s) dropped (%s)",
            jp,
            len(merged),
            repeats,
            examples(merged),
        )


def _categories(jp: Path, cats: list) -> tuple[list[int], list[str]]:
    """The categories' ids and names, in id order; each entry's mistake (not an object, no
    or a non-integer ``id``, no ``name``, an id given twice) is named with its index."""
    ids: list[int] = []
    names: list[str] = []
    for i, c in enumerate(cats):
        if not isinstance(c, dict):
            raise _coco_error(jp, f"categories[{i}]: expected an object, got {_kind(c)}")
        cid = _integer(jp, f"categories[{i}]", c, "id")
        if "name" not in c:
            raise _coco_error(jp, f"categories[{i}] (id={cid}): no 'name'")
        if cid in ids:
            raise _coco_error(
                jp,
                f"categories[{i}]: duplicate category id {cid} (also categories[{ids.index(cid)}])",
            )
        ids.append(cid)
        names.append(str(c["name"]))
    order = sorted(range(len(ids)), key=ids.__getitem__)
    return [ids[i] for i in order], [names[i] for i in order]


def _drop_unused_categories(
    annotations: list, jp: Path, cat_ids: list[int], cat_names: list[str], names: Sequence[str]
) -> tuple[list[int], list[str]]:
    """Categories that no annotation uses left out, with a note, where they are outside
    ``names`` or repeat another category's name (a Roboflow export's project-wide category,
    id 0, named after the project or its only class); a used one stays, for the mismatch
    error."""
    used = set()
    for a in annotations:
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


def _coco_boxes(
    anns: list, w: int, h: int, scale: tuple[float, float] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, int]:
    """xyxy boxes (scaled by ``scale``, areas too) clipped to the image (empty ones dropped),
    their classes, their annotations' own areas (a box's area where an annotation has
    none), and how many were cut at the edge (:func:`past_edge`)."""
    boxes = np.array([b for _, b, _, _ in anns], np.float64).reshape(-1, 4)
    boxes[:, 2:] += boxes[:, :2]
    own = [a for _, _, a, _ in anns]
    if scale is not None:
        boxes *= [scale[0], scale[1], scale[0], scale[1]]
        own = [None if a is None else a * scale[0] * scale[1] for a in own]
    clipped, keep = clip_to_image(boxes, w, h)
    cut = past_edge(boxes, w, h, keep)
    box_areas = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
    areas = np.array(
        [b if a is None else a for a, b in zip(own, box_areas, strict=True)],
        np.float64,
    )
    classes = np.array([c for c, _, _, _ in anns], np.int64)
    return clipped[keep], classes[keep], areas[keep], cut
