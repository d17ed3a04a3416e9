"""Arch dicts: validation, and per-layer channel records for pruned models.

An arch is a plain dict (YAML-serialisable)::

    {"name": str, "nc": int, "act": "silu",
     "backbone": {"stages": [{"block", "out", "depth", "kernel", "stride", "ratio"}, ...],
                  "out_indices": [2, 3, 4]},
     "neck": {"out": [c3, c4, c5], "depth": 1, "kernel": 3, "ratio": 0.5},
     "head": {"width": [..] | null, "num_convs": 1, "reg_max": 16, "strides": [8, 16, 32]},
     "layers": {module_path: [out, in] for every Conv2d, [n] for every BatchNorm2d}}

A ``conv`` stage (the stem) is one strided 3x3 conv: a ``depth`` other than 0 is warned
about and taken as 0, and its ``kernel`` and ``ratio`` are not used (the search writes its genome's values there). The
three ``out_indices`` are increasing, and ``head.strides`` double from level to level.

``layers`` is optional on input (derived from the spec) and always present on
output (:func:`arch_of`), so a pruned model -- whose convs no longer match the
spec's widths -- rebuilds exactly from its arch, with no pickled classes.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from yoloslim.configs import one_of, read_yaml
from yoloslim.errors import ModelError
from yoloslim.models.backbone import BLOCKS
from yoloslim.models.blocks import ACTIVATIONS

log = logging.getLogger(__name__)

__all__ = [
    "KERNEL_SIZES",
    "validate_arch",
    "arch_of",
    "apply_layers",
    "check_fits",
    "layer_shapes",
    "load_arch_yaml",
]

_TOP = {"name", "nc", "act", "backbone", "neck", "head", "layers"}
_BACKBONE = {"stages", "out_indices"}
_STAGE = {"block", "out", "depth", "kernel", "stride", "ratio"}
_NECK = {"out", "depth", "kernel", "ratio"}
_HEAD = {"width", "num_convs", "reg_max", "strides"}


def _check_keys(d: object, allowed: set[str], where: str, required: set[str] = frozenset()) -> None:
    if not isinstance(d, dict):
        raise ModelError(f"arch: {where} must be a mapping, got {type(d).__name__}")
    unknown = set(d) - allowed
    if unknown:
        raise ModelError(
            f"arch: unknown key(s) {sorted(unknown)} in {where}; allowed: {sorted(allowed)}"
        )
    missing = set(required) - set(d)
    if missing:
        raise ModelError(f"arch: missing key(s) {sorted(missing)} in {where}")


# the largest value each kind of arch number may take: far above any detector's (DAMO-YOLO-L
# has 1024 channels, 80 classes, reg_max 16), low enough that a typo (nc: 1000000000, an
# extra zero on a width) is an error naming the key, not an allocator's traceback or a build
# that runs for minutes
LIMITS = {"nc": 100_000, "width": 16_384, "depth": 256, "reg_max": 256, "num_convs": 64}


def _pos_int(v: object, where: str, minimum: int = 1, maximum: int | None = None) -> None:
    if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
        raise ModelError(f"arch: {where}={v!r} must be an integer >= {minimum}")
    if maximum is not None and v > maximum:
        raise ModelError(f"arch: {where}={v!r} is over {maximum:,}, the most an arch here takes")


KERNEL_SIZES = (1, 3, 5, 7)
"""The kernel sizes a block's convs may have (the NAS space draws from these too)."""


def _kernel(v: object, where: str) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v not in KERNEL_SIZES:  # not 3.0
        raise ModelError(f"arch: {where}={v!r} must be the integer 1, 3, 5 or 7")


def _ratio(v: object, where: str) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 4:
        raise ModelError(f"arch: {where}={v!r} must be a number in (0, 4]")


def _int_list(v: object, where: str, minimum: int = 1, maximum: int | None = None) -> list[int]:
    """``v`` (a list or tuple) as a list of 3 integers >= ``minimum`` (one per level)."""
    if not isinstance(v, (list, tuple)) or len(v) != 3:
        raise ModelError(f"arch: {where}={v!r} must be 3 integers, one per level")
    for i, x in enumerate(v):
        _pos_int(x, f"{where}[{i}]", minimum, maximum)
    return list(v)


