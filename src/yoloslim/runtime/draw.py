"""Draw detections on an image (PIL), one colour per class."""

from __future__ import annotations

import colorsys
import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from yoloslim.errors import ConfigError
from yoloslim.fileio import file_key

__all__ = [
    "DRAWN_COMMENT",
    "JPEG_MAX_SIDE",
    "class_colour",
    "draw_detections",
    "drawn_paths",
    "fit_jpeg",
]

# the JPEG comment of every image predict draws: a later run replaces only these
DRAWN_COMMENT = b"drawn by yoloslim predict"


def class_colour(c: int) -> tuple[int, int, int]:
    h = (c * 0.618033988749895) % 1.0  # golden-ratio hue steps keep neighbours apart
    r, g, b = colorsys.hsv_to_rgb(h, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


# the largest side a JPEG holds (libjpeg's limit); a larger drawing is scaled down to it
JPEG_MAX_SIDE = 65500


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's own font at ``size`` px (no font file needed); its fixed 11 px bitmap font
    where Pillow was built without FreeType."""
    try:
        return ImageFont.load_default(size=size)
    except (ImportError, OSError, TypeError, ValueError):
        return ImageFont.load_default()


def draw_detections(image: np.ndarray, dets) -> Image.Image:
    """A copy of ``image`` (HxWx3 RGB) with boxes and ``name score`` labels, whose lines and
    text grow with the image (legible on a 24 MP photo as on a 640 px one)."""
    im = Image.fromarray(image).copy()
    draw = ImageDraw.Draw(im)
    width = max(1, round(max(im.size) / 320))
    font = _font(max(11, 5 * width + 6))
    for box, score, c in zip(dets.boxes, dets.scores, dets.classes, strict=True):
        colour = class_colour(int(c))
        x1, y1, x2, y2 = (float(v) for v in box)
        # a box to the image's edge ends at W (H), a pixel past the last one, where its
        # side was not drawn (audit45 predict F1): the last pixel column (row) it covers
        x2, y2 = max(x1, min(x2, im.width - 1)), max(y1, min(y2, im.height - 1))
        draw.rectangle([x1, y1, x2, y2], outline=colour, width=width)
        name = dets.names[int(c)] if int(c) < len(dets.names) else str(int(c))
        label = f"{name} {score:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
        tw, th = right - left + 2 * width + 2, bottom - top + 2 * width + 2
        tx = min(x1, max(0.0, im.width - tw))  # kept inside the image's right edge
        ty = y1 - th if y1 >= th else y1  # above the box, or inside it at the top
        draw.rectangle([tx, ty, tx + tw, ty + th], fill=colour)
        draw.text((tx + width + 1 - left, ty + width + 1 - top), label, fill=(0, 0, 0), font=font)
    return im


def fit_jpeg(im: Image.Image) -> Image.Image:
    """``im``, scaled down where a side is over :data:`JPEG_MAX_SIDE` (a panorama strip's
    drawing would fail to save as the JPEG it is written as)."""
    side = max(im.size)
    if side <= JPEG_MAX_SIDE:
        return im
    k = JPEG_MAX_SIDE / side
    return im.resize((max(1, round(im.width * k)), max(1, round(im.height * k))), Image.BILINEAR)


def _fit_name(tag: str, suffix: str, limit: int = 255) -> str:
    """``tag + suffix``, or, past a file system's ``limit`` bytes, ``tag`` cut short with a hash
    of the whole of it (so two long names that differ at their ends stay two)."""
    name = tag + suffix
    if len(name.encode()) <= limit:
        return name
    digest = "~" + hashlib.sha1(tag.encode()).hexdigest()[:10]
    keep = tag.encode()[: limit - len(suffix.encode()) - len(digest)].decode(errors="ignore")
    return keep + digest + suffix


def drawn_names(files: list[Path], *, video: bool = False) -> dict[Path, str]:
    """The file name of each input's drawn copy, as :func:`drawn_paths` gives it (no check)."""
    stems = Counter(f.stem for f in files)
    suffix = ".mp4" if video else ".jpg"
    out: dict[Path, str] = {}
    taken: set[str] = set()
    for f in files:
        tag = f.stem if stems[f.stem] == 1 else f"{f.stem}_{f.suffix.lstrip('.').lower()}"
        name, k = _fit_name(tag, suffix), 1
        while name.lower() in taken:
            k += 1
            name = _fit_name(f"{tag}_{k}", suffix)
        taken.add(name.lower())
        out[f] = name
    return out


def drawn_paths(files: list[Path], save: Path, *, video: bool = False) -> dict[Path, Path]:
    """Where each input's drawn copy goes: ``save/<stem>.jpg`` (``.mp4`` for a video).

    Inputs that share a stem (``a.jpg``, ``a.png``) get ``<stem>_<ext>.jpg`` instead, and a
    name still taken (``a.jpg`` and ``a.JPG``; an ``a_jpg.png`` beside them) gets a counter,
    ``<stem>_<ext>_2.jpg``, in the order of ``files``, so no drawing replaces another. Names
    are compared without case (a case-insensitive file system would merge them).

    Raises:
        ConfigError: a drawn file would replace one of the inputs (inputs are never
            overwritten; a symlink or hard link to an input counts as the input).
    """
    out = {f: save / name for f, name in drawn_names(files, video=video).items()}
    inputs = {file_key(f) for f in files if f.exists()}
    for f, dst in out.items():
        if dst.exists() and file_key(dst) in inputs:
            raise ConfigError(
                f"--save {save}: the drawn copy of {f} would replace the input {dst}; "
                "inputs are never overwritten, so choose another --save folder"
            )
    return out
