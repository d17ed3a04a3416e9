"""One image read twice: within the val split (overlapping sources, a repeated list entry)
it is evaluated once, with a warning; within the train split it is kept, with a warning (a
source listed twice is how YOLO data.yaml files oversample a set); shared by train and val it
is reported (a leak that inflates mAP).

Two paths are the same image when they name the same file: the same device and inode, which
covers what ``Path.resolve()`` equates (``./``, ``..``, symbolic links) and hard links too.
"""

from __future__ import annotations

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
    seen: dict[tuple[int, int] | str, tuple[Path, T]] = {}
    listed: Counter = Counter()  # how often each file is named
    out, dropped = [], []
    for item in items:
        p = path(item)
        key = file_key(p)
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


def shared_images(train: Sequence[Sample], val: Sequence[Sample]) -> list[Path]:
    """The val images that are train images too (the val split's paths)."""
    keys = {file_key(s.path) for s in train}
    return [s.path for s in val if file_key(s.path) in keys]


def warn_shared(train: Sequence[Sample], val: Sequence[Sample], where: str | Path) -> list[Path]:
    """Warn when train and val share images (their mAP then measures memory, not
    generalisation); returns the shared val paths."""
    shared = shared_images(train, val)
    if shared:
        logger.warning(
            "%s: %d of the %d val images are train images too (val: the same as train, or "
            "overlapping it?); their mAP says little about new images: %s",
            where,
            len(shared),
            len(val),
            examples([str(p) for p in shared]),
        )
    return shared
