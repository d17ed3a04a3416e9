"""Calibration and sensitivity images, letterboxed exactly like inference."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from yoloslim.errors import DataError

__all__ = ["load_images"]


def split_samples(data: str | Path, split: str) -> list:
    """The samples of ``split`` to calibrate on; DataError naming the file and split when it
    cannot be read or has no images (checked before any export: :func:`load_images` takes
    them)."""
    from yoloslim.data import load_data_config, load_samples

    cfg = load_data_config(data)
    try:
        samples = load_samples(cfg, split)
    except DataError as e:
        raise DataError(f"{data}: cannot read the {split} split for calibration: {e}") from e
    if not samples:
        where = ", ".join(str(s.path) for s in getattr(cfg, split))
        raise DataError(f"{data}: the {split} split ({where}) has no images to calibrate on")
    return samples


def load_images(
    data: str | Path,
    split: str,
    n: int,
    imgsz: int,
    *,
    seed: int = 0,
    samples: list | None = None,
) -> list[np.ndarray]:
    """``n`` images of ``split`` as float32 ``(1, 3, S, S)`` in [0, 1], letterboxed like inference.

    The images are a seeded random subset (all of them when the split is smaller
    than ``n``), so calibration sees the whole split's variety, not its first files.
    ``samples``: the split's, read already by :func:`split_samples`.

    Raises:
        DataError: the data.yaml is bad or the split has no images (names the file and split).
    """
    from yoloslim.data import DetectionDataset, load_data_config

    cfg = load_data_config(data)
    if samples is None:
        samples = split_samples(data, split)
    rng = np.random.default_rng(seed)
    idx = sorted(rng.permutation(len(samples))[: min(n, len(samples))].tolist())
    ds = DetectionDataset([samples[i] for i in idx], imgsz, augment=False, names=cfg.names)
    out = []
    for i in range(len(ds)):
        img = ds[i][0].numpy()  # (3, S, S) uint8, centred letterbox as in validate()
        out.append((img[None].astype(np.float32) / 255.0).copy())
    return out