def validate_arch(arch: dict) -> dict:
    """Check an arch dict's keys, types and ranges; returns a deep copy with defaults filled."""
    _check_keys(arch, _TOP, "the arch", {"nc", "backbone", "neck", "head"})
    a = copy.deepcopy(arch)
    _pos_int(a["nc"], "nc", 1, LIMITS["nc"])
    a.setdefault("name", "custom")
    if not isinstance(a["name"], str) or not a["name"].strip():  # info printed "[1, 2]"
        raise ModelError(f"arch: name={a['name']!r} must be a non-empty string")
    a.setdefault("act", "silu")
    if a["act"] not in ACTIVATIONS:
        raise ModelError(f"arch: act={a['act']!r} must be {one_of(ACTIVATIONS)}")
    _check_keys(a["backbone"], _BACKBONE, "backbone", {"stages"})
    stages = a["backbone"]["stages"]
    if not isinstance(stages, list) or len(stages) < 3:
        raise ModelError("arch: backbone.stages must be a list of at least 3 stages")
    for i, s in enumerate(stages):
        _check_keys(s, _STAGE, f"backbone.stages[{i}]", _STAGE)
        if s["block"] not in BLOCKS:
            raise ModelError(
                f"arch: backbone.stages[{i}].block={s['block']!r} must be {one_of(BLOCKS)}"
            )
        _pos_int(s["out"], f"backbone.stages[{i}].out", 1, LIMITS["width"])
        _pos_int(s["depth"], f"backbone.stages[{i}].depth", 0, LIMITS["depth"])
        _pos_int(s["stride"], f"backbone.stages[{i}].stride")
        _kernel(s["kernel"], f"backbone.stages[{i}].kernel")
        _ratio(s["ratio"], f"backbone.stages[{i}].ratio")
        if s["block"] == "conv" and s["depth"] != 0:
            # its body is empty: blocks the file names are not built. Not refused: a model
            # saved from such an arch was built (and its weights saved) with none
            log.warning(
                "arch: backbone.stages[%d] is a conv stage (one strided 3x3 conv): its "
                "depth=%s is not built; use csp or res for blocks",
                i,
                s["depth"],
            )
            s["depth"] = 0
    out_idx = a["backbone"]["out_indices"] = _int_list(
        a["backbone"].get("out_indices", [len(stages) - 3, len(stages) - 2, len(stages) - 1]),
        "backbone.out_indices",
        0,
    )
    if out_idx != sorted(set(out_idx)) or out_idx[-1] >= len(stages):
        # the backbone returns its maps in stage order
        raise ModelError(
            f"arch: backbone.out_indices={out_idx!r} must name 3 of the {len(stages)} stages, "
            "in increasing order"
        )
    if out_idx[-1] != len(stages) - 1:
        # a stage after the last tapped one ran and was counted but fed nothing: it never
        # trained, and multi-GPU training (DDP) failed on its unused parameters
        raise ModelError(
            f"arch: backbone.out_indices={out_idx!r} leaves stage(s) "
            f"{list(range(out_idx[-1] + 1, len(stages)))} after the last one tapped, which "
            f"would feed nothing: end out_indices at the last stage ({len(stages) - 1}) or "
            "drop those stages"
        )
    _check_keys(a["neck"], _NECK, "neck", {"out"})
    a["neck"]["out"] = _int_list(a["neck"]["out"], "neck.out", 1, LIMITS["width"])
    _pos_int(a["neck"].setdefault("depth", 1), "neck.depth", 0, LIMITS["depth"])
    _kernel(a["neck"].setdefault("kernel", 3), "neck.kernel")
    _ratio(a["neck"].setdefault("ratio", 0.5), "neck.ratio")
    _check_keys(a["head"], _HEAD, "head")
    _pos_int(a["head"].setdefault("reg_max", 16), "head.reg_max", 1, LIMITS["reg_max"])
    _pos_int(a["head"].setdefault("num_convs", 1), "head.num_convs", 0, LIMITS["num_convs"])
    head_strides = a["head"]["strides"] = _int_list(
        a["head"].get("strides", [8, 16, 32]), "head.strides"
    )
    if head_strides[1] != 2 * head_strides[0] or head_strides[2] != 2 * head_strides[1]:
        raise ModelError(
            f"arch: head.strides={head_strides!r} must each double the last (the neck "
            "resizes by 2 between levels)"
        )
    width = a["head"].setdefault("width", None)
    if isinstance(width, (list, tuple)):
        a["head"]["width"] = _int_list(width, "head.width", 1, LIMITS["width"])
    elif width is not None:
        _pos_int(width, "head.width", 1, LIMITS["width"])
    strides = 1
    for i, s in enumerate(stages):
        strides *= s["stride"]
        if i in out_idx and strides != a["head"]["strides"][out_idx.index(i)]:
            raise ModelError(
                f"arch: backbone stage {i} has cumulative stride {strides} but head.strides "
                f"expects {a['head']['strides'][out_idx.index(i)]}"
            )
    if "layers" in a:
        _check_layers(a["layers"])
    return a


