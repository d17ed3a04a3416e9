"""Datasets: readers (YOLO, COCO, VOC), the detection dataset and loader, synthetic data.

Example:
    >>> from yoloslim.data import load_data_config, load_samples, DetectionDataset
    >>> cfg = load_data_config("shapes/data.yaml")  # doctest: +SKIP
    >>> ds = DetectionDataset(load_samples(cfg, "val"), 320, augment=False,
    ...                       names=cfg.names)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from yoloslim.data.config import DataConfig, SplitSource, load_data_config
from yoloslim.data.formats import Sample, load_samples, read_coco, read_voc, read_yolo
from yoloslim.data.synth import synthesize
from yoloslim.data.validate import check_dataset

if TYPE_CHECKING:
    from yoloslim.data.dataset import (
        AugmentConfig,
        DetectionDataset,
        DetectionLoader,
        build_dataloader,
        collate,
    )

# the dataset and loader import torch (over a second); `data check` and `data synth` need
# none of them, so they are imported on first use
_DATASET = ("AugmentConfig", "DetectionDataset", "DetectionLoader", "build_dataloader", "collate")


def __getattr__(name: str) -> Any:
    if name in _DATASET:
        from yoloslim.data import dataset

        return getattr(dataset, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_DATASET})


__all__ = [
    "AugmentConfig",
    "DataConfig",
    "DetectionDataset",
    "DetectionLoader",
    "Sample",
    "SplitSource",
    "build_dataloader",
    "check_dataset",
    "collate",
    "load_data_config",
    "load_samples",
    "read_coco",
    "read_voc",
    "read_yolo",
    "synthesize",
]
