"""Draw detections on an image (PIL), one colour per class."""

from __future__ import annotations

import colorsys

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["draw_detections", "class_colour"]


def class_colour(c: int) -> tuple[int, int, int]:
    h = (c * 0.618033988749895) % 1.0  # golden-ratio hue steps keep neighbours apart
    r, g, b = colorsys.hsv_to_rgb(h, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def draw_detections(image: np.ndarray, dets) -> Image.Image:
    """A copy of ``image`` (HxWx3 RGB) with boxes and ``name score`` labels."""
    im = Image.fromarray(image).copy()
    draw = ImageDraw.Draw(im)
    width = max(1, round(max(im.size) / 320))
    for box, score, c in zip(dets.boxes, dets.scores, dets.classes, strict=True):
        colour = class_colour(int(c))
        x1, y1, x2, y2 = (float(v) for v in box)
        draw.rectangle([x1, y1, x2, y2], outline=colour, width=width)
        name = dets.names[int(c)] if int(c) < len(dets.names) else str(int(c))
        label = f"{name} {score:.2f}"
        tw = draw.textlength(label)
        ty = max(0.0, y1 - 11)
        draw.rectangle([x1, ty, x1 + tw + 4, ty + 11], fill=colour)
        draw.text((x1 + 2, ty), label, fill=(0, 0, 0))
    return im
