"""``data.yaml`` parsing: one :class:`DataConfig` for YOLO, COCO and VOC datasets.

The file follows the Ultralytics convention (``path``, ``train``, ``val``,
``names``) plus an optional ``format`` key:

.. code-block:: yaml

    path: .                     # dataset root; relative paths resolve against this file's folder
    train: images/train         # YOLO: image folder(s) or a .txt list of image paths
    val: images/val
    names: [circle, square]     # or {0: circle, 1: square}

    # format: coco              # then: train: annotations/instances_train.json
    #                           #       train_images: images/train   (val likewise)
    # format: voc               # then: train/val are VOC roots or ImageSets/Main/*.txt files

Keys Ultralytics files commonly carry (``download``, ``test``, ``nc`` ...) are
accepted; ``nc`` must agree with ``names``. ``kpt_shape: [k, 2 or 3]`` (a pose dataset) tells
the YOLO label reader that each line is ``cls cx cy w h`` and then ``k`` keypoints; their
values are read past, not used. Other unknown keys are logged.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yoloslim.configs import read_yaml
from yoloslim.errors import DataError, ModelError

__all__ = ["DataConfig", "SplitSource", "load_data_config", "FORMATS"]

logger = logging.getLogger(__name__)

FORMATS = ("yolo", "coco", "voc")
_KNOWN_KEYS = {
    "path", "train", "val", "names", "format", "nc", "test", "download",
    "train_images", "val_images", "test_images", "synth", "kpt_shape", "flip_idx",
    "license", "url", "roboflow", "channels",
}  # fmt: skip


@dataclass(frozen=True)
class SplitSource:
    """One source of samples for a split.

    Attributes:
        path: YOLO image folder or image-list ``.txt``; COCO ``instances.json``;
            VOC root folder or ``ImageSets`` list file.
        images: COCO only: the folder the json's ``file_name`` entries live in.
    """

    path: Path
    images: Path | None = None


@dataclass(frozen=True)
class DataConfig:
    """A parsed ``data.yaml``.

    Attributes:
        root: Dataset root; relative entries resolve against it.
        train: Sources of the training split.
        val: Sources of the validation split.
        names: Class names, index = class id.
        format: ``"yolo"``, ``"coco"`` or ``"voc"``.
        yaml_path: The file this config was read from.
        kpt_shape: ``(keypoints, values per keypoint)`` of a pose dataset, else None.
    """

    root: Path
    train: tuple[SplitSource, ...]
    val: tuple[SplitSource, ...]
    names: list[str]
    format: str
    yaml_path: Path
    kpt_shape: tuple[int, int] | None = None

    @property
    def nc(self) -> int:
        """Number of classes."""
        return len(self.names)


def _parse_names(raw: Any, where: str) -> list[str]:
    if isinstance(raw, dict):
        try:
            ids = sorted(int(k) for k in raw)
        except (TypeError, ValueError) as e:
            raise DataError(f"{where}: key 'names': dict keys must be integers") from e
        if ids != list(range(len(ids))):
            raise DataError(f"{where}: key 'names': ids must be 0..{len(ids) - 1}, got {ids}")
        by_id = {int(k): v for k, v in raw.items()}
        values = [by_id[i] for i in ids]
    elif isinstance(raw, (list, tuple)):
        values = list(raw)
    else:
        raise DataError(f"{where}: key 'names' must be a list or an {{id: name}} dict")
    if not values:
        raise DataError(f"{where}: key 'names' is empty")
    flags = [v for v in values if isinstance(v, bool)]
    if flags:  # YAML 1.1 reads yes/no/on/off/true/false unquoted as booleans
        raise DataError(
            f"{where}: key 'names': entry {flags[0]!r} is a YAML boolean (an unquoted yes, no, "
            'on, off, true or false); quote the name, e.g. "yes"'
        )
    bad = [v for v in values if not isinstance(v, (str, int)) or str(v).strip() == ""]
    if bad:
        raise DataError(f"{where}: key 'names' has invalid entries {bad!r}")
    names = [str(v) for v in values]
    if len(set(names)) != len(names):
        raise DataError(f"{where}: key 'names' has duplicates: {list(names)}")
    return names


def _parse_kpt_shape(raw: Any, where: str) -> tuple[int, int] | None:
    """``kpt_shape: [k, 2]`` (x, y) or ``[k, 3]`` (x, y, visibility), ``k >= 1``."""
    if raw is None:
        return None
    ok = (
        isinstance(raw, (list, tuple))
        and len(raw) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in raw)
        and raw[0] >= 1
        and raw[1] in (2, 3)
    )
    if not ok:
        raise DataError(
            f"{where}: key 'kpt_shape' must be [k, 2] or [k, 3] (k keypoints of x, y and an "
            f"optional visibility; k a positive integer), got {raw!r}"
        )
    return int(raw[0]), int(raw[1])


# (data.yaml, key) pairs whose Roboflow ../ fallback this process has warned about
_FELL_BACK: set[tuple[str, str]] = set()


def _expand(value: str | Path, where: str, key: str) -> Path:
    """``value`` with ``~`` expanded; a DataError naming the key for ``~nosuchuser`` (a raw
    RuntimeError's traceback before: review of audit49's fixes, F2)."""
    try:
        return Path(value).expanduser()
    except RuntimeError as e:
        raise DataError(f"{where}: key '{key}': {value}: {e}") from e


def windows_path(p: Path, root: Path) -> Path:
    """``images\\train\\a.jpg`` (an image list or data.yaml written on Windows) as
    ``images/train/a.jpg`` where only that one exists (relative to ``root``): on POSIX a
    backslash is part of a file name."""
    text = str(p)
    if os.sep == "\\" or "\\" not in text:
        return p
    slashed = Path(text.replace("\\", "/"))  # root / an absolute path is that path
    return slashed if not (root / p).exists() and (root / slashed).exists() else p


def _roboflow_beside(root: Path, value: str | Path) -> Path | None:
    """``root / x`` for a ``../x`` (``..\\x`` too) where that exists: Roboflow's YOLO export
    writes ``train: ../train/images`` beside the folders it names; None otherwise."""
    text = str(value).replace("\\", "/")
    return root / text[3:] if text.startswith("../") and (root / text[3:]).exists() else None


def _resolve(root: Path, value: Any, where: str, key: str, *, kind: str) -> Path:
    if not isinstance(value, (str, Path)) or str(value) == "":
        raise DataError(f"{where}: key '{key}' must be a path, got {value!r}")
    given = windows_path(_expand(value, where, key), root)
    p = given if given.is_absolute() else root / given
    beside = None if p.exists() else _roboflow_beside(root, value)
    if beside is not None:
        if (where, key) not in _FELL_BACK:  # once per file and key, not on every load
            _FELL_BACK.add((where, key))
            logger.warning("%s: key '%s': %s does not exist; using %s", where, key, p, beside)
        p = beside
    # a relative path is the data.yaml's folder's (Ultralytics takes the working folder's)
    how = "" if given.is_absolute() else f" ({value} relative to {root})"
    if kind == "dir" and not p.is_dir():
        what = "is a file, not a folder" if p.exists() else "does not exist"  # audit49 data F5
        raise DataError(f"{where}: key '{key}': folder {p} {what}{how}")
    if kind == "file" and not p.is_file():
        what = "is a folder, not a file" if p.exists() else "does not exist"
        raise DataError(f"{where}: key '{key}': file {p} {what}{how}")
    if kind == "any" and not p.exists():
        raise DataError(f"{where}: key '{key}': path {p} does not exist{how}")
    return p


def _coco_json(root: Path, value: Any, where: str, key: str) -> Path:
    """A COCO split's annotation file; an image folder there (the YOLO layout's habit) is
    named as such, not as a file that does not exist."""
    p = _resolve(root, value, where, key, kind="any")
    if p.is_dir():
        raise DataError(
            f"{where}: key '{key}': {p} is a folder; format: coco needs the annotation json "
            f"file here (e.g. annotations/instances_{key}.json) and the image folder under "
            f"'{key}_images'"
        )
    return p


def _split(
    data: dict[str, Any], root: Path, fmt: str, key: str, where: str
) -> tuple[SplitSource, ...]:
    if key not in data or data[key] in (None, "", []):
        raise DataError(f"{where}: missing required key '{key}'")
    raw = data[key]
    entries = raw if isinstance(raw, (list, tuple)) else [raw]
    if fmt == "coco":
        img_key = f"{key}_images"
        if img_key not in data:
            raise DataError(f"{where}: missing required key '{img_key}' (needed by format: coco)")
        raw_imgs = data[img_key]
        imgs = raw_imgs if isinstance(raw_imgs, (list, tuple)) else [raw_imgs]
        if len(imgs) != len(entries):
            raise DataError(
                f"{where}: key '{img_key}' has {len(imgs)} entries but '{key}' has {len(entries)}"
            )
        return tuple(
            SplitSource(
                _coco_json(root, e, where, key),
                _resolve(root, i, where, img_key, kind="dir"),
            )
            for e, i in zip(entries, imgs, strict=True)
        )
    return tuple(SplitSource(_resolve(root, e, where, key, kind="any")) for e in entries)


def _warn_missing_test(test: Any, root: Path, where: str) -> None:
    """A warning for each ``test`` path that does not exist (accepted without a word, as no
    command reads the test split; a typo there surfaces later, in another tool)."""
    entries = test if isinstance(test, list) else [test]
    for entry in entries:
        if not (isinstance(entry, str) and entry.strip()):
            continue
        # ~ first, and Windows' backslashes, as train's and val's (audit49 F3, audit51 review F2)
        p = root / windows_path(_expand(entry, where, "test"), root)
        # Roboflow's ../test/images, as train's (review2 N3)
        if not p.exists() and _roboflow_beside(root, entry) is None:
            logger.warning(
                "%s: key 'test': %s does not exist (yoloslim reads train and val only)", where, p
            )


def load_data_config(path: str | Path) -> DataConfig:
    """Read and validate a ``data.yaml``.

    Args:
        path: The yaml file.

    Returns:
        The parsed config with every train and val path resolved and checked to exist
        (a ``test`` path, which no command reads, is warned about when it does not).

    Raises:
        DataError: ``path`` is not a path, the file is missing or malformed (or a folder), a required key is missing, a
            path does not exist, or ``nc`` disagrees with ``names``. The message
            names the file and the key.

    Example:
        >>> cfg = load_data_config("datasets/shapes/data.yaml")  # doctest: +SKIP
        >>> cfg.nc, cfg.format  # doctest: +SKIP
        (4, 'yolo')
    """
    if not isinstance(path, (str, os.PathLike)):
        raise DataError(f"data={path!r}: expected the path of a data.yaml")
    yaml_path = Path(path).expanduser()
    where = str(yaml_path)
    if yaml_path.is_dir():
        inside = yaml_path / "data.yaml"
        hint = f" (pass {inside})" if inside.is_file() else ""
        raise DataError(f"{where}: expected a data.yaml file, got a folder{hint}")
    if not yaml_path.is_file():
        raise DataError(f"{where}: data.yaml not found")
    data = read_yaml(yaml_path, DataError, "data config")
    if not isinstance(data, dict):
        raise DataError(f"{where}: expected a mapping at top level, got {type(data).__name__}")
    unknown = sorted(str(k) for k in data if k not in _KNOWN_KEYS)
    if unknown:
        logger.warning("%s: ignoring unknown keys %s", where, unknown)

    fmt = str(data.get("format", "yolo")).lower()
    if fmt not in FORMATS:
        raise DataError(f"{where}: key 'format' must be one of {FORMATS}, got {fmt!r}")
    if "names" not in data:
        raise DataError(f"{where}: missing required key 'names'")
    names = _parse_names(data["names"], where)
    if "nc" in data and data["nc"] is not None:
        raw_nc = data["nc"]
        try:
            if isinstance(raw_nc, bool) or (isinstance(raw_nc, float) and not raw_nc.is_integer()):
                raise ValueError(raw_nc)
            nc = int(raw_nc)
        except (TypeError, ValueError) as e:
            raise DataError(f"{where}: key 'nc' must be an integer, got {raw_nc!r}") from e
        if nc != len(names):
            raise DataError(f"{where}: key 'nc' is {nc} but 'names' has {len(names)} entries")

    # the real file's folder: a data.yaml linked from elsewhere still means its own dataset
    base = yaml_path.resolve().parent
    given = data.get("path")  # absent or blank (a template's "path:  # root"): the yaml's folder
    root = base if given in (None, "") else _resolve(base, given, where, "path", kind="dir")
    _warn_missing_test(data.get("test"), root, where)
    return DataConfig(
        root=root,
        train=_split(data, root, fmt, "train", where),
        val=_split(data, root, fmt, "val", where),
        names=names,
        format=fmt,
        yaml_path=yaml_path,
        kpt_shape=_parse_kpt_shape(data.get("kpt_shape"), where),
    )


def check_class_count(nc: int, what: str, data: str | Path | DataConfig) -> None:
    """ModelError when a model of ``nc`` classes (``what`` names it in the message) meets a
    dataset of another class count: its mAP would be meaningless, and the mismatch otherwise
    surfaces only after the work (calibrating, fine-tuning) is done. ``data``: a data.yaml
    (DataError when it does not load) or one already read. The one check prune, quantize,
    compress, bench and val make before any work."""
    cfg = data if isinstance(data, DataConfig) else load_data_config(data)
    n = len(cfg.names)
    if nc != n:
        shown = cfg.yaml_path if isinstance(data, DataConfig) else data
        raise ModelError(f"{what} has {nc} classes but {shown} has {n}")
