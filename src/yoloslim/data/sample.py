"""The one in-memory sample type all readers produce, and the image probe they share."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from yoloslim.errors import DataError

__all__ = ["Sample", "IMAGE_SUFFIXES", "probe_images", "warn_empty", "warn_outside"]

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".bmp", ".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp")


@dataclass(frozen=True, eq=False)
class Sample:
    """One annotated image. Arrays are made read-only so no transform can edit them.

    Attributes:
        path: The image file.
        boxes: ``(N, 4)`` float32 ``x1, y1, x2, y2`` in original image pixels.
        classes: ``(N,)`` int64 class indices.
        width: Image width in pixels.
        height: Image height in pixels.
        image_id: Identifier used in COCO-style ground truth and predictions.
        ignore: ``(M, 4)`` float32 ``x1, y1, x2, y2`` regions the evaluation ignores, not
            trained on: COCO ``iscrowd`` annotations and VOC ``difficult`` objects. A
            detection of the same class on one is neither right nor wrong (COCOeval's crowd
            rule).
        ignore_classes: ``(M,)`` int64 class indices of ``ignore``.
        areas: ``(N,)`` the annotations' own areas where the source gives them (COCO's
            ``area``, which ranks a box small, medium or large), else None (box areas).
        ignore_areas: ``(M,)`` the same for ``ignore``, or None.
    """

    path: Path
    boxes: np.ndarray
    classes: np.ndarray
    width: int
    height: int
    image_id: int
    ignore: np.ndarray | None = None
    ignore_classes: np.ndarray | None = None
    areas: np.ndarray | None = None
    ignore_areas: np.ndarray | None = None

    def __post_init__(self) -> None:
        boxes, classes = _boxes(self.path, self.boxes, self.classes, "boxes")
        ignore, ignore_classes = _boxes(self.path, self.ignore, self.ignore_classes, "ignore")
        object.__setattr__(self, "path", Path(self.path))
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "classes", classes)
        object.__setattr__(self, "ignore", ignore)
        object.__setattr__(self, "ignore_classes", ignore_classes)
        for name, n in (("areas", len(boxes)), ("ignore_areas", len(ignore))):
            value = getattr(self, name)
            if value is not None:
                value = np.array(value, dtype=np.float64).reshape(-1)
                if len(value) != n:
                    raise DataError(f"{self.path}: {len(value)} {name} for {n} boxes")
                value.setflags(write=False)
                object.__setattr__(self, name, value)


def _boxes(path, boxes, classes, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Read-only ``(N, 4)`` float32 boxes and ``(N,)`` int64 classes (None: none)."""
    b = np.array(() if boxes is None else boxes, dtype=np.float32).reshape(-1, 4)
    c = np.array(() if classes is None else classes, dtype=np.int64).reshape(-1)
    if len(b) != len(c):
        raise DataError(f"{path}: {len(b)} {what} but {len(c)} classes")
    b.setflags(write=False)
    c.setflags(write=False)
    return b, c


# Formats whose cheap check already reads the whole file: PNG's verify() walks every chunk up
# to IEND and checks the CRCs. verify() does not decode JPEG, BMP or TIFF data, so a truncated
# file of those passes it and fails later, in the middle of a training epoch.
_VERIFY_READS_ALL = frozenset({"PNG"})
_JPEG_EOI = b"\xff\xd9"


def _jpeg_complete(path: Path) -> bool:
    """Whether the file ends with the JPEG end-of-image marker.

    Inside the entropy-coded data a 0xFF byte is always stuffed (0xFF00), so a JPEG
    cut anywhere in its image data cannot end in EOI. Whole files with trailing
    bytes after EOI exist; those are decoded instead (``False`` here).
    """
    with path.open("rb") as f:
        f.seek(0, 2)
        if f.tell() < 2:
            return False
        f.seek(-2, 2)
        return f.read(2) == _JPEG_EOI


_ORIENTATION = 0x0112  # EXIF tag


