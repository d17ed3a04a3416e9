"""Pascal VOC reader (``Annotations/*.xml`` + ``JPEGImages/``).

XML is parsed with ``expat`` directly because ``ElementTree`` forgets line
numbers, and a bad box should be reported as ``file:line``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from xml.parsers import expat

import numpy as np

from yoloslim.data.sample import IMAGE_SUFFIXES, Sample, probe_images, warn_outside
from yoloslim.errors import DataError

__all__ = ["read_voc"]

log = logging.getLogger(__name__)


@dataclass
class _Node:
    tag: str
    line: int
    text: str = ""
    children: list[_Node] = field(default_factory=list)

    def find(self, tag: str) -> _Node | None:
        return next((c for c in self.children if c.tag == tag), None)


def _parse_xml(path: Path) -> _Node:
    root = _Node("#document", 0)
    stack = [root]
    parser = expat.ParserCreate()

    def start(tag: str, _attrs: dict) -> None:
        node = _Node(tag, parser.CurrentLineNumber)
        stack[-1].children.append(node)
        stack.append(node)

    def end(_tag: str) -> None:
        stack.pop()

    def text(data: str) -> None:
        stack[-1].text += data

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    try:
        parser.Parse(path.read_bytes(), True)
    except expat.ExpatError as e:
        raise DataError(f"{path}:{e.lineno}: invalid XML: {expat.errors.messages[e.code]}") from e
    except OSError as e:
        raise DataError(f"{path}: cannot read annotation: {e}") from e
    if not root.children or root.children[0].tag != "annotation":
        raise DataError(f"{path}:1: root element must be <annotation>")
    return root.children[0]


def _parse_objects(
    path: Path, ann: _Node, names: Sequence[str], keep_difficult: bool
) -> tuple[list[list[float]], list[int], list[list[float]], list[int]]:
    """Boxes and classes of the objects, and of the difficult ones apart (unless
    ``keep_difficult``, when they are objects like the others)."""
    boxes, classes, hard_boxes, hard_classes = [], [], [], []
    for obj in (c for c in ann.children if c.tag == "object"):
        name_node = obj.find("name")
        if name_node is None:
            raise DataError(f"{path}:{obj.line}: <object> without <name>")
        name = name_node.text.strip()
        if name not in names:
            raise DataError(f"{path}:{name_node.line}: class {name!r} not in names {list(names)}")
        difficult = obj.find("difficult")
        hard = difficult is not None and difficult.text.strip() == "1" and not keep_difficult
        try:
            box = _box(path, obj)
        except DataError as e:
            if not hard:
                raise
            # an ignore region only: skipped, as every difficult object was before
            log.warning("%s; a difficult object, left out", e)
            continue
        (hard_boxes if hard else boxes).append(box)
        (hard_classes if hard else classes).append(names.index(name))
    return boxes, classes, hard_boxes, hard_classes


def _box(path: Path, obj: _Node) -> list[float]:
    """An ``<object>``'s box as continuous ``[x1, y1, x2, y2]``."""
    bnd = obj.find("bndbox")
    if bnd is None:
        raise DataError(f"{path}:{obj.line}: <object> without <bndbox>")
    coords = []
    for tag in ("xmin", "ymin", "xmax", "ymax"):
        node = bnd.find(tag)
        if node is None:
            raise DataError(f"{path}:{bnd.line}: <bndbox> without <{tag}>")
        try:
            v = float(node.text)
        except ValueError as e:
            raise DataError(f"{path}:{node.line}: <{tag}> is not a number: {node.text!r}") from e
        if not math.isfinite(v):
            raise DataError(f"{path}:{node.line}: <{tag}> is not finite")
        coords.append(v)
    x1, y1, x2, y2 = coords
    if x2 < x1 or y2 < y1:
        raise DataError(f"{path}:{bnd.line}: box {coords} has xmax < xmin or ymax < ymin")
    # VOC pixel indices are 1-based and inclusive: [xmin - 1, xmax] is the span.
    return [x1 - 1, y1 - 1, x2, y2]


