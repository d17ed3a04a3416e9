"""Pascal VOC reader (``Annotations/*.xml`` + ``JPEGImages/``).

XML is parsed with ``expat`` directly because ``ElementTree`` forgets line
numbers, and a bad box should be reported as ``file:line``. A file whose XML declaration
names an encoding expat cannot read (``gb2312``, ``gbk``, ``big5``, ``shift_jis``: common in
Chinese and Japanese datasets) is decoded by Python's codec of that name and parsed as text.
"""

from __future__ import annotations

import codecs
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from xml.parsers import expat

import numpy as np

from yoloslim.data.sample import (
    IMAGE_SUFFIXES,
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
    warn_outside,
)
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


_DECLARED = re.compile(rb"""\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._:-]+)["']""")
_EXPAT_READS = {"utf-8", "utf-16", "utf-16-le", "utf-16-be"}  # Python's names for them


def _xml_input(path: Path, raw: bytes) -> tuple[bytes, str | None]:
    """``raw`` as expat can parse it, and the encoding to tell it (overriding the declared
    one) when Python decoded it. Expat refuses multi-byte encodings other than UTF-8/16
    ("multi-byte encodings are not supported"); any declared codec other than those is
    decoded here, single-byte ones too, so every file goes one way. Line numbers are kept."""
    m = _DECLARED.match(raw)
    if m is None:  # no declaration (UTF-8), or a UTF-16 one, which expat reads itself
        return raw, None
    name = m.group(1).decode("ascii")
    try:
        codec = codecs.lookup(name).name
    except LookupError as e:
        raise DataError(
            f"{path}:1: declares encoding {name!r}, which Python does not know; convert the "
            "file to UTF-8 (iconv -f <its encoding> -t UTF-8) and fix the declaration"
        ) from e
    if codec in _EXPAT_READS:
        return raw, None
    try:
        text = raw.decode(codec)
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(
            f"{path}:{line}: not valid {name} (the encoding its XML declaration names): "
            f"{e.reason}; convert the file to UTF-8 (iconv -f <its real encoding> -t UTF-8)"
        ) from e
    return text.encode("utf-8"), "utf-8"


def _parse_xml(path: Path) -> _Node:
    root = _Node("#document", 0)
    stack = [root]
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read annotation: {e}") from e
    data, encoding = _xml_input(path, raw)
    parser = expat.ParserCreate(encoding)

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
        parser.Parse(data, True)
    except expat.ExpatError as e:
        raise DataError(f"{path}:{e.lineno}: invalid XML: {expat.errors.messages[e.code]}") from e
    except ValueError as e:  # an encoding expat refuses that the declaration check missed
        raise DataError(
            f"{path}: cannot parse: {e}; convert the file to UTF-8 (iconv -f <its encoding> "
            "-t UTF-8) and fix its XML declaration"
        ) from e
    if not root.children or root.children[0].tag != "annotation":
        raise DataError(f"{path}:1: root element must be <annotation>")
    return root.children[0]


def _parse_objects(
    path: Path, ann: _Node, names: Sequence[str], keep_difficult: bool
) -> tuple[list[list[float]], list[int], list[list[float]], list[int]]:
    """Boxes and classes of the objects, and of the difficult ones apart (unless
    ``keep_difficult``, when they are objects like the others)."""
    boxes, classes, hard_boxes, hard_classes = [], [], [], []
    seen: set[tuple] = set()
    repeated: list[str] = []
    for obj in (c for c in ann.children if c.tag == "object"):
        name_node = obj.find("name")
        if name_node is None:
            raise DataError(f"{path}:{obj.line}: <object> without <name>")
        name = name_node.text.strip()
        if name not in names:
            raise DataError(f"{path}:{name_node.line}: class {name!r} not in names {list(names)}")
        hard = _difficult(path, obj) and not keep_difficult
        try:
            box = _box(path, obj)
        except DataError as e:
            if not hard:
                raise
            # an ignore region only: skipped, as every difficult object was before
            log.warning("%s; a difficult object, left out", e)
            continue
        key = (name, tuple(box), hard)
        if key in seen:  # the same object twice: one ground truth box stays unmatched
            repeated.append(f"{path}:{obj.line}")
            continue
        seen.add(key)
        (hard_boxes if hard else boxes).append(box)
        (hard_classes if hard else classes).append(names.index(name))
    if repeated:
        count_change("duplicates_dropped", len(repeated))
        log.warning(
            "%s: %d <object>(s) repeating another (name, box, difficult) left out, one copy "
            "kept (%s)",
            path,
            len(repeated),
            examples(repeated),
        )
    return boxes, classes, hard_boxes, hard_classes


