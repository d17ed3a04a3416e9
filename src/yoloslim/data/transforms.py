"""Image and box transforms: exact-scale resize, letterbox, mosaic, affine, colour.

Geometry is scale + translate (+ horizontal flip), so an axis-aligned box maps to
an axis-aligned box exactly. Every warp is one ``PIL.Image.transform`` call (C
code, bilinear); colour jitter is one 3x3 colour matrix (``Image.convert``), so
nothing here loops over pixels in Python.

Coordinates are continuous: pixel ``(i, j)`` covers ``[i, i+1) x [j, j+1)``,
which is also PIL's convention for ``resize`` and ``transform``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from yoloslim.errors import DataError

__all__ = [
    "PAD_VALUE",
    "Affine",
    "resize_exact",
    "letterbox_params",
    "letterbox",
    "warp",
    "mosaic_canvas",
    "filter_boxes",
    "hsv_matrix",
    "apply_hsv",
]

PAD_VALUE = 114
_PAD_RGB = (PAD_VALUE, PAD_VALUE, PAD_VALUE)


@dataclass(frozen=True)
class Affine:
    """``x' = sx * x + tx``, ``y' = sy * y + ty`` (``sx < 0`` is a horizontal flip)."""

    sx: float = 1.0
    sy: float = 1.0
    tx: float = 0.0
    ty: float = 0.0

    def then(self, other: Affine) -> Affine:
        """The map that applies ``self`` first, then ``other``."""
        return Affine(
            other.sx * self.sx,
            other.sy * self.sy,
            other.sx * self.tx + other.tx,
            other.sy * self.ty + other.ty,
        )

    def boxes(self, xyxy: np.ndarray) -> np.ndarray:
        """Map ``(N, 4)`` boxes; reorders x1/x2 under a flip."""
        b = np.asarray(xyxy, np.float64).reshape(-1, 4)
        xs = b[:, [0, 2]] * self.sx + self.tx
        ys = b[:, [1, 3]] * self.sy + self.ty
        return np.stack([xs.min(1), ys.min(1), xs.max(1), ys.max(1)], axis=1).astype(np.float32)


def resize_exact(im: Image.Image, ratio: float) -> Image.Image:
    """Resize by exactly ``ratio`` (antialiased), so ``x_out = ratio * x_in``.

    The output size is ``floor(size * ratio)``; the source box passed to PIL is
    ``out_size / ratio`` so both axes scale by the same factor (a plain resize
    to rounded sizes would scale each axis slightly differently).
    """
    if ratio == 1.0:
        return im
    w, h = im.size
    nw = max(1, math.floor(w * ratio + 1e-3))
    nh = max(1, math.floor(h * ratio + 1e-3))
    box = (0.0, 0.0, min(nw / ratio, w), min(nh / ratio, h))
    return im.resize((nw, nh), Image.Resampling.BILINEAR, box=box)


def letterbox_params(width: int, height: int, size: int) -> tuple[float, tuple[int, int]]:
    """Scale and ``(left, top)`` padding that fit a ``width x height`` image in ``size``.

    Raises:
        DataError: the image is empty (0 px wide or high).
    """
    if width < 1 or height < 1:
        raise DataError(f"cannot letterbox an empty {width}x{height} px image")
    ratio = min(size / width, size / height)
    nw = max(1, math.floor(width * ratio + 1e-3))
    nh = max(1, math.floor(height * ratio + 1e-3))
    return ratio, ((size - nw) // 2, (size - nh) // 2)


def letterbox(
    im: Image.Image, size: int, ratio: float | None = None
) -> tuple[np.ndarray, float, tuple[int, int]]:
    """Keep-aspect resize and centre on a grey ``size x size`` canvas.

    Args:
        im: RGB image in original pixels, or already resized by ``ratio``.
        size: Output side.
        ratio: When given, ``im`` is already resized by this ratio (a cache).

    Returns:
        ``(array HxWx3 uint8, ratio, (left, top))`` with ``out = orig * ratio + pad``.

    Raises:
        DataError: ``im`` is empty (0 px wide or high) and ``ratio`` is None.
    """
    if ratio is None:
        ratio, _ = letterbox_params(im.width, im.height, size)
        im = resize_exact(im, ratio)
    left, top = (size - im.width) // 2, (size - im.height) // 2
    canvas = np.full((size, size, 3), PAD_VALUE, np.uint8)
    canvas[top : top + im.height, left : left + im.width] = np.asarray(im)
    return canvas, ratio, (left, top)


def warp(im: Image.Image, a: Affine, size: int) -> Image.Image:
    """Apply ``a`` to ``im`` and crop to ``size x size``, grey outside the source.

    Implemented as one ``resize`` of the visible source box (separable,
    antialiased, faster than ``Image.transform``) pasted on a grey canvas; a
    mirror is a final ``transpose``. Output pixels only partly covered by the
    source (at most one row/column per side) stay grey.
    """
    flip = a.sx < 0
    if flip:
        a = a.then(Affine(-1.0, 1.0, float(size), 0.0))
    out = Image.new("RGB", (size, size), _PAD_RGB)
    w, h = im.size
    ox0, oy0 = max(0, math.ceil(a.tx - 1e-6)), max(0, math.ceil(a.ty - 1e-6))
    ox1 = min(size, math.floor(a.sx * w + a.tx + 1e-6))
    oy1 = min(size, math.floor(a.sy * h + a.ty + 1e-6))
    if ox1 > ox0 and oy1 > oy0:
        box = (
            max(0.0, (ox0 - a.tx) / a.sx),
            max(0.0, (oy0 - a.ty) / a.sy),
            min(float(w), (ox1 - a.tx) / a.sx),
            min(float(h), (oy1 - a.ty) / a.sy),
        )
        out.paste(im.resize((ox1 - ox0, oy1 - oy0), Image.Resampling.BILINEAR, box=box), (ox0, oy0))
    return out.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if flip else out


def mosaic_canvas(
    images: list[Image.Image], center: tuple[int, int], size: int
) -> tuple[Image.Image, list[Affine], list[tuple[int, int, int, int]]]:
    """Tile four images around ``center`` of a ``2*size`` grey canvas (YOLOv4 mosaic).

    Args:
        images: Four images, each already resized so its long side is ``size``.
        center: Mosaic centre ``(xc, yc)`` in canvas pixels.
        size: Output side ``S``; the canvas is ``2S x 2S``.

    Returns:
        ``(canvas, maps, regions)``: per image, the map image -> canvas and the
        canvas region ``(x1, y1, x2, y2)`` it occupies (its boxes clip to it).
    """
    s2 = 2 * size
    xc, yc = center
    canvas = Image.new("RGB", (s2, s2), _PAD_RGB)
    maps, regions = [], []
    for i, im in enumerate(images):
        w, h = im.size
        # Image i touches the centre with its bottom-right, bottom-left, top-right, top-left corner.
        x0 = xc - w if i in (0, 2) else xc
        y0 = yc - h if i in (0, 1) else yc
        canvas.paste(im, (x0, y0))  # PIL clips at the canvas border
        maps.append(Affine(1.0, 1.0, float(x0), float(y0)))
        regions.append((max(x0, 0), max(y0, 0), min(x0 + w, s2), min(y0 + h, s2)))
    return canvas, maps, regions


MIN_SIDE = 2.0  # px: the smallest box side a training target keeps
MAX_ASPECT = 100.0  # the thinnest sliver a training target keeps


def filter_boxes(
    boxes: np.ndarray,
    full_area: np.ndarray,
    size: int,
    *,
    min_side: float = MIN_SIDE,
    min_visible: float = 0.1,
    max_aspect: float = MAX_ASPECT,
) -> tuple[np.ndarray, np.ndarray]:
    """Clip boxes to the ``size`` image and keep the usable ones.

    Args:
        boxes: ``(N, 4)`` mapped boxes, possibly outside the image.
        full_area: ``(N,)`` area of each whole object in output pixels.
        size: Image side.
        min_side: Drop boxes narrower or shorter than this (pixels).
        min_visible: Drop boxes whose visible area is below this fraction of
            ``full_area`` (mostly cropped-away objects).
        max_aspect: Drop slivers with a larger aspect ratio.

    Returns:
        ``(clipped boxes, keep mask)``.
    """
    b = np.clip(boxes, 0.0, float(size)).astype(np.float32)
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    keep = (w >= min_side) & (h >= min_side)
    keep &= w * h >= min_visible * np.maximum(full_area, 1e-9)
    keep &= np.maximum(w / np.maximum(h, 1e-9), h / np.maximum(w, 1e-9)) < max_aspect
    return b, keep


def dropped_at(samples: Sequence, size: int) -> tuple[int, int]:
    """``(dropped, total)``: how many of the ``samples``' boxes (each sample's ``boxes`` in
    pixels of its ``width`` x ``height`` image) :func:`filter_boxes` drops once each image
    is letterboxed to ``size``, i.e. under :data:`MIN_SIDE` px or thinner than
    :data:`MAX_ASPECT`:1. The training loader's own count varies with augmentation's zoom;
    this is the plain one, which counts what labels alone do not show (a 13 px object at
    640 is 1.3 px at 64)."""
    scaled = [
        np.asarray(s.boxes, np.float64).reshape(-1, 4) * (size / max(s.width, s.height))
        for s in samples
    ]
    b = np.concatenate(scaled) if scaled else np.zeros((0, 4))
    full = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])  # whole objects: the visible-share rule holds
    _, keep = filter_boxes(b, full, size)
    return int((~keep).sum()), len(b)


# RGB <-> YIQ: hue is an angle and saturation a radius in the IQ plane, so the
# HSV gains of YOLOv5 become one linear colour map (exact for Y, close for H/S).
_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_INV = np.linalg.inv(_YIQ)


def hsv_matrix(hue: float, sat: float, val: float) -> np.ndarray:
    """3x3 RGB matrix: rotate hue by ``hue`` turns in the YIQ plane, scale chroma by ``sat``
    and brightness by ``val``. An approximation of HSV jitter: HSV's hue moves by about
    ``hue`` turns, not exactly, and not always the same way (+0.1 moves pure red's by -0.136:
    audit47 train L3); the gains are drawn symmetric, so training does not mind."""
    c, s = math.cos(2 * math.pi * hue), math.sin(2 * math.pi * hue)
    mid = np.array([[1.0, 0.0, 0.0], [0.0, sat * c, -sat * s], [0.0, sat * s, sat * c]])
    return val * (_YIQ_INV @ mid @ _YIQ)


def apply_hsv(im: Image.Image, hue: float, sat: float, val: float) -> Image.Image:
    """Colour-jitter an RGB image with :func:`hsv_matrix` (values clip to 0..255)."""
    m = hsv_matrix(hue, sat, val)
    flat = tuple(float(v) for row in m for v in (*row, 0.0))
    return im.convert("RGB", flat)
