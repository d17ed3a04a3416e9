"""Reading images for prediction: paths, folders, arrays and PIL images -> RGB uint8 arrays.

Images are decoded one at a time as they are consumed (a folder of thousands of photos is
never held in memory at once), turned upright by their EXIF orientation (what a photo viewer
and most labelling tools show), and 16-bit greyscale images are scaled to 8 bits rather than
clipped to white by ``convert("RGB")``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from yoloslim.errors import DataError

__all__ = ["IMAGE_SUFFIXES", "ImageLike", "image_files", "iter_images", "read_image", "to_rgb"]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
ImageLike = str | Path | np.ndarray | Image.Image


def to_rgb(im: Image.Image) -> np.ndarray:
    """An upright ``HxWx3`` RGB uint8 array of ``im`` (EXIF orientation applied).

    16-bit modes (``I;16*``, and ``I``, which older Pillow uses for 16-bit PNGs) keep their
    top 8 bits; ``convert("RGB")`` would clip every value above 255 to white.
    """
    im = ImageOps.exif_transpose(im)
    if im.mode.startswith("I;16") or im.mode == "I":
        a = np.asarray(im).astype(np.int64).clip(0, 65535) >> 8
        im = Image.fromarray(a.astype(np.uint8), "L")
    return np.asarray(im if im.mode == "RGB" else im.convert("RGB"))


def read_image(path: str | Path) -> np.ndarray:
    """Decode one image file with :func:`to_rgb`.

    Raises:
        DataError: the file does not exist or cannot be decoded (named in the message).
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: image does not exist")
    try:
        with Image.open(p) as im:
            return to_rgb(im)
    except Exception as e:  # noqa: BLE001 - PIL raises many types on bad files
        raise DataError(f"{p}: cannot decode image ({type(e).__name__}: {e})") from e


def image_files(source: str | Path) -> list[Path]:
    """``[source]`` for a file; a folder's images (its own files, not subfolders), sorted.

    Raises:
        DataError: ``source`` does not exist, or the folder holds no image.
    """
    p = Path(source)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
        if not files:
            raise DataError(f"{p}: folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
        return files
    if not p.exists():
        raise DataError(f"{p}: image does not exist")
    return [p]


def iter_images(
    source: ImageLike | Sequence[ImageLike], *, skip_unreadable: bool = False
) -> Iterator[tuple[np.ndarray, str | None]]:
    """Yield ``(RGB array, file path or None)`` for each image of ``source``, one at a time.

    Args:
        source: A path, a folder (its images, sorted), a numpy ``HxWx3`` RGB array, a PIL
            image, or a list of these.
        skip_unreadable: Skip files that cannot be decoded (with a warning naming each)
            instead of raising. Images found in a folder are always skipped this way; a
            file named explicitly raises unless this is set.

    Raises:
        DataError: a bad array, a missing file, an unreadable file named explicitly, or no
            image of ``source`` could be read at all (after skipping).
    """
    items = source if isinstance(source, (list, tuple)) else [source]
    read, skipped = 0, []
    for item in items:
        if isinstance(item, Image.Image):
            read += 1
            yield to_rgb(item), None
        elif isinstance(item, np.ndarray):
            if item.ndim != 3 or item.shape[2] != 3:
                raise DataError(f"numpy images must be HxWx3 RGB, got shape {item.shape}")
            read += 1
            yield np.ascontiguousarray(item.astype(np.uint8, copy=False)), None
        else:
            p = Path(item)
            in_folder = p.is_dir()
            for f in image_files(p):
                try:
                    arr = read_image(f)
                except DataError as e:
                    if not (skip_unreadable or in_folder):
                        raise
                    log.warning("%s; skipped", e)
                    skipped.append(f)
                    continue
                read += 1
                yield arr, str(f)
    if skipped and not read:
        raise DataError(
            f"none of the {len(skipped)} images could be read ({', '.join(map(str, skipped[:3]))}"
            + (", ..." if len(skipped) > 3 else "")
            + ")"
        )
