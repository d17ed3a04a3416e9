"""Dataset readers: YOLO txt, COCO json and Pascal VOC xml, all to one :class:`Sample`.

Policies, shared by every reader:

* Bad labels are errors: a :class:`~yoloslim.errors.DataError` names the file and
  the line (YOLO, VOC) or the annotation id (COCO).
* A missing or empty label file is a background image, which is valid.
* Boxes are clipped to the image; zero-area boxes are dropped, with a warning.
* Missing or corrupt images are skipped. Each image is opened once while the
  samples are built (size read, plus a check that the file is whole: see
  :func:`~yoloslim.data.sample.probe_images`), and all skipped images are listed in
  ONE warning per source. If every image is bad, that is a ``DataError``.
* Inputs are only read, never written.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from yoloslim.data.coco import read_coco
from yoloslim.data.config import DataConfig, windows_path
from yoloslim.data.duplicates import same_labels, unique
from yoloslim.data.sample import (
    IMAGE_SUFFIXES,
    Sample,
    clip_to_image,
    count_change,
    examples,
    past_edge,
    probe_images,
    read_text,
    warn_clipped,
    warn_empty,
)
from yoloslim.data.voc import read_voc
from yoloslim.errors import ConfigError, DataError
from yoloslim.fileio import file_key
from yoloslim.progress import tracked

__all__ = [
    "Sample",
    "IMAGE_SUFFIXES",
    "read_yolo",
    "read_coco",
    "read_voc",
    "load_samples",
    "probe_images",
    "label_path_for",
]

logger = logging.getLogger(__name__)

#: how far past [0, 1] a normalised coordinate may reach (clipped, and said): annotation tools
#: (CVAT, Roboflow) write polygon points a little outside; Ultralytics takes 1 % too
COORD_TOL = 0.01


@dataclass
class LabelNotes:
    """What reading label files changed, said once for a whole split (``file:line`` each):
    boxes without area left out, exact duplicate lines left out (one copy kept: a duplicate
    ground truth box can never be matched, and capped recall), and boxes cut at the image's
    edge (coordinates past [0, 1], or a box reaching past the image)."""

    empty: list[str] = field(default_factory=list)
    duplicate: list[str] = field(default_factory=list)
    clipped: dict[str, int] = field(default_factory=dict)

    def warn(self, source: str | Path) -> None:
        warn_empty(source, "label(s)", self.empty)
        if self.duplicate:
            count_change("duplicates_dropped", len(self.duplicate))
            logger.warning(
                "%s: %d duplicate label line(s) left out, one copy kept (%s)",
                source,
                len(self.duplicate),
                examples(self.duplicate),
            )
        warn_clipped(source, self.clipped)


def label_path_for(
    image: Path, images_dir: Path | None = None, labels_dir: Path | None = None
) -> Path:
    """The YOLO label file of ``image``.

    With ``labels_dir`` the label keeps the image's path relative to ``images_dir``.
    Otherwise the last ``images`` folder in the path becomes ``labels``
    (Ultralytics convention); without one, the label sits next to the image.
    """
    if labels_dir is not None:
        rel = image.relative_to(images_dir) if images_dir is not None else Path(image.name)
        return (labels_dir / rel).with_suffix(".txt")
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def _parse_yolo_labels(
    path: Path,
    nc: int,
    width: int,
    height: int,
    notes: LabelNotes | None = None,
    kpt_shape: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Parse one ``cls cx cy w h`` file into pixel ``xyxy`` boxes and classes; what was left
    out or cut (boxes without area, duplicate lines, boxes past the edge) goes to ``notes``,
    by ``file:line``. Without
    ``kpt_shape``, a segmentation line (``cls x1 y1 x2 y2 x3 y3 ...``, at least three
    points) gives its polygon's box. With it (a pose dataset), every line is
    ``cls cx cy w h`` and ``k * d`` keypoint values: the box is the first four, and the
    keypoints must be there and be numbers (a pose line read as a polygon gave a wrong box).

    ``None`` when the file does not exist (a background image, but counted apart).
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read label file: {e}") from e
    rows: list[list[float]] = []
    classes: list[int] = []
    lines: list[int] = []
    seen: set[tuple[float, ...]] = set()
    # numbered by "\n" (read_text made \r\n and \r one): splitlines() alone also broke
    # lines at form feeds and the like, which put errors on the wrong line number; the other
    # breaks (U+2028, NEL) still part boxes within a line, as Ultralytics reads them
    numbered = (
        (lineno, part)
        for lineno, line in enumerate(text.split("\n"), 1)
        for part in line.splitlines()
    )
    for lineno, line in numbered:
        fields = line.split()
        if not fields:
            continue
        where = f"{path}:{lineno}"
        polygon = kpt_shape is None and len(fields) >= 7 and len(fields) % 2 == 1  # segmentation
        if kpt_shape is not None:
            want = 5 + kpt_shape[0] * kpt_shape[1]
            if len(fields) != want:
                raise DataError(
                    f"{where}: expected {want} fields 'cls cx cy w h' and {kpt_shape[0]}x"
                    f"{kpt_shape[1]} keypoint values (data.yaml kpt_shape {list(kpt_shape)}), "
                    f"got {len(fields)}"
                )
        elif len(fields) != 5 and not polygon:
            pose = len(fields) > 5 and (len(fields) - 5) % 3 == 0  # COCO's 17 x (x y v): 56
            raise DataError(
                f"{where}: expected 5 fields 'cls cx cy w h' (or a polygon 'cls x1 y1 x2 y2 "
                f"x3 y3 ...'), got {len(fields)}"
                + (
                    "; a pose dataset's lines (box, then keypoints) need kpt_shape in the data.yaml"
                    if pose
                    else ""
                )
            )
        try:
            if any("_" in f for f in fields):  # float() reads 0.2_0 as 0.2: a malformed field
                raise ValueError
            values = [float(f) for f in fields]
        except ValueError as e:
            raise DataError(f"{where}: non-numeric field in {line.strip()!r}") from e
        if not all(math.isfinite(v) for v in values):
            raise DataError(f"{where}: non-finite value in {line.strip()!r}")
        if tuple(values) in seen:  # the same object twice: one ground truth box stays unmatched
            if notes is not None:
                notes.duplicate.append(where)
            continue
        seen.add(tuple(values))
        cls = values[0]
        if not cls.is_integer():
            raise DataError(f"{where}: class id {fields[0]} is not a whole number (0..{nc - 1})")
        if not 0 <= cls < nc:
            raise DataError(f"{where}: class id {fields[0]} outside 0..{nc - 1}")
        n = 5 if kpt_shape is not None else len(values)  # a pose line's box: keypoints apart
        coords = values[1:n]
        if any(v < -COORD_TOL or v > 1 + COORD_TOL for v in coords):
            # a pose line (cx cy w h, then x y v per keypoint) read as a polygon: its
            # visibility flags (0, 1, 2) are all that is out of [0, 1]
            flags = coords[6::3] if len(coords) > 4 and (len(coords) - 4) % 3 == 0 else []
            rest = [v for i, v in enumerate(coords) if i < 4 or (i - 4) % 3 != 2]
            pose = (
                polygon
                and any(v == 2 for v in flags)
                and all(v in (0, 1, 2) for v in flags)
                and all(0 <= v <= 1 for v in rest)
            )
            raise DataError(
                f"{where}: normalised coordinates {fields[1:n]} outside [0, 1] (by more than "
                f"{COORD_TOL:g})"
                + (
                    "; a pose dataset's lines (box, then keypoints) need kpt_shape in the data.yaml"
                    if pose
                    else ""
                )
            )
        if polygon:  # its bounding box, as Ultralytics' detect task reads one
            points = [min(max(v, 0.0), 1.0) for v in coords]  # a point past the edge, on it
            xs, ys = points[0::2], points[1::2]
            x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
            coords = [(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0]
        rows.append(coords)
        classes.append(int(cls))
        lines.append(lineno)
    if not rows:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
    cxcywh = np.array(rows, dtype=np.float64)
    scale = np.array([width, height, width, height], dtype=np.float64)
    xyxy = np.concatenate([cxcywh[:, :2] - cxcywh[:, 2:] / 2, cxcywh[:, :2] + cxcywh[:, 2:] / 2], 1)
    pixels = xyxy * scale
    xyxy, keep = clip_to_image(pixels, width, height)
    if notes is not None:
        notes.empty.extend(f"{path}:{n}" for n, k in zip(lines, keep, strict=True) if not k)
        cut = past_edge(pixels, width, height, keep)
        if cut:
            notes.clipped[str(path)] = cut
    return xyxy[keep].astype(np.float32), np.array(classes, dtype=np.int64)[keep]


def walk_files(folder: Path) -> Iterator[Path]:
    """The files under ``folder``, linked subfolders included (``ln -s /mnt/extra
    images/train/extra``, which ``rglob`` skips), each real folder once (a link loop ends).
    Hidden files and folders below ``folder`` are left out, as Ultralytics and ``predict``
    leave them (a ``.ipynb_checkpoints`` copy of an image, macOS's ``._a.jpg``, were read
    as images: unlabelled copies, false positives in val)."""
    seen: set[str] = set()
    for here, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(here)
        if real in seen:
            dirs.clear()
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            if not name.startswith("."):
                yield Path(here) / name


def _list_images(source: Path, others: list[Path] | None = None) -> tuple[list[Path], Path | None]:
    """Images of a folder (recursive) or of a ``.txt`` list file; plus the folder. ``others``
    gets a folder's other files (a ``.jfif`` or ``.gif`` image the readers skip, ...)."""
    if source.is_dir():
        images = []
        for p in walk_files(source):
            if p.suffix.lower() in IMAGE_SUFFIXES:
                images.append(p)
            elif others is not None:
                others.append(p)
        return sorted(images), source
    if source.is_file() and source.suffix.lower() == ".txt":
        files = []
        for line in read_text(source, "list of images").splitlines():
            entry = line.strip()
            if entry:
                p = windows_path(Path(entry), source.parent)
                p = p if p.is_absolute() else source.parent / p
                files.append(_without_dotdot(p) if ".." in p.parts else p)
        return files, None
    raise DataError(f"{source}: not an image folder or a .txt list of images")