def _orientation(im: Image.Image) -> int | None:
    """The orientation the loader's ``ImageOps.exif_transpose`` applies, read from what
    opening the file found: the EXIF block, a PNG's ImageMagick "Raw profile type exif"
    text, or XMP's ``tiff:Orientation`` (as Adobe tools write it). The base class's
    ``getexif`` reads only that; a PNG's own would decode the image, and ``verify()`` must
    come straight after ``open``. For an image this probe decodes anyway (see
    :func:`_probe`), ``im.getexif()`` after ``load()``: Pillow may have turned it then (a
    TIFF, in recent versions), as the loader's ``exif_transpose`` finds it."""
    return Image.Image.getexif(im).get(_ORIENTATION)


def _probe(path: Path) -> tuple[int, int] | str:
    """Return ``(width, height)`` of a readable image as displayed (EXIF orientation
    applied, as labelling tools show it), else the reason it is not.

    A JPEG that ends with its EOI marker and a PNG are checked with ``verify()``
    (0.1 ms a file); anything else is decoded with ``load()``, as the dataset will.
    """
    if not path.is_file():
        return "missing"
    try:
        with Image.open(path) as im:
            whole = im.format in _VERIFY_READS_ALL or (
                im.format in ("JPEG", "MPO") and _jpeg_complete(path)
            )
            if whole:
                size, orientation = im.size, _orientation(im)
                im.verify()
            else:  # decoded, as the loader will: its size and orientation after that
                im.load()
                size, orientation = im.size, im.getexif().get(_ORIENTATION)
            if orientation in (5, 6, 7, 8):  # shown rotated by 90 degrees
                size = size[::-1]
    except Exception as e:  # PIL raises many types (OSError, SyntaxError, struct.error ...)
        return f"{type(e).__name__}: {e}"
    if size[0] <= 0 or size[1] <= 0:
        return f"empty size {size}"
    return size


def probe_images(
    paths: Sequence[Path], source: str | Path, skipped: list[Path] | None = None
) -> dict[Path, tuple[int, int]]:
    """Open every image once; skip the unreadable ones with a single warning.

    Args:
        paths: Image files.
        source: What the paths came from, for messages.
        skipped: If given, the unreadable paths are appended to it.

    Returns:
        ``{path: (width, height)}`` for the readable images, in input order.

    Raises:
        DataError: No paths, or none of them is readable.
    """
    if not paths:
        raise DataError(f"{source}: no images found (suffixes {', '.join(IMAGE_SUFFIXES)})")
    workers = 1 if len(paths) < 64 else 8
    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(_probe, paths))
    good = {p: r for p, r in zip(paths, results, strict=True) if isinstance(r, tuple)}
    bad = [f"{p} ({r})" for p, r in zip(paths, results, strict=True) if isinstance(r, str)]
    if not good:
        raise DataError(f"{source}: all {len(paths)} images are unreadable: " + "; ".join(bad))
    if skipped is not None:
        skipped.extend(p for p, r in zip(paths, results, strict=True) if isinstance(r, str))
    if bad:
        logger.warning("%s: skipping %d unreadable image(s): %s", source, len(bad), "; ".join(bad))
    return good


def warn_outside(source: str | Path, outside: dict[str, int]) -> None:
    """One warning for the boxes left out because they lie wholly outside their image (what
    is left of them after clipping is empty); ``outside`` maps an image to its count."""
    if outside:
        where = [f"{k} ({n})" for k, n in outside.items()]
        logger.warning(
            "%s: %d box(es) wholly outside their image left out (%s%s)",
            source,
            sum(outside.values()),
            ", ".join(where[:3]),
            ", ..." if len(where) > 3 else "",
        )


def warn_empty(source: str | Path, what: str, where: list[str]) -> None:
    """One warning for the boxes without width or height left out, naming the first few."""
    if where:
        logger.warning(
            "%s: %d %s of zero width or height left out (%s%s)",
            source,
            len(where),
            what,
            ", ".join(where[:3]),
            ", ..." if len(where) > 3 else "",
        )
