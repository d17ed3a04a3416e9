"""Checkpoints: plain dicts that load with ``torch.load(weights_only=True)``.

Format (``"format": "yoloslim/1"``)::

    {"format", "arch" (with per-layer channel counts), "state_dict", "names",
     "imgsz", "meta", optional "train_state"}

Writes are atomic (temp file in the same folder, then ``os.replace``), so an
interrupted save never leaves a truncated checkpoint behind.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import torch
from torch import nn

from yoloslim.configs import check_flags, check_imgsz
from yoloslim.errors import ConfigError, ModelError
from yoloslim.fileio import atomic_file, did_you_mean
from yoloslim.models.arch import arch_of
from yoloslim.models.blocks import is_fused
from yoloslim.models.detector import Detector
from yoloslim.models.registry import EXPORTED, build_model
from yoloslim.torch_state import keeps_caller_state

__all__ = [
    "FORMAT",
    "atomic_save",
    "load_checkpoint",
    "read_checkpoint",
    "save_checkpoint",
    "weights_digest",
]

FORMAT = "yoloslim/1"


def _yoloslim_version() -> str:
    from yoloslim import __version__ as version

    return version


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temp file beside ``path`` and rename it into place
    (:func:`~yoloslim.fileio.atomic_file`)."""
    path = Path(path)
    try:
        with atomic_file(path) as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
    except RuntimeError as e:
        # torch's zip writer words a refused write "unexpected pos", the OSError (a full
        # disk, a file-size limit) in its context
        refused = _os_error_in(e)
        if refused is not None:
            raise OSError(refused.errno, refused.strerror, str(path)) from e
        if _disk_full(path.parent):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from e
        raise
    return path


def _disk_full(folder: Path) -> bool:
    """Whether ``folder``'s file system has (next to) no space left."""
    try:
        return shutil.disk_usage(folder).free < 1 << 20
    except OSError:
        return False


def _os_error_in(e: BaseException) -> OSError | None:
    """The first ``OSError`` with an errno in ``e``'s chain of causes and contexts."""
    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno is not None:
            return e
        e = e.__cause__ or e.__context__
    return None


