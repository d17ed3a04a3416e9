"""Tiny on-disk datasets for tests: the same images written as YOLO, COCO or VOC.

Each image is a dark background with one white filled rectangle per box, so a
test can check that boxes and pixels stay aligned through any transform.

Example:
    >>> imgs = {"train": fake_images(3), "val": fake_images(2, seed=1)}
    >>> yaml_path = write_yolo(tmp_path, imgs, ["a", "b"])  # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from PIL import Image, ImageDraw

__all__ = [
    "FakeImage",
    "fake_images",
    "draw_image",
    "voc_xml",
    "write_yolo",
    "write_coco",
    "write_voc",
]

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class FakeImage:
    """One test image: integer ``xyxy`` pixel boxes (continuous coordinates)."""

    name: str
    width: int
    height: int
    boxes: tuple[Box, ...]
    classes: tuple[int, ...]


def fake_images(
    n: int, *, width: int = 64, height: int = 48, nc: int = 2, seed: int = 0, prefix: str = "img"
) -> list[FakeImage]:
    """``n`` images with 1-3 non-overlapping boxes each (sides 6..width/3 px)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        boxes: list[Box] = []
        target = int(rng.integers(1, 4))
        for _ in range(50):
            if len(boxes) == target:
                break
            w, h = (int(v) for v in rng.integers(6, [max(7, width // 3), max(7, height // 3)]))
            x, y = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
            b = (x, y, x + w, y + h)
            if all(
                b[2] + 1 < o[0] or o[2] + 1 < b[0] or b[3] + 1 < o[1] or o[3] + 1 < b[1]
                for o in boxes
            ):
                boxes.append(b)
        classes = tuple(int(c) for c in rng.integers(0, nc, len(boxes)))
        out.append(FakeImage(f"{prefix}{i}", width, height, tuple(boxes), classes))
    return out


def draw_image(img: FakeImage, path: Path) -> Path:
    """Write ``img`` (dark gradient, white boxes); format from the suffix."""
    x = np.linspace(0, 60, img.width, dtype=np.float32)
    arr = np.repeat((x[None, :] + np.zeros((img.height, 1), np.float32))[..., None], 3, 2)
    im = Image.fromarray(arr.astype(np.uint8))
    draw = ImageDraw.Draw(im)
    for x1, y1, x2, y2 in img.boxes:
        draw.rectangle((x1, y1, x2 - 1, y2 - 1), fill=(255, 255, 255))  # pixels x1..x2-1
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".jpg":
        im.save(path, quality=95)
    else:
        im.save(path)
    return path


def _yaml(root: Path, data: dict) -> Path:
    path = root / "data.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def write_yolo(root: Path, splits: Mapping[str, Sequence[FakeImage]], names: Sequence[str]) -> Path:
    """Write ``root/images/<split>/*.png`` + ``root/labels/<split>/*.txt``; returns data.yaml."""
    for split, imgs in splits.items():
        for img in imgs:
            draw_image(img, root / "images" / split / f"{img.name}.png")
            rows = [
                f"{c} {(b[0] + b[2]) / 2 / img.width:.6f} {(b[1] + b[3]) / 2 / img.height:.6f} "
                f"{(b[2] - b[0]) / img.width:.6f} {(b[3] - b[1]) / img.height:.6f}\n"
                for b, c in zip(img.boxes, img.classes, strict=True)
            ]
            label = root / "labels" / split / f"{img.name}.txt"
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text("".join(rows))
    return _yaml(root, {"path": ".", **{s: f"images/{s}" for s in splits}, "names": list(names)})


def write_coco(
    root: Path,
    splits: Mapping[str, Sequence[FakeImage]],
    names: Sequence[str],
    cat_ids: Sequence[int] | None = None,
) -> Path:
    """Write ``root/<split>/*.png`` + ``root/instances_<split>.json``; returns data.yaml.

    ``cat_ids`` are the json category ids of ``names`` (default ``1..K``).
    """
    ids = list(cat_ids) if cat_ids is not None else list(range(1, len(names) + 1))
    data: dict = {"path": ".", "format": "coco", "names": list(names)}
    for split, imgs in splits.items():
        coco: dict = {"images": [], "annotations": []}
        coco["categories"] = [{"id": i, "name": n} for i, n in zip(ids, names, strict=True)]
        for k, img in enumerate(imgs):
            draw_image(img, root / split / f"{img.name}.png")
            coco["images"].append(
                {
                    "id": k + 1,
                    "file_name": f"{img.name}.png",
                    "width": img.width,
                    "height": img.height,
                }
            )
            for b, c in zip(img.boxes, img.classes, strict=True):
                coco["annotations"].append(
                    {
                        "id": len(coco["annotations"]) + 1,
                        "image_id": k + 1,
                        "category_id": ids[c],
                        "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                        "area": (b[2] - b[0]) * (b[3] - b[1]),
                        "iscrowd": 0,
                    }
                )
        (root / f"instances_{split}.json").write_text(json.dumps(coco, indent=1))
        data[split] = f"instances_{split}.json"
        data[f"{split}_images"] = split
    return _yaml(root, data)


def voc_xml(img: FakeImage, names: Sequence[str], extra_objects: str = "") -> str:
    """The VOC annotation of ``img`` (1-based inclusive pixel coordinates)."""
    objs = "".join(
        f"  <object>\n    <name>{names[c]}</name>\n    <difficult>0</difficult>\n"
        f"    <bndbox>\n      <xmin>{b[0] + 1}</xmin>\n      <ymin>{b[1] + 1}</ymin>\n"
        f"      <xmax>{b[2]}</xmax>\n      <ymax>{b[3]}</ymax>\n    </bndbox>\n  </object>\n"
        for b, c in zip(img.boxes, img.classes, strict=True)
    )
    return (
        f"<annotation>\n  <filename>{img.name}.jpg</filename>\n"
        f"  <size><width>{img.width}</width><height>{img.height}</height><depth>3</depth></size>\n"
        f"{objs}{extra_objects}</annotation>\n"
    )


def write_voc(root: Path, splits: Mapping[str, Sequence[FakeImage]], names: Sequence[str]) -> Path:
    """Write a VOC root (``Annotations``, ``JPEGImages``, ``ImageSets/Main``); returns data.yaml."""
    data: dict = {"path": ".", "format": "voc", "names": list(names)}
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    for split, imgs in splits.items():
        for img in imgs:
            draw_image(img, root / "JPEGImages" / f"{img.name}.jpg")
            (root / "Annotations" / f"{img.name}.xml").write_text(voc_xml(img, names))
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text(
            "".join(f"{i.name}\n" for i in imgs)
        )
        data[split] = f"ImageSets/Main/{split}.txt"
    return _yaml(root, data)