def _difficult(path: Path, obj: _Node) -> bool:
    """An ``<object>``'s ``<difficult>`` flag: 0/1 (as VOC writes it), a number, or
    true/false (``true`` was read as not difficult, and the object was trained on)."""
    node = obj.find("difficult")
    text = (node.text or "").strip().lower() if node is not None else ""
    if text in ("", "0", "false", "no"):
        return False
    if text in ("1", "true", "yes"):
        return True
    try:
        value = float(text)
    except ValueError:
        value = None
    if value in (0.0, 1.0):
        return value == 1.0
    raise DataError(f"{path}:{node.line}: <difficult>{node.text}</difficult> is not 0 or 1")


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
            # the Annotations or JPEGImages folder itself, given for the root beside it
            inside = (source.parent / "Annotations").is_dir()
            hint = f"; the VOC root is {source.parent}" if inside else ""
            raise DataError(
                f"{source}: VOC root without an Annotations/ folder (train/val take a VOC root "
                f"or an ImageSets/Main/<split>.txt list){hint}"
            )
        return source, [(p.stem, str(p)) for p in sorted(ann_dir.glob("*.xml"))]
    if source.is_file():
        root = source.parent.parent.parent  # <root>/ImageSets/Main/<split>.txt
        if not (root / "Annotations").is_dir():
            raise DataError(f"{source}: expected <root>/ImageSets/Main/<split>.txt of a VOC root")
        ids = []
        for lineno, line in enumerate(read_text(source, "VOC image set").splitlines(), 1):
            if line.strip():
                ids.append((line.split()[0], f"{source}:{lineno}"))
        return root, ids
    raise DataError(f"{source}: VOC source does not exist")


# the usual suffix first: a stat call per suffix tried, for every annotation
_SUFFIXES = (".jpg", *(s for s in IMAGE_SUFFIXES if s != ".jpg"))
_SUFFIXES += tuple(s.upper() for s in _SUFFIXES)


def _by_stem(images: Path, stem: str) -> Path | None:
    return next(
        (images / f"{stem}{s}" for s in _SUFFIXES if (images / f"{stem}{s}").is_file()), None
    )


def _image_for(root: Path, ann: _Node, stem: str) -> tuple[Path, str | None]:
    """The annotation's image, and its ``<filename>`` when that names another image.

    The image is ``JPEGImages/<id>.<ext>`` when one exists: the VOC convention, which
    torchvision's ``VOCDetection`` and the Ultralytics VOC converter follow. A ``<filename>``
    goes stale when an annotation is copied to start the next one, or files are renamed after
    labelling; trusting it put one image's boxes on another. Else the ``<filename>`` when that
    file exists, else ``JPEGImages/<its stem>.<ext>`` (it names the ``.jpg`` of an image since
    converted), else the ``<filename>`` (or ``<id>.jpg``), which the reader reports missing.
    """
    images = root / "JPEGImages"
    fname = ann.find("filename")
    text = fname.text.strip() if fname is not None else ""
    named = images / text if text else None
    other = text if text and stem not in (text, Path(text).stem) else None
    own = _by_stem(images, stem)
    if own is not None:
        return own, other
    if named is not None and named.is_file():
        return named, other
    if named is not None and (converted := _by_stem(images, named.stem)) is not None:
        return converted, other
    return named or images / f"{stem}.jpg", other


