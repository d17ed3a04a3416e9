"""The one in-memory sample type all readers produce, and the image probe they share."""

from __future__ import annotations

import codecs
import contextlib
import logging
import struct
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from yoloslim.errors import DataError
from yoloslim.progress import tracked

__all__ = [
    "Sample",
    "IMAGE_SUFFIXES",
    "SizeCheck",
    "annotated_size",
    "clip_to_image",
    "count_change",
    "examples",
    "label_changes",
    "probe_images",
    "read_text",
    "warn_empty",
    "past_edge",
    "warn_clipped",
    "warn_outside",
]

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


def _png_exif_after_idat(path: Path) -> bool:
    """Whether a PNG has an ``eXIf`` chunk after its image data (the PNG 1.5 extensions allow
    it there). Opening the file reads only the chunks before IDAT; the loader's
    ``exif_transpose`` loads the image first and then finds this one. Walks the chunk headers
    only (seeks over the data), cheaper than the ``verify()`` before it."""
    with path.open("rb") as f:
        f.seek(8)  # the signature
        after_idat = False
        while len(head := f.read(8)) == 8:
            length, cid = struct.unpack(">I4s", head)
            if cid == b"IEND":
                break
            if cid == b"eXIf" and after_idat:
                return True
            after_idat |= cid == b"IDAT"
            f.seek(length + 4, 1)  # data and CRC
    return False


def _loaded_orientation(path: Path) -> int | None:
    """The orientation as the loader's ``exif_transpose`` reads it: after ``load()``."""
    with Image.open(path) as im:
        im.load()
        return im.getexif().get(_ORIENTATION)


def _check_range(im: Image.Image) -> None:
    """Raise what the loader's ``to_rgb`` raises on a 32-bit integer or float image whose
    values fit none of its ranges (float 0..300, say): the same rules, by the same code.
    Imported here, not at the top: it brings torch, which ``data check`` otherwise never
    needs, and only such images pay for it."""
    from yoloslim.runtime.images import to_rgb

    to_rgb(im)


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
                if im.format == "PNG" and _png_exif_after_idat(path):
                    orientation = _loaded_orientation(path)
            else:  # decoded, as the loader will: its size and orientation after that
                im.load()
                size, orientation = im.size, im.getexif().get(_ORIENTATION)
                if im.mode in ("I", "F"):
                    _check_range(im)
            if orientation in (5, 6, 7, 8):  # shown rotated by 90 degrees
                size = size[::-1]
    except Exception as e:  # PIL raises many types (OSError, SyntaxError, struct.error ...)
        return f"{type(e).__name__}: {e}"
    if size[0] <= 0 or size[1] <= 0:
        return f"empty size {size}"
    return size


def probe_images(
    paths: Sequence[Path],
    source: str | Path,
    skipped: list[Path] | None = None,
    *,
    hint: str = "",
) -> dict[Path, tuple[int, int]]:
    """Open every image once; skip the unreadable ones with a single warning that counts
    them and names the first few (a wrong image folder makes them all missing: thousands).

    Args:
        paths: Image files.
        source: What the paths came from, for messages.
        skipped: If given, the unreadable paths are appended to it.
        hint: Where missing images usually come from (a data.yaml key), added to the
            message when some are missing.

    Returns:
        ``{path: (width, height)}`` for the readable images, in input order.

    Raises:
        DataError: No paths, or none of them is readable.
    """
    if not paths:
        raise DataError(f"{source}: no images found (suffixes {', '.join(IMAGE_SUFFIXES)})")
    workers = 1 if len(paths) < 64 else 8
    with ThreadPoolExecutor(workers) as pool:
        results = list(
            tracked(pool.map(_probe, paths), len(paths), f"checking the images of {source}")
        )
    good = {p: r for p, r in zip(paths, results, strict=True) if isinstance(r, tuple)}
    bad = [f"{p} ({r})" for p, r in zip(paths, results, strict=True) if isinstance(r, str)]
    missing = sum(r == "missing" for r in results)
    tip = f"; {hint}" if hint and missing else ""
    if not good:
        what = f"{missing} missing" if missing == len(paths) else f"{missing} of them missing"
        raise DataError(
            f"{source}: all {len(paths)} images are unreadable ({what}; e.g. "
            f"{examples(bad, sep='; ')}){tip}"
        )
    if skipped is not None:
        skipped.extend(p for p, r in zip(paths, results, strict=True) if isinstance(r, str))
    if bad:
        logger.warning(
            "%s: skipping %d unreadable image(s) (%d missing): %s%s",
            source,
            len(bad),
            missing,
            examples(bad, sep="; "),
            tip,
        )
    return good


