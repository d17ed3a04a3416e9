"""One image read twice: within the val split (overlapping sources, a repeated list entry)
it is evaluated once, with a warning; within the train split it is kept, with a warning (a
source listed twice is how YOLO data.yaml files oversample a set); shared by train and val it
is reported (a leak that inflates mAP).

Within a split, two paths are one image when they name the same file (the same device and
inode: what ``Path.resolve()`` equates, ``./``, ``..``, a symbolic link to a folder, and hard
links too) under the same file name: a link under another name (``b.png`` a hard link of
``a.png``, as deduplicating tools and link-based data caches make) is another image, with its
own label file, as a copy would be. Between train and val the file alone decides (a link of a
train image in val is that image); ``data check`` also counts a byte-identical copy in val of
a train image as shared.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from yoloslim.data.sample import Sample, examples
from yoloslim.errors import DataError
from yoloslim.fileio import file_key

__all__ = ["same_labels", "unique", "shared_images", "warn_shared"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


def unique(
    items: Sequence[T],
    source: str | Path,
    what: str,
    path: Callable[[T], Path],
    differ: Callable[[T, T], bool] | None = None,
    *,
    keep: bool = False,
) -> list[T]:
    """``items`` without the later ones whose ``path`` names a file an earlier one does, and
    one warning that counts them and names a few (``what`` says where they came from);
    ``keep``: all of them, the warning saying each repeat counts again.

    Raises:
        DataError: ``differ(first, later)`` is true for a repeat: the two carry different
            labels (two COCO jsons annotating one image), and keeping either loses the other's.
    """
    seen: dict[tuple, tuple[Path, T]] = {}
    listed: Counter = Counter()  # how often each file is named
    out, dropped = [], []
    for item in items:
        p = path(item)
        key = (file_key(p), p.name)  # a link under another name is another image
        listed[key] += 1
        if key in seen:
            first, kept = seen[key]
            if differ is not None and differ(kept, item):
                raise DataError(
                    f"{source}: image {p} is listed {what} with different labels (also as "
                    f"{first}); merge its annotations into one source"
                )
            dropped.append(str(p) if p == first else f"{p} (= {first})")
            if not keep:
                continue
            out.append(item)
            continue
        seen[key] = p, item
        out.append(item)
    if dropped:
        images = sum(1 for n in listed.values() if n > 1)
        logger.warning(
            "%s: %d image(s) listed more than once (%d extra listing(s), %s) %s: %s",
            source,
            images,
            len(dropped),
            what,
            "kept, so each counts once per listing in an epoch (list it once to read it once)"
            if keep
            else "read once",
            examples(dropped),
        )
    return out


def same_labels(a: Sample, b: Sample) -> bool:
    """Whether two samples carry the same boxes, classes and ignore regions."""
    return all(
        x.shape == y.shape and bool((x == y).all())
        for x, y in ((a.boxes, b.boxes), (a.classes, b.classes), (a.ignore, b.ignore))
    )


def shared_images(
    train: Sequence[Sample], val: Sequence[Sample], *, copies: bool = False
) -> list[Path]:
    """The val images that are train images too (the val split's paths): the same file,
    and with ``copies`` a byte-identical copy as well (one photo copied into both split
    folders). Copies are looked for among files of the same size only, compared by a
    digest of their first 64 KiB and then of the whole file, so a set without copies
    costs a ``stat`` per image and a few reads."""
    keys = {file_key(s.path) for s in train}
    shared = [s.path for s in val if file_key(s.path) in keys]
    if not copies:
        return shared
    by_size: dict[int, list[Path]] = {}
    for s in train:
        with contextlib.suppress(OSError):
            by_size.setdefault(s.path.stat().st_size, []).append(s.path)
    digests: dict[tuple[Path, bool], bytes | None] = {}

    def digest(path: Path, whole: bool) -> bytes | None:
        if (path, whole) not in digests:
            try:
                with path.open("rb") as f:
                    h = hashlib.sha1(f.read(1 << 16))
                    for block in iter(lambda: f.read(1 << 20), b"") if whole else ():
                        h.update(block)
                digests[path, whole] = h.digest()
            except OSError:
                digests[path, whole] = None
        return digests[path, whole]

    # the train files of one size by the digest of their head, made once per size: a val
    # image looks up its own head there (comparing it with each train file of its size was
    # quadratic where every file has one size: a BMP or TIFF set)
    by_head: dict[int, dict[bytes, list[Path]]] = {}
    same = set(shared)
    for s in val:
        if s.path in same:
            continue
        try:
            size = s.path.stat().st_size
        except OSError:
            continue
        if size not in by_size:
            continue
        if size not in by_head:
            heads = by_head[size] = {}
            for o in by_size[size]:
                h = digest(o, False)
                if h is not None:
                    heads.setdefault(h, []).append(o)
        head = digest(s.path, False)
        whole = digest(s.path, True) if head in by_head[size] else None
        if whole is not None and any(  # two unreadable files are no copies
            digest(o, True) == whole for o in by_head[size][head]
        ):
            shared.append(s.path)
    return shared


def warn_shared(
    train: Sequence[Sample], val: Sequence[Sample], where: str | Path, *, copies: bool = False
) -> list[Path]:
    """Warn when train and val share images (their mAP then measures memory, not
    generalisation); returns the shared val paths. ``copies``: byte-identical copies
    count too (see :func:`shared_images`)."""
    shared = shared_images(train, val, copies=copies)
    if shared:
        logger.warning(
            "%s: %d of the %d val images are train images too (%s; val: the same as train, "
            "or overlapping it?); their mAP says little about new images: %s",
            where,
            len(shared),
            len(val),
            "the same file or a byte-identical copy" if copies else "the same file",
            examples([str(p) for p in shared]),
        )
    return shared
