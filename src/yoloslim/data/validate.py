"""Dataset health report: image and instance counts per split and class."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from yoloslim.configs import check_imgsz
from yoloslim.data.config import DataConfig
from yoloslim.data.duplicates import warn_shared
from yoloslim.data.formats import load_samples
from yoloslim.data.orphans import find_orphans
from yoloslim.data.sample import IMAGE_SUFFIXES, examples, label_changes
from yoloslim.data.transforms import MAX_ASPECT, MIN_SIDE, dropped_at

__all__ = ["check_dataset"]

logger = logging.getLogger(__name__)


def check_dataset(
    cfg: DataConfig, *, imgsz: int | None = None, decode: bool = False
) -> dict[str, Any]:
    """Read both splits of ``cfg`` and count what is in them.

    Args:
        cfg: A config from :func:`~yoloslim.data.config.load_data_config`.
        imgsz: A training size: each split also counts ``dropped_at_imgsz``, the
            instances the training loader drops at that size (under 2 px a side, or
            thinner than 100:1, once the image is scaled down), warned about for train.
        decode: Also decode every image whole, as the training loader does, and list the
            ones that fail in ``undecodable_images`` (a PNG whose pixel data is corrupt under
            valid checksums passes the header checks the loaders make, so training stops on
            it when it gets there). Slower: every pixel is read.

    Returns:
        ``{"format", "names", "splits": {split: {"images", "instances",
        "per_class": {name: count}, "ignored", "empty_images", "missing_labels",
        "skipped_images"}}}`` where ``images`` counts readable images, ``ignored`` the
        regions evaluation ignores (COCO crowds, VOC difficult objects; not instances),
        ``empty_images`` those without any instance, ``missing_labels`` those of
        them that have no label file at all (YOLO format) and ``skipped_images``
        lists the unreadable ones (as strings). ``labels_changed`` counts what the readers
        left out or cut, as their warnings say: ``zero_area_dropped`` (boxes without width or
        height), ``duplicates_dropped`` (a label repeated for one image, one copy kept),
        ``clipped`` (boxes cut at the image's edge) and ``outside_dropped`` (boxes wholly
        outside their image). A split with images but no
        instance is logged as a warning (it is almost always a wrong path). The val split
        adds ``shared_with_train``: how many of its images are train images too, the same
        file or a byte-identical copy (warned).
        A YOLO split adds ``orphan_labels``, the label files of its folders that no image
        reads (an image in a format the readers skip, ``.jfif`` or ``.gif``, is named), and
        ``unread_files``, its image folders' files that are no image the readers take; both
        are warned about with a count and a few names.

    Raises:
        ConfigError: ``imgsz`` is not a multiple of 32 (at least 32).
        DataError: Anything the readers reject (bad labels, no readable image).

    Example:
        >>> check_dataset(load_data_config("shapes/data.yaml"))["splits"]["val"]["images"]  # doctest: +SKIP
        200
    """
    check_imgsz(imgsz)  # a size training takes: a multiple of 32
    report: dict[str, Any] = {"format": cfg.format, "names": list(cfg.names), "splits": {}}
    read = {}
    for split in ("train", "val"):
        skipped: list[Path] = []
        unlabelled: list[Path] = []
        with label_changes() as changed:
            samples = load_samples(cfg, split, skipped=skipped, unlabelled=unlabelled)
        undecodable = _undecodable(samples, split) if decode else []
        read[split] = samples
        classes = np.concatenate([s.classes for s in samples]) if samples else np.zeros(0, np.int64)
        counts = np.bincount(classes, minlength=cfg.nc)
        report["splits"][split] = {
            "images": len(samples),
            "instances": int(counts.sum()),
            "per_class": {n: int(c) for n, c in zip(cfg.names, counts, strict=True)},
            "ignored": sum(len(s.ignore) for s in samples),
            "empty_images": sum(1 for s in samples if len(s.classes) == 0),
            "missing_labels": len(unlabelled),
            "skipped_images": [str(p) for p in skipped],
            "labels_changed": dict(changed),
            **({"undecodable_images": [str(p) for p in undecodable]} if decode else {}),
        }
        if imgsz is not None:
            lost, total = dropped_at(samples, imgsz)
            report["splits"][split]["dropped_at_imgsz"] = lost
            if lost and split == "train":
                logger.warning(
                    "%s: %d of the %d train instances (%.1f%%) are under %g px a side or "
                    "thinner than %g:1 at imgsz %d; the training loader drops them",
                    cfg.yaml_path,
                    lost,
                    total,
                    100 * lost / total,
                    MIN_SIDE,
                    MAX_ASPECT,
                    imgsz,
                )
        if cfg.format == "yolo":
            _report_orphans(cfg, split, report["splits"][split])
        # all label files missing was already reported, naming a path looked for
        if samples and not counts.sum() and len(unlabelled) < len(samples):
            logger.warning(
                "%s: the %s split has %d images but no instance: every image is background",
                cfg.yaml_path,
                split,
                len(samples),
            )
    shared = warn_shared(read["train"], read["val"], cfg.yaml_path, copies=True)
    report["splits"]["val"]["shared_with_train"] = len(shared)
    return report


def _undecodable(samples: list, split: str) -> list[Path]:
    """The images of ``samples`` that do not decode whole, as the training loader reads
    them, at the size recorded; one warning names them: the readers' header checks pass
    them, so training would stop on the first one it reaches."""
    from PIL import Image

    from yoloslim.progress import progress_console
    from yoloslim.runtime.images import to_rgb

    bad: list[Path] = []
    said: list[str] = []
    with progress_console().status(f"decoding the {len(samples)} {split} images"):
        for s in samples:
            try:
                with Image.open(s.path) as im:
                    h, w = to_rgb(im, in_place=True).shape[:2]
                why = (
                    None
                    if (w, h) == (s.width, s.height)
                    else (f"decodes to {w}x{h}, not the {s.width}x{s.height} its header says")
                )
            except Exception as e:  # noqa: BLE001 - what the loader would stop on
                why = f"{type(e).__name__}: {e}"
            if why is not None:
                bad.append(s.path)
                said.append(f"{s.path} ({why})")
    if bad:
        logger.warning(
            "%d %s image(s) fail to decode whole; training stops on the first it reaches, so "
            "remove or re-encode them: %s",
            len(bad),
            split,
            examples(said),
        )
    return bad


def _report_orphans(cfg: DataConfig, split: str, into: dict[str, Any]) -> None:
    sources = cfg.train if split == "train" else cfg.val
    found = find_orphans([s.path for s in sources if s.path.is_dir()])
    into["orphan_labels"] = found.labels
    into["unread_files"] = found.unread
    if found.labels:
        logger.warning(
            "%s: %d label file(s) of the %s split match no image the readers take, so their "
            "labels are never used: %s",
            cfg.yaml_path,
            len(found.labels),
            split,
            examples(found.labels),
        )
    if found.unread:
        logger.warning(
            "%s: %d file(s) in the %s image folders are skipped (suffixes read: %s): %s",
            cfg.yaml_path,
            len(found.unread),
            split,
            " ".join(IMAGE_SUFFIXES),
            examples(found.unread),
        )