def clip_to_image(xyxy: np.ndarray, w: float, h: float) -> tuple[np.ndarray, np.ndarray]:
    """``(N, 4)`` xyxy pixel boxes clipped to a ``w`` x ``h`` image, and the mask of those
    left with an area (a box wholly outside the image, or of zero width, has none)."""
    boxes = np.clip(np.asarray(xyxy, np.float64).reshape(-1, 4), 0, [w, h, w, h])
    return boxes, (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])


EDGE_TOL = 1.0  # px past the edge a box may reach unsaid (annotation tools round)


def past_edge(xyxy: np.ndarray, w: float, h: float, kept: np.ndarray) -> int:
    """How many of the ``(N, 4)`` xyxy pixel boxes reach more than ``EDGE_TOL`` px past
    their ``w`` x ``h`` image and keep an area in it (``kept``, the mask
    :func:`clip_to_image` gave for them): those it cuts at the edge (a box wholly outside
    it is left out instead)."""
    b = np.asarray(xyxy, np.float64).reshape(-1, 4)
    over = (b[:, :2] < -EDGE_TOL).any(1) | (b[:, 2] > w + EDGE_TOL) | (b[:, 3] > h + EDGE_TOL)
    return int((over & kept).sum())


_TALLY: ContextVar[Counter | None] = ContextVar("label_changes", default=None)

#: the kinds :func:`label_changes` counts
CHANGES = ("zero_area_dropped", "duplicates_dropped", "clipped", "outside_dropped")


@contextlib.contextmanager
def label_changes() -> Iterator[Counter]:
    """Count, while open, the labels the readers leave out or cut (the ones their warnings
    name): ``{kind: count}`` over :data:`CHANGES`, for ``data check``'s report, which kept
    them only in the log."""
    tally: Counter = Counter({k: 0 for k in CHANGES})
    token = _TALLY.set(tally)
    try:
        yield tally
    finally:
        _TALLY.reset(token)


def count_change(kind: str, n: int) -> None:
    """Add ``n`` labels of ``kind`` (one of :data:`CHANGES`) to the open :func:`label_changes`."""
    assert kind in CHANGES, kind
    tally = _TALLY.get()
    if tally is not None:
        tally[kind] += n


def warn_clipped(source: str | Path, clipped: dict[str, int]) -> None:
    """One warning for the boxes cut at their image's edge; ``clipped`` maps an image to its
    count. Training and mAP use the cut boxes, so COCOeval run on the annotation file
    itself, whose boxes reach past the image, scores the same detections otherwise."""
    if clipped:
        count_change("clipped", sum(clipped.values()))
        where = [f"{k} ({n})" for k, n in clipped.items()]
        logger.warning(
            "%s: %d box(es) reaching more than %g px past their image's edge cut at it (%s); "
            "they are trained and scored as cut, so mAP from COCOeval on this file may differ",
            source,
            sum(clipped.values()),
            EDGE_TOL,
            examples(where),
        )


def warn_outside(source: str | Path, outside: dict[str, int]) -> None:
    """One warning for the boxes left out because they lie wholly outside their image (what
    is left of them after clipping is empty); ``outside`` maps an image to its count."""
    if outside:
        count_change("outside_dropped", sum(outside.values()))
        where = [f"{k} ({n})" for k, n in outside.items()]
        logger.warning(
            "%s: %d box(es) wholly outside their image left out (%s)",
            source,
            sum(outside.values()),
            examples(where),
        )


def warn_empty(source: str | Path, what: str, where: list[str]) -> None:
    """One warning for the boxes without width or height left out, naming the first few."""
    if where:
        count_change("zero_area_dropped", len(where))
        logger.warning(
            "%s: %d %s of zero (or negative) width or height left out (%s)",
            source,
            len(where),
            what,
            examples(where),
        )