def _without_dotdot(p: Path) -> Path:
    """``images/x/../train/a.jpg`` as ``images/train/a.jpg``, where that is the same file: its
    label is looked for beside the normal path (``labels/x/../train/a.txt`` does not exist
    where ``labels/x`` does not). Through a linked folder ``..`` leaves the link's target, so
    there the path stays as written."""
    norm = Path(os.path.normpath(p))
    try:
        return norm if os.path.samefile(norm, p) else p
    except OSError:  # either is missing: the path as written is named in the error
        return p


# image files the readers skip (Ultralytics' set is read), which a labelling tool may label
_SKIPPED_IMAGES = frozenset(
    {".gif", ".jfif", ".jpe", ".heic", ".heif", ".avif", ".mpo", ".dng", ".tga", ".ppm", ".pfm"}
)


def _warn_labelled_unread(
    source: Path, folder: Path | None, ldir: Path | None, images: list[Path], others: list[Path]
) -> None:
    """Warn of the files in an image folder that have a label file but a suffix the readers
    skip (``x.jfif``, ``x.gif``): labelled data left out of the split without a word."""
    wanted = {label_path_for(p, folder, ldir) for p in images}  # an image's (a.json beside a.jpg)
    labelled = sorted(
        p
        for p in others
        if p.suffix.lower() in _SKIPPED_IMAGES
        and (label := label_path_for(p, folder, ldir)) not in wanted
        and label.is_file()
    )
    if labelled:
        logger.warning(
            "%s: %d labelled file(s) with a suffix the readers skip are not read (%s; "
            "images are read from %s): convert them, e.g. to .jpg or .png",
            source,
            len(labelled),
            examples([str(p) for p in labelled]),
            ", ".join(IMAGE_SUFFIXES),
        )