def _size(ann: _Node) -> tuple[float, float] | None:
    """``<size>``'s width and height, when both are given and positive."""
    size = ann.find("size")
    if size is None:
        return None
    w, h = size.find("width"), size.find("height")
    return annotated_size(w and w.text.strip(), h and h.text.strip())


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
        One sample per readable image, an id listed twice twice (``load_samples`` keeps
        the repeats in train and reads them once in val); ``image_id`` is the position in
        the list. VOC's 1-based inclusive pixel boxes
        become continuous ``[xmin-1, xmax]``. The image is ``JPEGImages/<id>.<ext>``, the
        ``<filename>`` only when no such file exists (a ``<filename>`` naming another image
        is warned about). Where ``<size>`` differs from the file, see
        :class:`~yoloslim.data.sample.SizeCheck`.

    Raises:
        DataError: Malformed xml (or in an encoding Python cannot decode), unknown class or
            bad box (message names file and line), a listed id without annotation, two
            annotations that resolve to one image (naming both), or no readable image.
    """
    src = Path(source)
    root, ids = _voc_ids(src)
    parsed = []
    owner: dict[Path, Path] = {}  # image -> the annotation that resolved to it
    renamed: list[str] = []
    for image_id, (stem, where) in enumerate(ids):
        xml = root / "Annotations" / f"{stem}.xml"
        if not xml.is_file():
            raise DataError(f"{where}: annotation {xml} not found")
        ann = _parse_xml(xml)
        objects = _parse_objects(xml, ann, names, keep_difficult)
        img, other = _image_for(root, ann, stem)
        if img in owner:
            if owner[img] == xml:  # a list file naming an id twice: load_samples decides
                # (kept in train, read once in val)
                parsed.append((image_id, img, _size(ann), objects))
                continue
            # two label sets for one image: one of them belongs to another image
            raise DataError(
                f"{owner[img]} and {xml} both resolve to image {img}; give each annotation "
                "its own image (JPEGImages/<annotation id>.<ext>) and fix the <filename>"
            )
        owner[img] = xml
        if other is not None:
            renamed.append(f"{xml.name}: <filename> {other!r}, read {img.name}")
        parsed.append((image_id, img, _size(ann), objects))
    if renamed:
        log.warning(
            "%s: %d annotation(s) whose <filename> names another image than their id; each "
            "is read with JPEGImages/<id>.<ext> where that exists (VOC convention), else "
            "with its <filename> (%s)",
            src,
            len(renamed),
            examples(renamed),
        )
    hint = f"images are looked for in {root / 'JPEGImages'} by annotation id and <filename>"
    sizes = probe_images([p for _, p, _, _ in parsed], src, skipped, hint=hint)
    samples = []
    outside: dict[str, int] = {}
    clipped: dict[str, int] = {}
    check = SizeCheck()
    for image_id, img, annotated, (boxes, classes, hard_boxes, hard_classes) in parsed:
        if img not in sizes:
            continue
        w, h = sizes[img]
        scale = check.scale(f"{ids[image_id][0]}.xml", annotated, (w, h))
        *kept, cut = _clipped(boxes, classes, w, h, scale)
        if len(kept[0]) < len(boxes):
            outside[f"{ids[image_id][0]}.xml"] = len(boxes) - len(kept[0])
        if cut:
            clipped[f"{ids[image_id][0]}.xml"] = cut
        hard = _clipped(hard_boxes, hard_classes, w, h, scale)[:2]
        samples.append(Sample(img, *kept, w, h, image_id, *hard))
    check.warn(src)
    warn_clipped(src, clipped)
    warn_outside(src, outside)
    return samples


def _clipped(
    boxes: list, classes: list, w: int, h: int, scale: tuple[float, float] | None = None
) -> tuple[np.ndarray, np.ndarray, int]:
    """Boxes (scaled by ``scale``) clipped to the image, without the empty ones, their
    classes, and how many were cut at the edge (:func:`past_edge`)."""
    arr = np.array(boxes, np.float64).reshape(-1, 4)
    if scale is not None:
        arr = arr * [scale[0], scale[1], scale[0], scale[1]]
    inside, keep = clip_to_image(arr, w, h)
    cut = past_edge(arr, w, h, keep)
    return inside[keep].astype(np.float32), np.array(classes, np.int64).reshape(-1)[keep], cut
