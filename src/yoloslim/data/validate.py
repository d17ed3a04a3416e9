"""Dataset health report: image and instance counts per split and class."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from yoloslim.data.config import DataConfig
from yoloslim.data.formats import load_samples

__all__ = ["check_dataset"]


def check_dataset(cfg: DataConfig) -> dict[str, Any]:
    """Read both splits of ``cfg`` and count what is in them.

    Args:
        cfg: A config from :func:`~yoloslim.data.config.load_data_config`.

    Returns:
        ``{"format", "names", "splits": {split: {"images", "instances",
        "per_class": {name: count}, "empty_images", "skipped_images"}}}`` where
        ``images`` counts readable images and ``skipped_images`` lists the
        unreadable ones (as strings).

    Raises:
        DataError: Anything the readers reject (bad labels, no readable image).

    Example:
        >>> check_dataset(load_data_config("shapes/data.yaml"))["splits"]["val"]["images"]  # doctest: +SKIP
        200
    """
    report: dict[str, Any] = {"format": cfg.format, "names": list(cfg.names), "splits": {}}
    for split in ("train", "val"):
        skipped: list[Path] = []
        samples = load_samples(cfg, split, skipped=skipped)
        classes = np.concatenate([s.classes for s in samples]) if samples else np.zeros(0, np.int64)
        counts = np.bincount(classes, minlength=cfg.nc)
        report["splits"][split] = {
            "images": len(samples),
            "instances": int(counts.sum()),
            "per_class": {n: int(c) for n, c in zip(cfg.names, counts, strict=True)},
            "empty_images": sum(1 for s in samples if len(s.classes) == 0),
            "skipped_images": [str(p) for p in skipped],
        }
    return report