def examples(items: Sequence[str], n: int = 3, *, sep: str = ", ") -> str:
    """The first ``n`` of ``items`` joined, ``...`` after them when there are more: messages
    about many files name a few and give the count, never thousands of paths on a line."""
    items = list(items)
    return sep.join(items[:n]) + (f"{sep}..." if len(items) > n else "")


class SizeCheck:
    """Compares the size an annotation file gives an image (COCO ``images[].width/height``,
    VOC ``<size>``) with the file on disk (as displayed: EXIF orientation applied), and says
    how to read the boxes; one warning per source at the end (:meth:`warn`).

    The boxes of an image resized uniformly since labelling (both sides by the same factor,
    to a pixel) are scaled from the annotated size to the file's. That is what Ultralytics'
    COCO and VOC converters do (they normalise each box by the annotated width and height),
    and reading them as they are would put them on the wrong objects, or outside the image.
    pycocotools never looks at the files, so it has no rule to follow. Any other difference
    (a 90-degree swap: a photo whose EXIF orientation turns it, labelled as displayed; or a
    crop) leaves the boxes as they are, in the file's pixels: no scale is known to be right.
    Both are warned about, never silent.
    """

    def __init__(self) -> None:
        self.scaled: list[str] = []
        self.kept: list[str] = []

    def scale(
        self, name: str, annotated: tuple[float, float] | None, disk: tuple[int, int]
    ) -> tuple[float, float] | None:
        """``(sx, sy)`` to multiply ``name``'s boxes by, or None to read them as they are."""
        if annotated is None or tuple(annotated) == tuple(disk):
            return None
        (aw, ah), (w, h) = annotated, disk
        note = f"{name} (annotated {aw:g}x{ah:g}, on disk {w}x{h})"
        sx, sy = w / aw, h / ah
        if (w, h) != (ah, aw) and abs(aw * sy - w) <= 1 and abs(ah * sx - h) <= 1:
            self.scaled.append(note)
            return sx, sy
        self.kept.append(note)
        return None

    def warn(self, source: str | Path) -> None:
        """One warning naming a few images of each kind and counting them."""
        parts = []
        if self.scaled:
            parts.append(
                f"{len(self.scaled)} resized uniformly since labelling: their boxes are scaled "
                f"from the annotated size to the file's ({examples(self.scaled)})"
            )
        if self.kept:
            parts.append(
                f"{len(self.kept)} of another shape (a 90-degree swap is usually EXIF "
                "orientation): their boxes are read as they are, in the file's pixels; check "
                f"them ({examples(self.kept)})"
            )
        if parts:
            logger.warning(
                "%s: %d image(s) differ in size from the size the annotation gives them: %s",
                source,
                len(self.scaled) + len(self.kept),
                "; ".join(parts),
            )


def annotated_size(width: object, height: object) -> tuple[float, float] | None:
    """A width and height an annotation gives, or None when either is missing or not a
    positive number (exporters write 0 or leave it out; nothing to compare then)."""
    try:
        w, h = float(width), float(height)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return (w, h) if w > 0 and h > 0 and w < float("inf") and h < float("inf") else None


def read_text(path: Path, what: str) -> str:
    """``path``'s text (UTF-8, a byte order mark dropped). DataError naming the file, the
    line and ``what`` it is for a file in another encoding, or one that cannot be read (a
    Latin-1 COCO json or image list was a UnicodeDecodeError's traceback: audit46 data F1);
    FileNotFoundError is left to the caller, which says what was missing."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as e:
        raise DataError(f"{path}: cannot read the {what} ({e.strerror or e})") from e
    bom = len(codecs.BOM_UTF8) if raw.startswith(codecs.BOM_UTF8) else 0
    try:
        text = raw[bom:].decode("utf-8")
    except UnicodeDecodeError as e:
        # the line as the readers number them (\r\n and \r end one too), the byte in the file
        head = raw[bom : bom + e.start].decode("utf-8")
        line = _lines(head).count("\n") + 1
        raise DataError(
            f"{path}:{line}: the {what} is not UTF-8 ({e.reason} at byte {bom + e.start}); "
            "convert it (iconv -f <its encoding> -t UTF-8)"
        ) from e
    return _lines(text)


def _lines(text: str) -> str:
    """``text`` with its \r\n and \r line ends made \n (as ``Path.read_text`` makes them)."""
    return text.replace("\r\n", "\n").replace("\r", "\n")
