"""Model registry: named arch presets and ``build_model``.

Presets are functions returning an arch dict (see :mod:`yoloslim.models.arch`).
Registering a name twice raises; importing registers the built-ins and does
nothing else.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from yoloslim.configs import int_problem
from yoloslim.errors import ModelError
from yoloslim.fileio import did_you_mean
from yoloslim.models.arch import apply_layers, check_fits, load_arch_yaml, validate_arch
from yoloslim.models.detector import Detector

__all__ = ["register_model", "list_models", "get_arch", "arch_from", "build_model"]

log = logging.getLogger(__name__)

_REGISTRY: dict[str, Callable[[], dict]] = {}


def register_model(name: str) -> Callable[[Callable[[], dict]], Callable[[], dict]]:
    """Decorator registering an arch factory under ``name``.

    Args:
        name: the name ``build_model``, ``train --model`` and recipes will know it by.

    Returns:
        The decorator; it returns the factory unchanged. The factory takes no argument and
        returns a new arch dict each call (``name`` and ``nc`` are filled in on build).

    Raises:
        ModelError: ``name`` is empty, not a string, or already registered.

    Example:
        >>> from yoloslim.models.registry import get_arch
        >>> @register_model("nano-wide")
        ... def nano_wide() -> dict:
        ...     arch = get_arch("damo-nano")
        ...     arch["neck"]["out"] = [64, 128, 192]
        ...     return arch
    """

    if not isinstance(name, str) or not name.strip():
        raise ModelError(f"register_model({name!r}): a model name must be a non-empty string")

    def wrap(fn: Callable[[], dict]) -> Callable[[], dict]:
        if not callable(fn):  # failed later, in build_model, as "'int' object is not callable"
            raise ModelError(
                f"register_model({name!r}) decorates a function that returns an arch dict, "
                f"not a {type(fn).__name__}"
            )
        if name in _REGISTRY:
            raise ModelError(f"model {name!r} is already registered")
        _REGISTRY[name] = fn
        return fn

    return wrap


def list_models() -> list[str]:
    """Names of the registered models, sorted.

    Returns:
        The names ``build_model`` accepts (the built-in ones and any registered since).

    Example:
        >>> list_models()
        ['damo-nano', 'damo-small', 'damo-tiny']
    """
    return sorted(_REGISTRY)


# the files an export writes: what a stage that takes a checkpoint, or a model to build,
# refuses by name (here, below models.checkpoint, which imports it from this module)
EXPORTED = frozenset({".onnx", ".xml", ".bin", ".torchscript", ".engine", ".mlpackage", ".plan"})


def get_arch(name: str, nc: int = 80) -> dict:
    """The arch dict of a registered model, for ``nc`` classes."""
    if name not in _REGISTRY:
        raise ModelError(f"unknown model {name!r}; registered: {', '.join(list_models())}")
    arch = _REGISTRY[name]()
    if not isinstance(arch, dict):  # was "'int' object does not support item assignment"
        raise ModelError(
            f"model {name!r}: its registered function returned a {type(arch).__name__}, not "
            "an arch dict"
        )
    arch["name"], arch["nc"] = name, nc
    return validate_arch(arch)


def arch_from(model: str | dict | Path, nc: int = 80) -> dict:
    """The validated arch dict of an arch dict, an arch YAML path or a registered name
    (``nc`` applies to a registered name only)."""
    if isinstance(model, dict):
        return validate_arch(model)
    suffix = Path(str(model)).suffix.lower()
    if suffix in (".pt", ".pth"):
        raise ModelError(
            f"{model}: a checkpoint is no model to build (a registered name or an arch .yaml): "
            "load it with load_checkpoint; train() takes it as it is"
        )
    # a .bin only beside its .xml: one alone is not said to be OpenVINO's
    if suffix in EXPORTED - {".bin"} or (
        suffix == ".bin" and Path(str(model)).with_suffix(".xml").exists()
    ):
        raise ModelError(
            f"{model}: is an exported artifact; a model to build or train is a registered "
            "name, an arch .yaml or a yoloslim .pt checkpoint"
        )
    p = Path(str(model)).expanduser()
    named = isinstance(model, str) and model in _REGISTRY
    if not named and p.is_dir():  # a run folder given where a model is
        hint = did_you_mean(p, ("best.pt", "last.pt", "pruned.pt", "arch.yaml"))
        raise ModelError(f"{p}: is a folder, not a model{hint}")
    if isinstance(model, Path) or suffix in (".yaml", ".yml"):
        return load_arch_yaml(model)
    if not named and p.is_file():  # a path given where a model is: say what it is
        raise ModelError(
            f"{p}: is a file, but a model is a registered name "
            f"({', '.join(list_models())}), an arch .yaml or a .pt checkpoint"
        )
    return get_arch(str(model), nc)


def _names(names: Any) -> list[str] | None:
    """``names`` as a list of str (a tuple, a numpy array of strings, a dict ``{0: 'cat'}``
    as a data.yaml may write it); ModelError for one string (``"abc"`` was 3 classes, a, b
    and c) or entries that are not strings."""
    if names is None:
        return None
    if isinstance(names, str):
        raise ModelError(f"names={names!r}: expected a list of class names, not one string")
    if isinstance(names, dict):
        keys = sorted(names) if all(isinstance(k, int) for k in names) else None
        if keys != list(range(len(names))):
            raise ModelError("names: a mapping must be keyed 0..nc-1, as {0: 'cat', 1: 'dog'}")
        names = [names[k] for k in keys]
    try:
        items = list(names)
    except TypeError:
        raise ModelError(
            f"names={names!r}: expected a list of class names, got {type(names).__name__}"
        ) from None
    bad = [n for n in items if not isinstance(n, str)]
    if bad:
        raise ModelError(f"names: {bad[0]!r} is no class name (a string)")
    twice = sorted({n for n in items if items.count(n) > 1})
    if twice:  # validate and the stages match classes by name, as a data.yaml's are refused
        raise ModelError(f"names has duplicates: {twice}")
    return [str(n) for n in items]


def build_model(
    model: str | dict | Path, *, nc: int | None = None, names: list[str] | None = None
) -> Detector:
    """Build a detector from a registered name, an arch dict or an arch YAML path.

    Args:
        model: ``"damo-nano"``, an arch dict, or a path to an ``arch.yaml``.
        nc: number of classes; defaults to ``len(names)``, else the arch's ``nc``, else 80.
            Overriding the arch's ``nc`` keeps a pruned arch's ``layers`` record (its
            widths) but for the class convs, which get ``nc`` outputs.
        names: class names (length ``nc``).

    Returns:
        A Detector in training form (RepConv branches unfused) with random weights.

    Raises:
        ModelError: an unknown name, an arch file that is missing or not YAML, an arch
            that fails validation (naming the key), or ``names`` of another length than
            ``nc``.

    Example:
        >>> m = build_model("damo-nano", nc=3)
        >>> m.nc
        3
    """
    names = _names(names)
    if nc is None and names is not None:
        nc = len(names)
    if nc is not None and int_problem(nc):
        what = "names is empty" if names is not None and not names else f"nc={nc!r}"
        raise ModelError(f"{what}: a detector needs an integer number of classes >= 1")
    nc = None if nc is None else int(nc)
    arch = arch_from(model, nc or 80)
    if nc is not None and nc != arch["nc"]:
        arch["nc"] = nc
        if "layers" in arch:  # a pruned model's widths are kept; only its class convs change
            arch["layers"] = {
                k: [nc, *v[1:]] if k.startswith("head.cls_preds.") else v
                for k, v in arch["layers"].items()
            }
    if names is not None and len(names) != arch["nc"]:
        raise ModelError(f"names has {len(names)} entries but the model has nc={arch['nc']}")
    layers = arch.pop("layers", None)
    net = Detector(arch, names)
    if layers is not None:
        try:
            resized = apply_layers(net, layers)
            if resized:
                check_fits(net)
        except ModelError as e:
            if not isinstance(model, (str, Path)):
                raise
            raise ModelError(f"{model}: {e}") from e  # the file its 'layers' came from
        if resized and isinstance(model, (str, Path)):
            # an arch file of a pruned model's: an edit to its stage widths built nothing
            # new, and its description showed the edit (audit44 models F1)
            log.warning(
                "%s: its 'layers' record (a pruned model's shapes) sets the width of %d "
                "layer(s), not its stages' widths: an edit to those applies only without "
                "'layers'",
                model,
                resized,
            )
    return net


def _stages(
    widths: list[int], depths: list[int], kernel: int = 3, ratio: float = 0.5, block: str = "csp"
) -> list[dict]:
    stem = {"block": "conv", "out": widths[0], "depth": 0, "kernel": 3, "stride": 2, "ratio": 1.0}
    return [stem] + [
        {"block": block, "out": w, "depth": d, "kernel": kernel, "stride": 2, "ratio": ratio}
        for w, d in zip(widths[1:], depths, strict=True)
    ]


def _preset(widths, depths, neck_out, neck_depth, head_width, head_convs=1, act="silu") -> dict:
    return {
        "act": act,
        "backbone": {"stages": _stages(widths, depths), "out_indices": [2, 3, 4]},
        "neck": {"out": neck_out, "depth": neck_depth, "kernel": 3, "ratio": 0.5},
        "head": {
            "width": head_width,
            "num_convs": head_convs,
            "reg_max": 16,
            "strides": [8, 16, 32],
        },
    }


@register_model("damo-nano")
def damo_nano() -> dict:
    """CPU-class model: 1.62 M parameters (deploy form), 1.0 GFLOPs at 320 px, 80 classes."""
    return _preset([16, 24, 48, 96, 192], [1, 2, 2, 1], [48, 96, 160], 1, [48, 48, 48])


@register_model("damo-tiny")
def damo_tiny() -> dict:
    """Sized like DAMO-YOLO-T (8.5 M): 8.39 M parameters (deploy form) at 80 classes."""
    return _preset([32, 64, 128, 256, 512], [1, 2, 3, 1], [80, 160, 320], 1, [80, 80, 80])


@register_model("damo-small")
def damo_small() -> dict:
    """Sized like DAMO-YOLO-S (16.3 M): 16.29 M parameters (deploy form) at 80 classes."""
    return _preset([32, 64, 128, 256, 512], [1, 3, 4, 2], [128, 256, 448], 2, [128, 128, 128])
