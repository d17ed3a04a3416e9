"""Detection dataset (letterbox for eval; mosaic, affine, flip, HSV for training) and loader.

Randomness is per item: the generator of item ``i`` is seeded from
``(seed, epoch, i)``, so a run gives the same images whatever the number of
workers. The epoch and the mosaic probability live in a shared-memory tensor,
so :meth:`DetectionDataset.set_epoch` and :meth:`DetectionDataset.set_mosaic`
reach worker processes that are already running too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from yoloslim.configs import check_field_types, check_ranges, exponent_hint, plain_numbers
from yoloslim.data.sample import Sample
from yoloslim.data.transforms import (
    MAX_ASPECT,
    MIN_SIDE,
    Affine,
    apply_hsv,
    dropped_at,
    filter_boxes,
    letterbox,
    letterbox_params,
    mosaic_canvas,
    resize_exact,
    warp,
)
from yoloslim.errors import ConfigError, DataError, YoloslimError
from yoloslim.runtime.images import to_rgb

__all__ = [
    "AugmentConfig",
    "DetectionDataset",
    "DetectionLoader",
    "collate",
    "build_dataloader",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentation; setting a value to 0 switches that step off.

    Attributes:
        mosaic: Probability of a 4-image mosaic.
        hflip: Probability of a horizontal flip.
        hsv: Maximum hue rotation (turns), saturation and value gains, each ``+-``. One
            colour matrix does all three (:func:`~yoloslim.data.transforms.hsv_matrix`): the
            hue turns in the YIQ plane, not HSV's, so an HSV hue moves by about that much,
            not exactly (its sign may differ; the draw is symmetric), and channels clip at
            255.
        scale: Random zoom range ``1 +- scale``.
        translate: Random shift, fraction of the image side, ``+-``.
        enabled: ``False`` turns every augmentation off (plain letterbox).
    """

    mosaic: float = 1.0
    hflip: float = 0.5
    hsv: tuple[float, float, float] = (0.015, 0.7, 0.4)
    scale: float = 0.5
    translate: float = 0.1
    enabled: bool = True

    def __post_init__(self) -> None:
        for f in fields(self):  # numpy numbers (a sweep's) as plain ones
            object.__setattr__(self, f.name, plain_numbers(getattr(self, f.name)))
        # types before ranges: a string or null failed as Python's "'<=' not supported"
        # naming no key, and enabled: 'false' (a string, so true) or 0 kept augmenting
        check_field_types(
            self, numbers=("mosaic", "hflip", "scale", "translate"), bools=("enabled",)
        )
        hsv = self.hsv
        if not isinstance(hsv, (list, tuple)) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in hsv
        ):  # hsv: '000' was read as three zeros
            items = hsv if isinstance(hsv, (list, tuple)) else ()
            text = next((v for v in items if isinstance(v, str)), None)
            raise ConfigError(
                f"AugmentConfig.hsv={hsv!r} must be 3 numbers (the hue, saturation and value "
                f"gains){exponent_hint(text)}"
            )
        object.__setattr__(self, "hsv", tuple(float(v) for v in hsv))  # a yaml config: a list
        checks = [
            (0 <= self.mosaic <= 1, "mosaic", "must be a probability in [0, 1]"),
            (0 <= self.hflip <= 1, "hflip", "must be a probability in [0, 1]"),
            (
                len(self.hsv) == 3 and all(0 <= v <= 1 for v in self.hsv),
                "hsv",
                "must be 3 gains in [0, 1]",
            ),
            (0 <= self.scale < 1, "scale", "must be in [0, 1)"),
            (0 <= self.translate <= 0.5, "translate", "must be in [0, 0.5]"),
        ]
        check_ranges(self, checks)


