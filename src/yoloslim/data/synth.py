"""Synthetic shapes dataset: learnable, deterministic, written as YOLO + COCO.

Each image is a textured background (two-colour gradient, low-frequency blobs,
a few thin lines) with 1-8 filled shapes drawn by ``PIL.ImageDraw`` and a little
pixel noise on top. Shapes contrast with the background under them, are at
least ~65% visible (occlusion is limited with box overlaps), and every label is
the tight box of the drawn pixels. Image ``i`` only depends on ``(seed, i)``.
"""

from __future__ import annotations

import io
import json
import logging
import math
import numbers
import re
import shutil
from pathlib import Path

import numpy as np
import yaml
from PIL import Image, ImageDraw

from yoloslim.configs import MAX_IMGSZ, check_path, int_problem
from yoloslim.errors import ConfigError
from yoloslim.fileio import atomic_write_bytes, atomic_write_text, folder_lock

__all__ = ["SHAPES", "synthesize"]

logger = logging.getLogger(__name__)

SHAPES = ("circle", "square", "triangle", "star", "cross", "hexagon", "ring", "diamond")
_SUFFIX = ".jpg"
_MAX_COVER = 0.35  # an object's box may be covered by later boxes up to this fraction


def _regular(n: int, start_deg: float, radii: tuple[float, ...] = (1.0,)) -> np.ndarray:
    k = np.arange(n * len(radii))
    ang = np.deg2rad(start_deg) + k * 2 * math.pi / (n * len(radii))
    r = np.array(radii)[k % len(radii)]
    return np.stack([r * np.cos(ang), r * np.sin(ang)], 1)


_T = 0.34  # half thickness of the cross arms
_POLYGONS = {
    "square": np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], float),
    "diamond": np.array([[0, -1], [1, 0], [0, 1], [-1, 0]], float),
    "triangle": _regular(3, -90),
    "hexagon": _regular(6, 0),
    "star": _regular(5, -90, (1.0, 0.42)),
    "cross": np.array(
        [
            [-_T, -1],
            [_T, -1],
            [_T, -_T],
            [1, -_T],
            [1, _T],
            [_T, _T],
            [_T, 1],
            [-_T, 1],
            [-_T, _T],
            [-1, _T],
            [-1, -_T],
            [-_T, -_T],
        ],
        float,
    ),  # fmt: skip
}
# Squares and diamonds would become each other under free rotation.
_MAX_ROTATION = {"square": 10.0, "diamond": 10.0, "circle": 0.0, "ring": 0.0}


def _shape_mask(name: str, w: float, h: float, angle: float) -> Image.Image:
    """A tight ``L`` mask of one shape with half-extents ``w, h``, rotated ``angle`` degrees."""
    side = math.ceil(2 * max(w, h) * 1.5) + 4
    mask = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(mask)
    c = side / 2
    if name in ("circle", "ring"):
        draw.ellipse((c - w, c - h, c + w, c + h), fill=255)
        if name == "ring":
            draw.ellipse((c - 0.55 * w, c - 0.55 * h, c + 0.55 * w, c + 0.55 * h), fill=0)
    else:
        pts = _POLYGONS[name] * (w, h)
        t = math.radians(angle)
        rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
        pts = pts @ rot.T + c
        draw.polygon([tuple(p) for p in pts.tolist()], fill=255)
    box = mask.getbbox()
    assert box is not None
    return mask.crop(box)


def _background(rng: np.random.Generator, size: int) -> Image.Image:
    # Gradient and blobs are smooth, so build them on a coarse grid and upsample once.
    cells = int(rng.integers(3, 9))
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    theta = rng.uniform(0, 2 * math.pi)
    g = np.linspace(-0.5, 0.5, cells)
    t = (g[None, :] * math.cos(theta) + g[:, None] * math.sin(theta)) / 1.42 + 0.5
    grid = c0 * (1 - t[..., None]) + c1 * t[..., None]
    grid += rng.normal(0, rng.uniform(10, 35), (cells, cells, 3))
    small = Image.fromarray(np.clip(grid, 0, 255).astype(np.uint8))
    im = small.resize((size, size), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(0, 6))):
        xy = rng.uniform(0, size, 4).tolist()
        col = tuple(int(v) for v in rng.integers(0, 256, 3))
        draw.line(xy, fill=col, width=int(rng.integers(1, 3)))
    return im