def _is_torch_file(path: Path) -> bool:
    """Whether ``path`` is as ``torch.save`` writes: a zip archive (torch >= 1.6) with a
    ``data.pkl`` and no TorchScript ``code/`` (an exported ``.torchscript``, a numpy
    ``.npz`` or another zip is not one: audit44 models F4), or a pickle (the legacy
    format); an empty file or a zip cut short (a failed write) counts as one."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return True  # not readable: the write says what is wrong
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError):
            return True
        parts = [n.split("/") for n in names]
        pickled = any(p[-1] == "data.pkl" for p in parts)
        # TorchScript's ROOT/code/...; the root itself is named after the file (code.pt)
        return pickled and not any("code" in p[1:-1] for p in parts)
    return not head or head[:1] == b"\x80"


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    *,
    imgsz: int,
    meta: dict | None = None,
    train_state: dict | None = None,
) -> Path:
    """Save a built-in detector (training form) as a yoloslim checkpoint.

    Args:
        path: The checkpoint file to write (its folder is created); an existing
            checkpoint is replaced atomically.
        model: A built-in detector in training form (a ``DistributedDataParallel``
            wrapper is unwrapped); its architecture, weights and class names are saved.
        imgsz: The input size the model was trained at, a multiple of 32;
            :func:`load_checkpoint` sets ``model.imgsz`` from it, and ``validate`` and
            ``prune`` default to it.
        meta: Free-form JSON-like details stored as ``"meta"`` (epoch, mAP, stage, ...).
        train_state: What ``train(..., resume=True)`` needs to carry on (epoch, config,
            optimizer, EMA, ...); ``last.pt`` holds it, ``best.pt`` does not.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ModelError: ``model`` is in deploy form (after ``fuse()``), or ``path`` is a
            folder.
        ConfigError: ``imgsz`` is not a multiple of 32 (at least 32), or ``path`` is an
            existing file that is no torch checkpoint (it is not replaced).

    Example:
        >>> save_checkpoint("runs/mine/model.pt", model, imgsz=320)  # doctest: +SKIP
    """
    if isinstance(path, nn.Module) and isinstance(model, (str, os.PathLike)):
        raise ConfigError(
            f"save_checkpoint({type(path).__name__}, {str(model)!r}): the file comes first, "
            f"as in save_checkpoint({str(model)!r}, model, imgsz=...)"
        )
    if not isinstance(path, (str, os.PathLike)):
        raise ConfigError(f"save_checkpoint: path={path!r} is no file path")
    if not isinstance(model, nn.Module):
        raise ModelError(f"save_checkpoint: model is a {type(model).__name__}, not a torch model")
    if is_fused(model):
        raise ModelError(
            "cannot checkpoint a re-parameterised (deploy-form) model; save before fuse()"
        )
    if imgsz is None:  # int(None) was a TypeError
        raise ConfigError("imgsz=None: a checkpoint records the size the model was trained at")
    check_imgsz(imgsz)
    path = Path(path).expanduser()
    if path.is_dir():
        raise ModelError(
            f"save_checkpoint: {path} is a folder; give a file path such as "
            f"{Path(path) / 'model.pt'}"
        )
    if path.is_file() and not _is_torch_file(path):
        # a swapped or mistyped path replaced a data.yaml or an exported model
        raise ConfigError(
            f"save_checkpoint: {path} exists and is no torch checkpoint (a config, an "
            "artifact?); it is not replaced: give another path, or remove it first"
        )
    if meta is not None and not isinstance(meta, Mapping):
        raise ConfigError(f"meta={meta!r}: expected a mapping of details (epoch, mAP, ...)")
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    ckpt = {
        "format": FORMAT,
        "arch": arch_of(model),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "names": _loadable(list(model.names), "model.names"),
        "imgsz": int(imgsz),
        "meta": _loadable({**dict(meta or {}), "yoloslim_version": _yoloslim_version()}, "meta"),
    }
    if train_state is not None:
        ckpt["train_state"] = _loadable(train_state, "train_state")
    return atomic_save(ckpt, path)


_PLAIN = (bool, int, float, str, type(None))


def _loadable(value: Any, where: str) -> Any:
    """``value`` in the types ``torch.load(weights_only=True)`` reads back: numpy scalars
    (a metric from ``np.mean``, a name from an array) become Python's, a path its string;
    ConfigError naming the entry for anything else (it was saved, then refused on load as
    "pickled Python objects", and the write had replaced a good checkpoint)."""
    if type(value) in _PLAIN or isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, str | PurePath):
        return str(value)
    if isinstance(value, Mapping):
        return {_loadable(k, where): _loadable(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, list | tuple):
        items = [_loadable(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, float | int):  # an enum's or another subclass's value
        return (float if isinstance(value, float) else int)(value)
    raise ConfigError(
        f"{where}: a {type(value).__name__} cannot be stored in a checkpoint (it must load "
        "with torch.load(weights_only=True): numbers, strings, lists, dicts and tensors)"
    )


OTHER_TOOLS = (
    "; yoloslim works on the detectors it builds: a model another tool saved (Ultralytics, "
    "for one) is not supported"
)
"""The end of the error for a file another tool may have made."""


def _is_data_yaml(p: Path) -> bool:
    """Whether the YAML file ``p`` looks like a dataset's data.yaml (a mapping with train,
    val or names keys, which no architecture file has), for an error that names it so."""
    import yaml

    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and bool({"train", "val", "names"} & set(data))


def _why_unloadable(p: Path, e: Exception) -> str:
    """One short clause for why ``torch.load`` refused a file (torch's own text is long)."""
    import pickle
    import zipfile

    if not zipfile.is_zipfile(p):  # torch.save always writes a zip archive
        return "not a PyTorch zip archive: another kind of file, or truncated"
    if isinstance(e, pickle.UnpicklingError):
        return f"it holds pickled Python objects, which yoloslim never loads{OTHER_TOOLS}"
    if isinstance(e, RuntimeError) and "inline_container" in str(e):  # a zip, not torch's
        return "a zip archive, but not one torch.save wrote"
    if isinstance(e, RuntimeError) and "TorchScript archive" in str(e):  # torch's text was
        # of its 2.6 defaults (audit50 chain F3)
        return (
            "a TorchScript file (yoloslim export's model.torchscript, renamed?): give the "
            "checkpoint it was exported from"
        )
    text = str(e).splitlines()[0][:160] if str(e) else ""
    return f"{type(e).__name__}: {text}"


def read_checkpoint(path: str | Path, *, mmap: bool = False) -> dict:
    """Load and validate a checkpoint dict (weights only, no pickled classes).

    ``mmap=True`` maps the file instead of reading it: tensors nobody touches (a ``last.pt``'s
    optimizer and EMA state, when only the model is wanted) never take memory.
    """
    if not isinstance(path, (str, os.PathLike)):  # a Detector: a TypeError in Path()
        raise ModelError(
            f"path={type(path).__name__}: expected a checkpoint file's path (a model in memory "
            "needs no loading)"
        )
    check_flags(mmap=mmap)  # "yes" was taken as True, as every other flag is not
    p = Path(path).expanduser()
    if p.is_dir():
        hint = did_you_mean(p, ("best.pt", "pruned.pt", "last.pt"))
        raise ModelError(f"{p}: is a folder, not a checkpoint file{hint}")
    if not p.is_file():
        raise ModelError(f"{p}: checkpoint file does not exist")
    if p.suffix.lower() in EXPORTED:
        raise ModelError(
            f"{p}: is an exported artifact; this takes a yoloslim .pt checkpoint "
            "(best.pt, last.pt, pruned.pt)"
        )
    if p.suffix.lower() in (".yaml", ".yml"):
        if _is_data_yaml(p):
            raise ModelError(
                f"{p}: is a dataset's data.yaml (it has train/val/names keys), not a model; "
                "this takes a trained .pt checkpoint (best.pt, last.pt, pruned.pt)"
            )
        raise ModelError(
            f"{p}: is an architecture file (untrained weights); this takes a trained .pt "
            f"checkpoint: train it first (yoloslim train --model {p} --data data.yaml)"
        )
    try:
        with warnings.catch_warnings():  # torch's note on a plain pickle's protocol: ours follows
            warnings.simplefilter("ignore", UserWarning)
            ckpt = torch.load(p, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:  # noqa: BLE001 - torch raises many types for a bad file
        raise ModelError(f"{p}: not a yoloslim checkpoint ({_why_unloadable(p, e)})") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        fmt = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        hint = ""
        if str(fmt).startswith("yoloslim-pruned-module/"):  # prune() of a module, no Detector
            hint = "; it is a pruned module's record: yoloslim.compress.prune.restore_pruned(model, path)"
        elif fmt is None:
            hint = OTHER_TOOLS
        elif str(fmt).startswith("yoloslim/"):  # a later version's format
            written = (ckpt.get("meta") or {}).get("yoloslim_version", "a newer version")
            raise ModelError(
                f"{p}: a yoloslim checkpoint of format {fmt!r}, written by yoloslim {written}; "
                f"this yoloslim ({_yoloslim_version()}) reads {FORMAT!r}: upgrade yoloslim to load it"
            )
        raise ModelError(
            f"{p}: not a yoloslim checkpoint (format={fmt!r}, expected {FORMAT!r}){hint}"
        )
    for key in ("arch", "state_dict", "names", "imgsz"):
        if key not in ckpt:
            raise ModelError(f"{p}: checkpoint lacks the key {key!r}")
    damaged = _failed_crc(p)
    if damaged:  # torch.load never checks: a flipped bit loaded as another weight
        raise ModelError(
            f"{p}: damaged: its record {damaged} fails its CRC check (changed on disk or in a "
            "copy since it was written); use another copy, or the run's other checkpoint"
        )
    _check_types(p, ckpt)
    return ckpt


def _failed_crc(p: Path) -> str | None:
    """The first record of checkpoint zip ``p`` whose data fails the CRC-32 the zip holds
    for it (None: all pass). Reads the whole file: 30 ms for a 7 MB best.pt (audit44 models
    F6: a bit-flipped checkpoint loaded with a changed weight)."""
    if not zipfile.is_zipfile(p):  # torch's legacy format: no CRCs to check
        return None
    try:
        with zipfile.ZipFile(p) as z:
            return z.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as e:  # torch.load read it: cut since?
        return f"(the zip: {type(e).__name__}: {e})"


def _check_types(p: Path, ckpt: dict) -> None:
    """ModelError naming the file for a damaged checkpoint's key of the wrong kind (they
    otherwise fail later, in words that name neither the file nor the key)."""
    from yoloslim.models.registry import list_models

    names, imgsz, arch = ckpt["names"], ckpt["imgsz"], ckpt["arch"]
    meta = ckpt.get("meta")
    history = meta.get("history") if isinstance(meta, dict) else None
    problem = None
    if not isinstance(arch, (dict, str)):
        problem = f"arch is {type(arch).__name__}, not a mapping"
    elif isinstance(arch, str) and arch not in list_models():  # a name; never a file to read
        problem = f"arch={arch!r} is not a mapping nor a registered model's name"
    elif meta is not None and not isinstance(meta, dict):
        problem = f"meta is {type(meta).__name__}, not a mapping"
    elif history is not None and not (
        isinstance(history, list) and all(isinstance(h, dict) for h in history)
    ):
        problem = "meta.history is not a list of steps (mappings)"
    elif not isinstance(ckpt["state_dict"], dict):
        problem = f"state_dict is {type(ckpt['state_dict']).__name__}, not a mapping"
    elif not isinstance(names, list):  # of class names (save_checkpoint keeps ints as given)
        problem = f"names={names!r} is not a list of class names"
    elif isinstance(arch, dict) and arch.get("nc") not in (None, len(names)):
        problem = f"names has {len(names)} entries but its arch has nc={arch.get('nc')}"
    elif isinstance(imgsz, bool) or not isinstance(imgsz, int) or imgsz < 32 or imgsz % 32:
        problem = f"imgsz={imgsz!r} is not a multiple of 32"
    elif "train_state" in ckpt:  # a run's last.pt (info and a resume read it: audit42 F7)
        problem = _train_state_problem(ckpt["train_state"])
    if problem:
        raise ModelError(f"{p}: damaged checkpoint: {problem}")


def _train_state_problem(ts: Any) -> str | None:
    if not isinstance(ts, dict):
        return f"train_state is {type(ts).__name__}, not a mapping"
    epoch, config = ts.get("epoch"), ts.get("config")
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < -1:
        return f"train_state.epoch={epoch!r} is not an epoch number"
    if not isinstance(config, dict):
        return f"train_state.config is {type(config).__name__}, not a mapping"
    epochs = config.get("epochs")
    if isinstance(epochs, bool) or not isinstance(epochs, int):
        return f"train_state.config.epochs={epochs!r} is not a number of epochs"
    return None


@keeps_caller_state
def load_checkpoint(path: str | Path, *, mmap: bool = False) -> tuple[Detector, dict]:
    """Rebuild the detector from a checkpoint; returns ``(model in eval mode, checkpoint dict)``.

    The file is read with ``torch.load(weights_only=True)``: no pickled classes run. The model
    remembers the checkpoint's ``imgsz`` (``model.imgsz``: validate, train and prune default
    to it) and its ``meta.history`` (``model.history``: what was done to it).

    Args:
        path: a checkpoint that yoloslim wrote (``train``, ``distill``, ``prune``).
        mmap: map the file rather than read it whole (see :func:`read_checkpoint`).

    Returns:
        ``(model, ckpt)``: the Detector in eval mode, with the checkpoint's weights, and
        the checkpoint dict (``format``, ``arch``, ``state_dict``, ``names``, ``imgsz``,
        ``meta``; a training run's ``last.pt`` also has ``train_state``).

    Raises:
        ModelError: the path is missing or a folder, the file is not a yoloslim checkpoint,
            or its architecture and weights do not rebuild a model (naming the file).

    Example:
        >>> model, ckpt = load_checkpoint("runs/nano/best.pt")
        >>> ckpt["names"], model.imgsz  # doctest: +SKIP
    """
    ckpt = read_checkpoint(path, mmap=mmap)
    try:
        model = build_model(ckpt["arch"], names=ckpt["names"])
    except ModelError as e:
        raise ModelError(f"{path}: cannot rebuild the model: {e}") from e
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:  # torch's message lists every key: hundreds of lines
        raise ModelError(f"{path}: {_misfit(model.state_dict(), ckpt['state_dict'])}") from e
    bad = next((k for k, v in model.state_dict().items() if not torch.isfinite(v).all()), None)
    if bad is not None:  # export blamed fuse(), train the learning rate, val said mAP 0
        raise ModelError(
            f"{path}: its weights are not finite ({bad} holds NaN or inf): the training that "
            "saved them diverged"
        )
    model.imgsz = int(ckpt["imgsz"])  # validate() and prune() default to it
    model.history = list((ckpt.get("meta") or {}).get("history") or [])  # see with_history
    return model.eval(), ckpt


def _misfit(own: dict, saved: dict) -> str:
    """One line on how a checkpoint's weights ``saved`` differ from what its arch builds."""
    missing = [k for k in own if k not in saved]
    extra = [k for k in saved if k not in own]
    shapes = [k for k in own if k in saved and tuple(own[k].shape) != tuple(saved[k].shape)]
    first = (
        f"{shapes[0]} is {list(saved[shapes[0]].shape)}, its arch builds "
        f"{list(own[shapes[0]].shape)}"
        if shapes
        else f"{missing[0]} is missing"
        if missing
        else f"{extra[0]} is not in its arch"
        if extra
        else "?"
    )
    return (
        f"damaged checkpoint: its weights do not fit its arch ({len(missing)} missing, "
        f"{len(extra)} not in the arch, {len(shapes)} of another shape; first: {first})"
    )


def with_history(upstream: list[dict], stage: str, out: str | Path, **details) -> list[dict]:
    """``upstream`` (what was done to a model before, as its checkpoint's ``meta.history``
    lists it) and this stage: ``{"stage", "out": its folder, **details}``. A stage that saves
    again into the same folder (every epoch, or a resumed run) replaces its own entry."""
    # absolute with '..' folded (not resolved: a symlinked run folder keeps its name)
    entry = {"stage": stage, "out": os.path.abspath(Path(out).expanduser()), **details}
    kept = list(upstream)
    while kept and (kept[-1].get("stage"), kept[-1].get("out")) == (stage, entry["out"]):
        kept.pop()
    return [*kept, entry]


def arch_label(name: str, history: list[dict] | None) -> str:
    """``name`` (an arch's), with ``, pruned`` when ``history`` (a checkpoint's
    ``meta.history``) has a prune step: a pruned damo-nano keeps its arch's name."""
    pruned = any(h.get("stage") == "prune" for h in history or ())
    return f"{name}, pruned" if pruned else name


def trained_imgsz(*models: Any) -> int | None:
    """The input size the first of ``models`` that is a checkpoint file (``.pt``) was trained
    at, or an arch.yaml ``yoloslim nas`` wrote was searched (and budgeted) at: the size to
    train it at. None when none is (a model name, a hand-written arch.yaml)."""
    from yoloslim.models.arch import search_header

    for model in models:
        is_file = isinstance(model, (str, Path)) and Path(model).expanduser().is_file()
        if is_file and Path(model).suffix.lower() == ".pt":
            return int(read_checkpoint(model)["imgsz"])
        if is_file and Path(model).suffix.lower() in (".yaml", ".yml"):
            found = search_header(model)
            if found:
                return found.imgsz
    return None


def weights_dtype(model: nn.Module) -> torch.dtype:
    """The floating-point dtype of ``model``'s weights (its first float parameter's; float32
    for a model without one): a ``.half()`` model's is float16."""
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)


def weights_digest(model: nn.Module) -> str:
    """SHA-1 of a model's state (names, dtypes, shapes and values, in name order): two files
    of the same weights give the same digest."""
    h = hashlib.sha1()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()