# a recorded layer's channels: the width limit, but a class conv's outputs (nc: review F3,
# 20,000 classes were refused) and a conv's inputs after a concat (its inputs' widths summed)
_CLS = "head.cls_preds."


def _check_layers(layers: object) -> None:
    """ModelError naming the entry of a ``layers`` record that is no shape: a list of one to
    three integers from 1 to the width limit (audit44 models F2: a negative, string or
    short entry was torch's traceback, naming neither file nor key)."""
    if not isinstance(layers, dict):
        raise ModelError("arch: layers must be a mapping of module path -> shape")
    for name, shape in layers.items():
        top = [LIMITS["nc"] if str(name).startswith(_CLS) else LIMITS["width"], 4 * LIMITS["width"]]
        if (
            not isinstance(shape, (list, tuple))
            or not 1 <= len(shape) <= 3
            or any(isinstance(n, bool) or not isinstance(n, int) for n in shape)
            or not all(1 <= n <= most for n, most in zip(shape, [*top, top[0]], strict=False))
        ):
            raise ModelError(
                f"arch: layers[{name!r}]={shape!r} must be [out, in] (a conv or linear layer; "
                f"[out, in, groups] a grouped conv) or [channels] (a BatchNorm), integers "
                f"from 1 to {top[0]} ({top[1]} for a conv's inputs)"
            )


def layer_shapes(model: nn.Module, *, legacy: bool = False) -> dict[str, list[int]]:
    """``{path: [out, in]}`` for every Conv2d (``[out, in, groups]`` for a grouped one) and
    Linear, and ``{path: [n]}`` for every BatchNorm2d. ``legacy``: as records written before
    grouped convs and Linear layers were recorded held them (``[out, in]`` for every conv,
    no Linear)."""
    shapes: dict[str, list[int]] = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            groups = [m.groups] if m.groups > 1 and not legacy else []
            shapes[name] = [m.out_channels, m.in_channels, *groups]
        elif isinstance(m, nn.Linear) and not legacy:
            shapes[name] = [m.out_features, m.in_features]
        elif isinstance(m, nn.BatchNorm2d):
            shapes[name] = [m.num_features]
    return shapes


def apply_layers(model: nn.Module, layers: dict[str, list[int]], *, legacy: bool = False) -> int:
    """Resize convs, linear layers and BNs in place to the recorded shapes (fresh weights);
    ``legacy``: ``layers`` in the older form (see :func:`layer_shapes`), in which a grouped
    conv cannot be resized. Returns how many layers it resized (the spec did not give their
    shapes).

    Trailing entries of a ``ModuleList`` none of whose layers are recorded are
    dropped first: depth pruning removes residual blocks from a list (which then
    re-indexes), and the neck's single ``depth`` cannot express per-stage depths.
    """
    _trim_module_lists(model, layers)
    current = layer_shapes(model, legacy=legacy)
    if set(current) != set(layers):
        extra, missing = (
            sorted(set(layers) - set(current))[:5],
            sorted(set(current) - set(layers))[:5],
        )
        raise ModelError(
            "arch: 'layers' does not match the structure built from the spec "
            f"(unknown: {extra}, missing: {missing})"
        )
    for name, shape in layers.items():
        if len(shape) != len(current[name]) and not (len(current[name]) > 1 and len(shape) > 1):
            raise ModelError(
                f"arch: layers[{name!r}]={list(shape)!r} is not the shape of its layer "
                f"(built from the spec: {current[name]})"
            )
    changed = 0
    for name, shape in layers.items():
        if current[name] == list(shape):
            continue
        changed += 1
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        old = getattr(parent, attr)
        if isinstance(old, nn.Conv2d):
            if legacy and old.groups != 1:
                raise ModelError(f"arch: cannot resize grouped conv {name}")
            try:  # groups that do not divide the channels (review F13: ValueError)
                new: nn.Module = nn.Conv2d(
                    shape[1],
                    shape[0],
                    old.kernel_size,
                    old.stride,
                    old.padding,
                    old.dilation,
                    groups=shape[2] if len(shape) > 2 else 1,
                    bias=old.bias is not None,
                    padding_mode=old.padding_mode,
                )
            except ValueError as e:
                raise ModelError(f"arch: layers[{name!r}]={list(shape)!r}: {e}") from e
        elif isinstance(old, nn.Linear):
            new = nn.Linear(shape[1], shape[0], bias=old.bias is not None)
        else:
            new = nn.BatchNorm2d(shape[0], eps=old.eps, momentum=old.momentum)
        setattr(parent, attr, new)
    return changed