def read_yolo(
    images_dir: str | Path,
    names: Sequence[str],
    labels_dir: str | Path | None = None,
    *,
    skipped: list[Path] | None = None,
    unlabelled: list[Path] | None = None,
    kpt_shape: tuple[int, int] | None = None,
) -> list[Sample]:
    """Read a YOLO-format split.

    Images without a label file are background images. When none of the images
    has one, that is almost always a wrong ``labels`` path, so it is logged as a
    warning naming a label file that was looked for. Labels of zero width or height
    are left out, with one warning naming their files and lines.

    Args:
        images_dir: Folder of images (searched recursively) or a ``.txt`` list of
            image paths (relative entries resolve against the list's folder).
        names: Class names; labels must use ids ``0..len(names)-1``.
        labels_dir: Folder of label files. Default: the ``images`` -> ``labels``
            sibling of each image (Ultralytics convention).
        skipped: If given, unreadable image paths are appended to it.
        unlabelled: If given, the readable images that have no label file are
            appended to it.
        kpt_shape: A pose dataset's ``kpt_shape`` (data.yaml): each label line is
            ``cls cx cy w h`` and that many keypoint values, of which the box is read.

    Returns:
        One sample per readable image (a folder's sorted by path; a list file's in its
        order, an image it names twice twice); ``image_id`` is the position in that list
        (stable when images are skipped).

    Raises:
        DataError: A bad label (message names file and line) or no readable image.

    Example:
        >>> samples = read_yolo("shapes/images/train", ["circle", "square"])  # doctest: +SKIP
    """
    source = Path(images_dir)
    others: list[Path] = []
    files, folder = _list_images(source, others)
    hint = "" if folder else f"relative entries resolve against the list's folder {source.parent}"
    sizes = probe_images(files, source, skipped, hint=hint)
    ldir = Path(labels_dir) if labels_dir is not None else None
    samples, missing, notes = [], [], LabelNotes()
    label_of: dict[Path, list[Path]] = {}  # an existing label file -> its images
    for image_id, f in tracked(enumerate(files), len(files), f"reading the labels of {source}"):
        if f not in sizes:
            continue
        w, h = sizes[f]
        label = label_path_for(f, folder, ldir)
        parsed = _parse_yolo_labels(label, len(names), w, h, notes, kpt_shape)
        if parsed is None:
            missing.append(f)
            parsed = np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
        elif file_key(f) not in {file_key(g) for g in label_of.get(label, [])}:
            label_of.setdefault(label, []).append(f)  # an image listed again is no other one
        samples.append(Sample(f, *parsed, w, h, image_id))
    _warn_shared_labels(source, label_of)
    _warn_labelled_unread(source, folder, ldir, files, others)
    if samples and len(missing) == len(samples):
        example = label_path_for(samples[0].path, folder, ldir)
        logger.warning(
            "%s: none of the %d images has a label file (looked for e.g. %s); "
            "all are treated as background",
            source,
            len(samples),
            example,
        )
    elif missing:  # background images, or a labels folder not fully copied: said, counted
        logger.warning(
            "%s: %d of %d images have no label file (%s): read as background images, without "
            "objects (if they hold any, their labels are missing: detections of them count as "
            "false positives)",
            source,
            len(missing),
            len(samples),
            examples([str(label_path_for(f, folder, ldir)) for f in missing]),
        )
    notes.warn(source)
    if unlabelled is not None:
        unlabelled.extend(missing)
    return samples