def _voc_ids(source: Path) -> tuple[Path, list[tuple[str, str]]]:
    """``(root, [(image_stem, where)])`` from a VOC root or an ImageSets list file."""
    if source.is_dir():
        ann_dir = source / "Annotations"
        if not ann_dir.is_dir():
            raise DataError(f"{source}: VOC root without an Annotations/ folder")
        return source, [(p.stem, str(p)) for p in sorted(ann_dir.glob("*.xml"))]
    if source.is_file():
        root = source.parent.parent.parent  # <root>/ImageSets/Main/<split>.txt
        if not (root / "Annotations").is_dir():
            raise DataError(f"{source}: expected <root>/ImageSets/Main/<split>.txt of a VOC root")
        ids = []
        for lineno, line in enumerate(source.read_text(encoding="utf-8-sig").splitlines(), 1):
            if line.strip():
                ids.append((line.split()[0], f"{source}:{lineno}"))
        return root, ids
    raise DataError(f"{source}: VOC source does not exist")


def _image_for(root: Path, ann: _Node, stem: str) -> Path:
    """The annotation's image: its ``<filename>`` when that file exists, else the first
    ``JPEGImages/<stem>.<ext>`` that does (a ``<filename>`` without its extension, or naming
    the ``.jpg`` of an image since converted to ``.png``), else the ``<filename>`` (or
    ``<stem>.jpg``), which the reader then reports missing."""
    images = root / "JPEGImages"
    fname = ann.find("filename")
    named = images / fname.text.strip() if fname is not None and fname.text.strip() else None
    if named is not None and named.is_file():
        return named
    stems = [stem] + ([named.stem] if named is not None and named.stem != stem else [])
    for s in stems:
        for suffix in IMAGE_SUFFIXES:
            if (images / f"{s}{suffix}").is_file():
                return images / f"{s}{suffix}"
    return named or images / f"{stem}.jpg"


def read_voc(
    source: str | Path,
    names: Sequence[str],
    *,
    keep_difficult: bool = False,
    skipped: list[Path] | None = None,
) -> list[Sample]:
    """Read a Pascal VOC split.

    Args:
        source: A VOC root (every ``Annotations/*.xml``) or an
            ``ImageSets/Main/<split>.txt`` list file.
        names: Class names; ``<name>`` must be one of them.
        keep_difficult: Train and evaluate on objects marked ``<difficult>1</difficult>``
            like the others. By default they are the samples' ``ignore`` regions, as in
            the VOC protocol: not trained on, and a detection on one is neither right nor
            wrong (evaluated by COCOeval's crowd rule, which matches a detection to such a
            region by the share of the detection inside it).
        skipped: If given, unreadable image paths are appended to it.

    Returns:
        One sample per readable image; ``image_id`` is the position in the list.
        VOC's 1-based inclusive pixel boxes become continuous ``[xmin-1, xmax]``.

    Raises:
        DataError: Malformed xml, unknown class or bad box (message names file and
            line), a listed id without annotation, or no readable image.
    """
    src = Path(source)
    root, ids = _voc_ids(src)
    parsed = []
    for stem, where in ids:
        xml = root / "Annotations" / f"{stem}.xml"
        if not xml.is_file():
            raise DataError(f"{where}: annotation {xml} not found")
        ann = _parse_xml(xml)
        objects = _parse_objects(xml, ann, names, keep_difficult)
        parsed.append((_image_for(root, ann, stem), objects))
    hint = f"images are looked for in {root / 'JPEGImages'} by annotation id and <filename>"
    sizes = probe_images([p for p, _ in parsed], src, skipped, hint=hint)
    samples = []
    outside: dict[str, int] = {}
    for image_id, (img, (boxes, classes, hard_boxes, hard_classes)) in enumerate(parsed):
        if img not in sizes:
            continue
        w, h = sizes[img]
        kept = _clipped(boxes, classes, w, h)
        if len(kept[0]) < len(boxes):
            outside[f"{ids[image_id][0]}.xml"] = len(boxes) - len(kept[0])
        samples.append(
            Sample(img, *kept, w, h, image_id, *_clipped(hard_boxes, hard_classes, w, h))
        )
    warn_outside(src, outside)
    return samples


def _clipped(boxes: list, classes: list, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    """Boxes clipped to the image, without the empty ones, and their classes."""
    arr = np.clip(np.array(boxes, np.float32).reshape(-1, 4), 0, [w, h, w, h])
    keep = (arr[:, 2] > arr[:, 0]) & (arr[:, 3] > arr[:, 1])
    return arr[keep], np.array(classes, np.int64).reshape(-1)[keep]