def check_fits(model: nn.Module) -> None:
    """ModelError when a detector's resized layers do not fit together (a conv's input is
    not what the layer before it gives, a BatchNorm's channels not its conv's): one small
    forward pass, since only running the model says (it was torch's traceback at the first
    use)."""
    strides = getattr(model, "strides", (32,))
    side = 2 * int(max(strides))
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, side, side))
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(
            f"arch: its 'layers' do not fit together (a layer's input is not what the one "
            f"before it gives): {first}"
        ) from e
    finally:
        model.train(was)


def _trim_module_lists(model: nn.Module, layers: dict[str, list[int]]) -> None:
    recorded = set(layers)
    for name, m in list(model.named_modules()):
        if not isinstance(m, nn.ModuleList):
            continue
        prefix = f"{name}." if name else ""
        while len(m):
            i = len(m) - 1
            own = {f"{prefix}{i}.{k}" if k else f"{prefix}{i}" for k in layer_shapes(m[i])}
            if not own or own & recorded:
                break
            del m[i]


def arch_of(model: nn.Module) -> dict:
    """The full arch of a yoloslim Detector, with its real per-layer channel counts.

    Args:
        model: a Detector, pruned or not.

    Returns:
        Its arch dict (as ``validate_arch`` returns) plus ``layers``: each conv's
        ``[out, in]`` channels (``[out, in, groups]`` for a grouped one) and each BatchNorm's
        ``[channels]`` (see :func:`layer_shapes`), so a pruned model rebuilds with
        ``build_model``.

    Raises:
        ModelError: ``model`` is not a yoloslim Detector.

    Example:
        >>> arch = arch_of(prune_result.model)  # doctest: +SKIP
        >>> build_model(arch)  # the pruned shapes, random weights  # doctest: +SKIP
    """
    spec = getattr(model, "spec", None)
    if spec is None:
        raise ModelError(f"{type(model).__name__} is not a yoloslim Detector (no .spec)")
    a = copy.deepcopy(spec)
    a["layers"] = layer_shapes(model)
    return a


def load_arch_yaml(path: str | Path) -> dict:
    """Read an arch YAML file (as written by ``yoloslim nas``)."""
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"{p}: arch file does not exist")
    data = read_yaml(p, ModelError, "arch")
    if isinstance(data, dict) and "arch" in data and "backbone" not in data:
        data = data["arch"]
    if isinstance(data, dict) and "backbone" not in data and {"train", "val", "names"} & set(data):
        raise ModelError(
            f"{p}: is a dataset's data.yaml (it has train/val/names keys), not an arch (a "
            "model is a registered name, an arch .yaml or a .pt checkpoint)"
        )
    try:
        return validate_arch(data)
    except ModelError as e:
        raise ModelError(f"{p}: {e}") from e


class SearchHeader(NamedTuple):
    """What the first line ``yoloslim nas`` writes into an arch.yaml says of the network it
    scored: its score and GFLOPs as written (4 significant digits; None in a header
    without them), at the input size it was searched at."""

    score: str
    imgsz: int
    gflops: str | None


def search_header(path: str | Path) -> SearchHeader | None:
    """The :class:`SearchHeader` of an arch.yaml (``... (MAE-DET score 506.012, 0.978
    GFLOPs at 320 px)``); None for a file without it (hand-written, or not readable)."""
    import re

    try:
        with open(Path(path).expanduser(), encoding="utf-8", errors="replace") as f:
            first = f.readline()
    except OSError:
        return None
    found = re.search(r"MAE-DET score ([-+\w.]+)(?:, ([-+\w.]+) GFLOPs)?.* at (\d+) px", first)
    if not found:
        return None
    return SearchHeader(found.group(1), int(found.group(3)), found.group(2))


def edited_since_search(path: str | Path) -> bool | None:
    """Whether the arch file ``path`` differs from what its search wrote, by the digest
    (``arch_sha1``) the ``nas_report.json`` beside it records for it; None when there is no
    such report, or it is another file's."""
    import hashlib
    import json

    p = Path(path).expanduser()
    try:
        report = json.loads((p.parent / "nas_report.json").read_bytes())
        digest = hashlib.sha1(p.read_bytes()).hexdigest()
    except (OSError, ValueError):
        return None
    if not isinstance(report, dict) or report.get("arch_file") != p.name:
        return None
    return report.get("arch_sha1") != digest