def _pick_colour(rng: np.random.Generator, under: np.ndarray) -> tuple[int, int, int]:
    """A random colour far from ``under`` (mean RGB of the background it covers)."""
    luma = np.array([0.299, 0.587, 0.114])
    for _ in range(20):
        col = rng.integers(0, 256, 3)
        if np.linalg.norm(col - under) > 110 and abs(luma @ (col - under)) > 35:
            return tuple(int(v) for v in col)
    return tuple(
        int(v) for v in np.where(under > 127, rng.integers(0, 50, 3), rng.integers(205, 256, 3))
    )


def _render(
    seed: int, index: int, size: int, classes: int
) -> tuple[Image.Image, list[tuple[int, list[int]]]]:
    """Image ``index`` and its ``[(class, [x1, y1, x2, y2])]`` labels."""
    rng = np.random.default_rng([seed, index])
    im = _background(rng, size)
    boxes: list[list[int]] = []
    cover: list[float] = []
    labels = []
    lo, hi = math.log(max(0.04 * size, 8.0)), math.log(0.6 * size)
    for _ in range(int(rng.integers(1, 9))):
        c = int(rng.integers(classes))
        name = SHAPES[c]
        # Half log-uniform, half uniform: about a fifth of the objects are under
        # 10% of the image, so small ones are present without dominating mAP.
        u = rng.uniform(lo, hi)
        side = (
            math.exp(u)
            if rng.random() < 0.5
            else math.exp(lo) + (u - lo) / (hi - lo) * (math.exp(hi) - math.exp(lo))
        )
        aspect = math.sqrt(rng.uniform(0.8, 1.25))
        max_rot = _MAX_ROTATION.get(name, 180.0)
        mask = _shape_mask(
            name, side / 2 * aspect, side / 2 / aspect, rng.uniform(-max_rot, max_rot)
        )
        mw, mh = mask.size
        if mw >= size or mh >= size:
            continue
        for _attempt in range(15):
            x, y = int(rng.integers(0, size - mw + 1)), int(rng.integers(0, size - mh + 1))
            new = [x, y, x + mw, y + mh]
            inter = [_intersection(new, b) / ((b[2] - b[0]) * (b[3] - b[1])) for b in boxes]
            if all(cv + f <= _MAX_COVER for cv, f in zip(cover, inter, strict=True)):
                break
        else:
            continue
        cover = [cv + f for cv, f in zip(cover, inter, strict=True)]
        under = np.asarray(im.crop(new), np.float32).reshape(-1, 3).mean(0)
        im.paste(_pick_colour(rng, under), (x, y, x + mw, y + mh), mask)
        boxes.append(new)
        cover.append(0.0)
        labels.append((c, new))
    noise = rng.standard_normal((size, size, 3), dtype=np.float32) * rng.uniform(2, 6)
    arr = np.asarray(im, np.float32) + noise
    return Image.fromarray(np.clip(arr, 0, 255, out=arr).astype(np.uint8)), labels


def _intersection(a: list[int], b: list[int]) -> float:
    return max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))


def _check_args(images: int, imgsz: int, classes: int, val_fraction: float, seed: int) -> None:
    for name, value, low, high in (
        ("images", images, 2, None), ("imgsz", imgsz, 32, MAX_IMGSZ),
        ("classes", classes, 1, len(SHAPES)), ("seed", seed, 0, 2**32 - 1),
    ):  # fmt: skip
        problem = int_problem(value, low, high)
        if problem:
            raise ConfigError(f"{name}={value!r} {problem}")
    if (
        isinstance(val_fraction, bool)
        or not isinstance(val_fraction, numbers.Real)
        or not 0.0 < val_fraction < 1.0
    ):
        raise ConfigError(f"val_fraction={val_fraction!r} must be a number in (0, 1)")