def _warn_shared_labels(source: Path, label_of: dict[Path, list[Path]]) -> None:
    """A label file is named after the image's stem, so ``a.jpg`` and ``a.png`` side by side
    both read ``a.txt``: one of them is probably not what it labels."""
    shared = [
        f"{label} ({', '.join(p.name for p in imgs)})"
        for label, imgs in label_of.items()
        if len(imgs) > 1
    ]
    if shared:
        logger.warning(
            "%s: %d label file(s) serve more than one image (the same name, other suffixes); "
            "each of those images reads the whole file: %s",
            source,
            len(shared),
            examples(shared),
        )


def load_samples(
    cfg: DataConfig,
    split: str,
    *,
    skipped: list[Path] | None = None,
    unlabelled: list[Path] | None = None,
) -> list[Sample]:
    """Read every source of a split of ``cfg``.

    Args:
        cfg: A config from :func:`~yoloslim.data.config.load_data_config`.
        split: ``"train"`` or ``"val"``.
        skipped: If given, unreadable image paths are appended to it.
        unlabelled: If given, images without a label file (YOLO format only) are
            appended to it.

    Returns:
        The samples. An image the split's sources or list files name more than once is
        read once in val (from the first) and kept as often as named in train (oversampling,
        as YOLO data.yaml files use it), with a warning either way. With several sources or
        repeats, ``image_id`` is renumbered ``0..N-1`` so ids stay unique.

    Raises:
        ConfigError: ``split`` is not ``"train"`` or ``"val"``.
        DataError: Any reader error.
    """
    if split not in ("train", "val"):
        raise ConfigError(f"split must be 'train' or 'val', got {split!r}")
    sources = cfg.train if split == "train" else cfg.val
    out: list[Sample] = []
    for src in sources:
        if cfg.format == "yolo":
            out += read_yolo(
                src.path,
                cfg.names,
                skipped=skipped,
                unlabelled=unlabelled,
                kpt_shape=cfg.kpt_shape,
            )
        elif cfg.format == "coco":
            assert src.images is not None
            out += read_coco(src.path, src.images, cfg.names, skipped=skipped)[0]
        else:
            out += read_voc(src.path, cfg.names, skipped=skipped)
    # overlapping folders (images/train and images/train/sub), a source or list line given
    # twice: val evaluates each image once; train keeps the repeats (a YOLO data.yaml
    # oversamples a set by listing it again), both with a warning
    where = f"{cfg.yaml_path}: key '{split}'"
    out = unique(
        out,
        where,
        "in its sources or list files",
        lambda s: s.path,
        lambda a, b: not same_labels(a, b),
        keep=split == "train",
    )
    ids = [s.image_id for s in out]
    if len(sources) > 1 or len(set(ids)) != len(ids):  # ids from several readers, or repeats
        out = [dataclasses.replace(s, image_id=i) for i, s in enumerate(out)]
    return out