class DetectionDataset(Dataset):
    """Samples -> ``(img uint8 (3,S,S) RGB, targets (N,5) [cls,x1,y1,x2,y2], meta)``.

    Targets are in pixels of the returned image, clipped to it; boxes with a side
    under 2 px are dropped. With ``augment``, a warning gives the share of labelled
    instances that are that small at ``imgsz``, and a set where all of them are is refused.
    ``meta`` has ``image_id``, ``path``, ``orig_shape`` ``(h, w)``, ``ratio``, ``pad`` ``(left, top)`` and ``flipped``:
    ``orig = (box - pad) / ratio``, after undoing the flip ``x -> S - x`` when
    ``flipped`` (for a mosaic this maps the item's own tile).

    Args:
        samples: From a reader (images already verified there).
        imgsz: Output side ``S``.
        augment: Training augmentation on (``False``: plain centred letterbox).
        aug: Augmentation settings (default :class:`AugmentConfig`).
        names: Class names.
        cache: Decode every image once (resized to long side ``S``) and keep it
            in RAM; forked workers share it copy-on-write.
        seed: Base seed of the per-item generators.

    Example:
        >>> ds = DetectionDataset(load_samples(cfg, "train"), 320, augment=True,
        ...                       names=cfg.names)  # doctest: +SKIP
        >>> img, targets, meta = ds[0]  # doctest: +SKIP
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        imgsz: int,
        *,
        augment: bool,
        aug: AugmentConfig | None = None,
        names: Sequence[str],
        cache: bool = False,
        seed: int = 0,
    ) -> None:
        if not isinstance(imgsz, int) or imgsz < 32:
            raise ConfigError(f"imgsz must be an int >= 32, got {imgsz!r}")
        if not samples:
            raise DataError("DetectionDataset: no samples")
        if not names:
            raise ConfigError("names must not be empty")
        self.samples = list(samples)
        self.names = list(names)
        for s in self.samples:
            if len(s.classes) and (s.classes.min() < 0 or s.classes.max() >= len(self.names)):
                raise DataError(
                    f"{s.path}: class ids {s.classes.tolist()} outside 0..{len(self.names) - 1}"
                )
        self.imgsz = imgsz
        if augment:
            _check_instances_kept(self.samples, imgsz)
        self.augment = augment
        self.aug = aug if aug is not None else AugmentConfig()
        self.seed = int(seed)
        # [epoch, mosaic probability] in shared memory: visible to persistent workers.
        self._state = torch.tensor([0.0, self.aug.mosaic], dtype=torch.float64).share_memory_()
        self._cache: list[Image.Image] | None = None
        if cache:
            _check_cache_fits(self.samples, imgsz)
            # an image listed more than once (a data.yaml oversampling a folder by naming
            # it again) is decoded and held once; its listings share the decoded image
            first: dict[tuple[Path, int, int], int] = {}
            for i, s in enumerate(self.samples):
                first.setdefault(_image_key(s), i)
            with ThreadPoolExecutor(4) as pool:
                decoded = dict(
                    zip(first.values(), pool.map(self._read, first.values()), strict=True)
                )
            self._cache = [decoded[first[_image_key(s)]] for s in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def epoch(self) -> int:
        """The epoch that seeds the per-item generators."""
        return int(self._state[0])

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch; call before iterating the loader for that epoch."""
        self._state[0] = float(epoch)

    def set_mosaic(self, prob: float) -> None:
        """Change the mosaic probability (e.g. 0 for the last epochs)."""
        if not 0.0 <= prob <= 1.0:
            raise ConfigError(f"mosaic probability must be in [0, 1], got {prob}")
        self._state[1] = float(prob)

    def _read(self, i: int) -> Image.Image:
        """Image ``i`` as RGB, resized so its long side is ``imgsz``."""
        s = self.samples[i]
        try:
            with Image.open(s.path) as im:
                # upright (EXIF) and 16-bit images scaled, as predict reads them
                rgb = Image.fromarray(to_rgb(im, in_place=True))
        except Exception as e:  # the file changed since it was verified
            raise DataError(f"{s.path}: cannot load image: {e}") from e
        if rgb.size != (s.width, s.height):
            raise DataError(
                f"{s.path}: size {rgb.size} differs from the recorded {(s.width, s.height)}"
            )
        return resize_exact(rgb, self.imgsz / max(s.width, s.height))

    def load_image(self, i: int) -> tuple[Image.Image, float]:
        """Image ``i`` resized to long side ``imgsz`` and the ratio applied."""
        s = self.samples[i]
        im = self._cache[i] if self._cache is not None else self._read(i)
        return im, self.imgsz / max(s.width, s.height)

    def _rng(self, i: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, i])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        s = self.samples[i]
        flipped = False
        if not (self.augment and self.aug.enabled):
            im, r = self.load_image(i)
            arr, ratio, pad = letterbox(im, self.imgsz, ratio=r)
            tmap = Affine(ratio, ratio, float(pad[0]), float(pad[1]))
            boxes, keep = filter_boxes(tmap.boxes(s.boxes), _areas(s.boxes, ratio), self.imgsz)
            classes = s.classes[keep]
            boxes = boxes[keep]
        else:
            rng = self._rng(i)
            arr, boxes, classes, tmap, flipped = self._augmented(i, rng)
        targets = np.concatenate([classes[:, None].astype(np.float32), boxes], 1)
        img = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
        meta = {
            "image_id": s.image_id,
            "path": str(s.path),
            "orig_shape": (s.height, s.width),
            "ratio": float(tmap.sx),
            "pad": (float(tmap.tx), float(tmap.ty)),
            "flipped": flipped,
        }
        return img, torch.from_numpy(targets.reshape(-1, 5)), meta

    def _augmented(
        self, i: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, Affine, bool]:
        size, a = self.imgsz, self.aug
        s = float(rng.uniform(1 - a.scale, 1 + a.scale))
        tx, ty = rng.uniform(0.5 - a.translate, 0.5 + a.translate, 2) * size
        if rng.random() < float(self._state[1]):
            # Mosaic: the 2S canvas centre goes to the output centre (+shift), zoomed by s.
            idx = [i, *rng.integers(0, len(self), 3).tolist()]
            loaded = [self.load_image(j) for j in idx]
            xc, yc = (int(v) for v in rng.integers(size // 2, 3 * size // 2 + 1, 2))
            canvas, maps, regions = mosaic_canvas([im for im, _ in loaded], (xc, yc), size)
            crop = Affine(s, s, tx - s * size, ty - s * size)
            parts_b, parts_c, parts_a = [], [], []
            for j, (_, r), m, reg in zip(idx, loaded, maps, regions, strict=True):
                smp = self.samples[j]
                tile = Affine(r, r).then(m)
                b = np.clip(tile.boxes(smp.boxes), [reg[0], reg[1]] * 2, [reg[2], reg[3]] * 2)
                parts_b.append(crop.boxes(b))
                parts_c.append(smp.classes)
                parts_a.append(_areas(smp.boxes, r * s))
            src, full = canvas, crop
            own = Affine(loaded[0][1], loaded[0][1]).then(maps[0]).then(crop)
            boxes, classes, area = (np.concatenate(p) for p in (parts_b, parts_c, parts_a))
        else:
            src, r = self.load_image(i)
            # Letterbox into S x S, then zoom about the centre and shift.
            _, (pl, pt) = letterbox_params(self.samples[i].width, self.samples[i].height, size)
            full = Affine(1.0, 1.0, pl - size / 2, pt - size / 2).then(Affine(s, s, tx, ty))
            own = Affine(r, r).then(full)
            boxes = own.boxes(self.samples[i].boxes)
            classes, area = self.samples[i].classes, _areas(self.samples[i].boxes, r * s)
        flipped = bool(rng.random() < a.hflip)
        if flipped:
            mirror = Affine(-1.0, 1.0, float(size), 0.0)
            full, boxes = full.then(mirror), mirror.boxes(boxes)
        out = warp(src, full, size)
        if any(a.hsv):
            h, sg, v = (rng.uniform(-g, g) for g in a.hsv)
            out = apply_hsv(out, h, 1 + sg, 1 + v)
        boxes, keep = filter_boxes(boxes, area, size)
        return np.array(out), boxes[keep], classes[keep], own, flipped

    def coco_gt(self) -> dict[str, Any]:
        """Ground truth as a COCO dict (original pixels, ``category_id`` = class index); a
        sample's ``ignore`` regions are ``iscrowd`` annotations, and its annotations' own
        ``areas`` (COCO's) are kept."""
        images, anns = [], []
        for s in self.samples:
            images.append(
                {
                    "id": int(s.image_id),
                    "width": s.width,
                    "height": s.height,
                    "file_name": s.path.name,
                }
            )
            for crowd, boxes, classes, areas in (
                (0, s.boxes, s.classes, s.areas),
                (1, s.ignore, s.ignore_classes, s.ignore_areas),
            ):
                for k, (box, c) in enumerate(zip(boxes.tolist(), classes.tolist(), strict=True)):
                    w, h = box[2] - box[0], box[3] - box[1]
                    anns.append(
                        {
                            "id": len(anns) + 1,
                            "image_id": int(s.image_id),
                            "category_id": int(c),
                            "bbox": [box[0], box[1], w, h],
                            "area": w * h if areas is None else float(areas[k]),
                            "iscrowd": crowd,
                        }
                    )
        cats = [{"id": i, "name": n} for i, n in enumerate(self.names)]
        return {"images": images, "annotations": anns, "categories": cats}


# What one cached image takes: Pillow keeps RGB in 4 bytes a pixel, and each image costs
# about 20 KiB more (objects, allocator). Measured (RSS, 1200 images): 0.94-1.03x this
# estimate at 96, 320 and 640 px; counting 3 bytes a pixel undercounted 1.36-1.96x.
_CACHE_BYTES_PER_PIXEL = 4
_CACHE_BYTES_PER_IMAGE = 20 * 1024


def cache_bytes(samples: Sequence[Sample], imgsz: int) -> int:
    """The memory ``cache=True`` holds for ``samples`` at ``imgsz``: each image once, RGB at
    long side ``imgsz``, as Pillow stores it."""
    need = 0
    for s in {_image_key(s): s for s in samples}.values():  # each image is held once
        r = imgsz / max(s.width, s.height)
        pixels = max(1, round(s.width * r)) * max(1, round(s.height * r))
        need += pixels * _CACHE_BYTES_PER_PIXEL + _CACHE_BYTES_PER_IMAGE
    return need


def _check_cache_fits(samples: Sequence[Sample], imgsz: int) -> None:
    """DataError when the decoded images (RGB, long side ``imgsz``) would take more than
    90 % of the memory available now (the process would be killed part way), a warning
    above half of it."""
    from yoloslim.sysinfo import available_memory

    need = cache_bytes(samples, imgsz)
    samples = list({_image_key(s): s for s in samples}.values())
    free = available_memory()
    if free is None or need <= free // 2:
        return
    gib = f"{need / 2**30:.1f} GiB for {len(samples)} images at {imgsz} px"
    if need > 0.9 * free:
        raise DataError(
            f"cache: the decoded images need {gib}, and {free / 2**30:.1f} GiB is available; "
            "train without cache (images are then read from disk each epoch)"
        )
    logger.warning("cache: the decoded images take %s, over half the memory available", gib)


def _image_key(s: Sample) -> tuple[Path, int, int]:
    """What the cache decodes: one file at one size (a repeated listing shares it)."""
    return (s.path, s.width, s.height)


def _check_instances_kept(samples: Sequence[Sample], imgsz: int) -> None:
    """Warn with the share of labelled instances the training targets lose at ``imgsz``
    (boxes too small or thin once the image is scaled down), refuse when that is all of them:
    the labels count them, the loss never sees them, and training runs on nothing."""
    lost, total = dropped_at(samples, imgsz)
    rule = f"under {MIN_SIDE:g} px a side or thinner than {MAX_ASPECT:g}:1 at imgsz {imgsz}"
    if total and lost == total:
        raise DataError(
            f"all {total} labelled instances of the training set are {rule}; the training "
            "loader drops every one, so there is nothing to learn: train at a larger imgsz"
        )
    if lost:
        logger.warning(
            "%d of the %d labelled instances (%.1f%%) of the training set are %s and are "
            "dropped from the training targets; a larger imgsz keeps them",
            lost,
            total,
            100 * lost / total,
            rule,
        )


def _areas(xyxy: np.ndarray, scale: float) -> np.ndarray:
    b = np.asarray(xyxy, np.float64).reshape(-1, 4)
    return (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) * scale * scale


def collate(
    batch: Sequence[tuple[torch.Tensor, torch.Tensor, dict[str, Any]]],
) -> tuple[torch.Tensor, torch.Tensor, list[dict[str, Any]]]:
    """Stack images and join targets as ``(M, 6)`` ``[batch_idx, cls, x1, y1, x2, y2]``."""
    imgs = torch.stack([b[0] for b in batch])
    targets = [
        torch.cat([torch.full((len(t), 1), float(k)), t], 1) for k, (_, t, _) in enumerate(batch)
    ]
    return imgs, torch.cat(targets) if targets else torch.zeros((0, 6)), [b[2] for b in batch]


def _unwrapped(e: YoloslimError) -> YoloslimError | None:
    """``e`` as raised in a DataLoader worker, without the worker's traceback text.

    torch re-raises a worker's exception as ``type(e)("Caught X in DataLoader worker
    process N.\nOriginal Traceback ...\nmodule.X: message")``; the CLI prints errors as
    one line, so only ``message`` is kept. ``None`` when ``e`` is not such an error.
    """
    text = str(e)
    if not text.startswith("Caught ") or "DataLoader worker" not in text.partition("\n")[0]:
        return None
    cls = type(e)
    head = f"\n{cls.__module__}.{cls.__qualname__}: "
    at = text.rfind(head)
    if at < 0:
        return None
    return cls(text[at + len(head) :].rstrip("\n"))


class DetectionLoader(DataLoader):
    """A :class:`~torch.utils.data.DataLoader` whose yoloslim errors read the same whether
    they were raised in a worker process or in this one (one line, no worker traceback)."""

    def __iter__(self) -> Iterator[Any]:
        return _one_line_errors(super().__iter__())


def _one_line_errors(batches: Iterator[Any]) -> Iterator[Any]:
    try:
        yield from batches
    except YoloslimError as e:
        plain = _unwrapped(e)
        if plain is None:
            raise
        raise plain from e


def build_dataloader(
    dataset: DetectionDataset, batch_size: int, *, workers: int
) -> DetectionLoader:
    """A :class:`DetectionLoader` over ``dataset`` in order, with :func:`collate` (training
    builds its own shuffled loader each epoch: :func:`yoloslim.train.loop.epoch_loader`).

    Args:
        dataset: Usually a :class:`DetectionDataset`.
        batch_size: Images per batch.
        workers: Worker processes (0: load in the main process).

    Raises:
        ConfigError: ``batch_size < 1`` or ``workers < 0``.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if workers < 0:
        raise ConfigError(f"workers must be >= 0, got {workers}")
    return DetectionLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate)