# in the folder while a dataset is being written: a rerun after an interrupted one knows the
# partial dataset (no data.yaml yet) for its own and replaces it
_WRITING = ".yoloslim-synth-writing"


def _prepare(out: Path) -> None:
    """Make ``out`` ready: empty, new, or an earlier (or interrupted) synthetic dataset
    (replaced)."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        meta = out / "data.yaml"
        try:
            loaded = yaml.safe_load(meta.read_text()) if meta.is_file() else None
        except (yaml.YAMLError, UnicodeDecodeError):
            loaded = None
        ours = isinstance(loaded, dict) and "synth" in loaded
        partial = (out / _WRITING).is_file()
        if not (ours or partial):
            raise ConfigError(f"out {out} is not empty and not a yoloslim synthetic dataset")
        _check_only_ours(out)
        what = (
            "an interrupted synthetic dataset" if partial and not ours else "the synthetic dataset"
        )
        logger.warning("replacing %s in %s", what, out)
        for sub in ("images", "labels", "annotations"):
            if (out / sub).exists():
                shutil.rmtree(out / sub)
        meta.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / _WRITING, "a yoloslim synthetic dataset is being written here\n")


# what a synthetic dataset holds under its three folders (the rest of ``out`` is left alone)
_OURS = re.compile(
    r"(images/(train|val)(/\d{6,}\.jpg)?|labels/(train|val)(/\d{6,}\.txt)?"
    r"|annotations(/instances_(train|val)\.json)?|images|labels"
    # the temp file a killed run (SIGKILL) left of one of those (fileio.atomic_file's)
    r"|(images|labels)/(train|val)/\.\d{6,}\.(jpg|txt)\.\w+\.tmp"
    r"|annotations/\.instances_(train|val)\.json\.\w+\.tmp)"
)


def _check_only_ours(out: Path) -> None:
    """ConfigError unless ``images``, ``labels`` and ``annotations`` in ``out`` hold only what
    a synthetic dataset writes: a link there (to the user's photos, say) would have the new
    images written through it, and a file the user added (``images/test/mine.jpg``) would be
    deleted with the old dataset."""
    for sub in ("images", "labels", "annotations"):
        top = out / sub
        if top.is_symlink() or (top.exists() and not top.is_dir()):
            raise ConfigError(
                f"out {out}: {top} is a link or a file, not the synthetic dataset's folder; "
                "move it away or choose another folder"
            )
        if not top.exists():
            continue
        for path in sorted(top.rglob("*")):
            name = path.relative_to(out).as_posix()
            if path.is_symlink() or not _OURS.fullmatch(name):
                raise ConfigError(
                    f"out {out}: {path} is not part of the synthetic dataset, which is "
                    "replaced with its folders (a hidden or system file such as .DS_Store "
                    "counts too: nothing synth did not write is deleted); move it away or "
                    "choose another folder"
                )


def synthesize(
    out: str | Path,
    *,
    images: int = 1000,
    imgsz: int = 320,
    classes: int = 4,
    seed: int = 0,
    val_fraction: float = 0.2,
) -> Path:
    """Write a synthetic shapes dataset (YOLO labels + COCO json + ``data.yaml``).

    Args:
        out: Output folder: new, empty, or an earlier synthetic dataset (replaced);
            ``~`` is expanded. It will hold ``data.yaml``, so it is not a ``.yaml`` path.
        images: Total images (train + val), at least 2.
        imgsz: Image side in pixels (square images), at least 32.
        classes: Number of shape classes, 1..8 (the first of :data:`SHAPES`).
        seed: Same seed, same files (byte for byte); in [0, 2**32), as every seed of
            yoloslim (numpy folds a larger one onto a smaller seed's images).
        val_fraction: Share of images in the val split (at least one each).

    Returns:
        Path of the written ``data.yaml``.

    Raises:
        ConfigError: An argument is out of range, ``out`` ends in ``.yaml``/``.yml``,
            or ``out`` holds other data (a file under its ``images``, ``labels`` or
            ``annotations`` that a synthetic dataset does not write, or a link there).

    Example:
        >>> yaml_path = synthesize("datasets/shapes", images=200, imgsz=128)  # doctest: +SKIP
    """
    _check_args(images, imgsz, classes, val_fraction, seed)
    images, imgsz, classes, seed = int(images), int(imgsz), int(classes), int(seed)
    val_fraction = float(val_fraction)
    check_path(out, "out", "the dataset folder's path")
    out = Path(out).expanduser()
    if out.suffix.lower() in (".yaml", ".yml"):
        hint = f"; pass {out.parent} instead" if out.stem.lower() == "data" else ""
        raise ConfigError(f"out is the dataset folder (it will hold data.yaml); got {out}{hint}")
    with folder_lock(out, "data synth"):  # a second synth into it would delete this one's
        _prepare(out)
        n_val = min(max(1, round(images * val_fraction)), images - 1)
        names = list(SHAPES[:classes])
        splits = {"train": range(images - n_val), "val": range(images - n_val, images)}
        for split, indices in splits.items():
            for sub in ("images", "labels"):
                (out / sub / split).mkdir(parents=True, exist_ok=True)
            (out / "annotations").mkdir(exist_ok=True)
            coco: dict = {"images": [], "annotations": [], "categories": []}
            coco["categories"] = [
                {"id": k + 1, "name": n, "supercategory": "shape"} for k, n in enumerate(names)
            ]
            for image_id, i in enumerate(indices):
                im, labels = _render(seed, i, imgsz, classes)
                stem = f"{i:06d}"
                jpeg = io.BytesIO()  # Pillow's own file writes cut a refused image short
                im.save(jpeg, format="JPEG", quality=95, subsampling=0)  # without a word
                atomic_write_bytes(out / "images" / split / f"{stem}{_SUFFIX}", jpeg.getvalue())
                rows = []
                for c, (x1, y1, x2, y2) in labels:
                    cx, cy = (x1 + x2) / 2 / imgsz, (y1 + y2) / 2 / imgsz
                    rows.append(
                        f"{c} {cx:.6f} {cy:.6f} {(x2 - x1) / imgsz:.6f} {(y2 - y1) / imgsz:.6f}\n"
                    )
                    coco["annotations"].append(
                        {
                            "id": len(coco["annotations"]) + 1,
                            "image_id": image_id,
                            "category_id": c + 1,
                            "bbox": [x1, y1, x2 - x1, y2 - y1],
                            "area": (x2 - x1) * (y2 - y1),
                            "iscrowd": 0,
                        }
                    )
                atomic_write_text(out / "labels" / split / f"{stem}.txt", "".join(rows))
                coco["images"].append(
                    {
                        "id": image_id,
                        "file_name": f"{stem}{_SUFFIX}",
                        "width": imgsz,
                        "height": imgsz,
                    }
                )
            atomic_write_text(out / "annotations" / f"instances_{split}.json", json.dumps(coco))
        meta = {
            "path": ".",
            "train": "images/train",
            "val": "images/val",
            "names": names,
            "nc": classes,
            "synth": {
                "images": images,
                "imgsz": imgsz,
                "classes": classes,
                "seed": seed,
                "val_fraction": val_fraction,
            },
        }
        yaml_path = out / "data.yaml"
        atomic_write_text(yaml_path, yaml.safe_dump(meta, sort_keys=False))
        (out / _WRITING).unlink()
    logger.info("wrote %d train + %d val images to %s", images - n_val, n_val, out)
    return yaml_path
