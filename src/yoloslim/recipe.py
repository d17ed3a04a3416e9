"""Compress recipes: each stage's config, and loading a recipe with every value checked.

A recipe is an ordered list of one-key stages (:data:`STAGES`); :func:`load_recipe`
validates the whole of it (unknown stages and keys, wrong types, bad values) with errors
naming the file and the stage, before :func:`yoloslim.pipeline.run_recipe` runs anything.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from yoloslim.configs import (
    UniqueKeyLoader,
    check_imgsz,
    check_path,
    exponent_hint,
    from_mapping,
    int_problem,
    plain_numbers,
    yaml_problem,
)
from yoloslim.errors import ConfigError
from yoloslim.sysinfo import check_threads

__all__ = ["STAGES", "Recipe", "Stage", "load_recipe"]

log = logging.getLogger(__name__)

STAGES = ("nas", "train", "prune", "distill", "reparam", "export", "quantize", "bench")


@dataclass(frozen=True)
class ExportStage:
    """Config of the ``export`` stage (see :func:`yoloslim.export`)."""

    formats: list = field(default_factory=lambda: ["onnx", "openvino"])
    imgsz: int | None = None
    dynamic: bool = False
    half: bool = False
    verify: bool = True
    triton_name: str = "model"
    triton_max_batch: int = 16
    nms: bool = False
    nms_conf: float = 0.25
    nms_iou: float = 0.65
    nms_max_det: int = 300

    def __post_init__(self) -> None:
        from yoloslim.export.api import check_options

        formats = check_options(
            self.formats,
            imgsz=self.imgsz,
            dynamic=self.dynamic,
            half=self.half,
            nms=self.nms,
            nms_conf=self.nms_conf,
            nms_iou=self.nms_iou,
            nms_max_det=self.nms_max_det,
            triton_name=self.triton_name,
            triton_max_batch=self.triton_max_batch,
            verify=self.verify,
            recipe=True,
        )
        object.__setattr__(self, "formats", formats)


@dataclass(frozen=True)
class BenchStage:
    """Config of the ``bench`` stage (see :func:`yoloslim.bench.measure.benchmark`)."""

    batches: list = field(default_factory=lambda: [1])
    rounds: int = 10
    runs_per_round: int = 10
    threads: int | None = None
    imgsz: int | None = None
    warmup: int = 10

    def __post_init__(self) -> None:
        if int_problem(self.warmup, 0):
            raise ConfigError(f"warmup={self.warmup!r} must be an integer >= 0")
        if not isinstance(self.batches, (list, tuple)):  # batches: null said "not iterable"
            raise ConfigError(f"batches={self.batches!r} must be a list of positive integers")
        if not self.batches or not all(_positive_int(b) for b in self.batches):
            raise ConfigError(f"batches={list(self.batches)} must be positive integers")
        if len(set(self.batches)) != len(self.batches):
            raise ConfigError(f"batches={list(self.batches)}: each batch size once")
        # only threads may be null (the runtime's choice): rounds: null passed here and failed
        # at the bench stage, after every stage before it, naming a --rounds flag
        for key in ("rounds", "runs_per_round", "threads"):
            value = getattr(self, key)
            if (value is not None or key != "threads") and not _positive_int(value):
                raise ConfigError(f"{key}={value!r} must be a positive integer")
        check_imgsz(self.imgsz)


def check_stage_threads(rec: Recipe) -> None:
    """Refuse a bench, train or distill stage whose ``threads`` is over the cores this process
    may run on, before the run begins: found at that stage it came after every stage before
    it, named as a "--threads" that compress has not (audit47 review F1, review2 L). For a
    fresh run only: a resume checks what it runs again as it runs it (a finished stage's
    setting cannot change, and need not: audit47 review2 M)."""
    for i, s in enumerate(rec.stages, 1):
        if s.name == "bench":
            threads = s.config.threads
        elif s.name == "train":
            threads = s.config.config.threads
        elif s.name == "distill":
            threads = s.config.config.train.threads
        else:
            continue
        check_threads(threads, f"{rec.source}: stage {i} ({s.name}): threads")


def _positive_int(value: Any) -> bool:
    return int_problem(value) is None


@dataclass(frozen=True)
class ReparamStage:
    """The ``reparam`` stage takes no settings: it checks the fused model against the original."""


@dataclass(frozen=True)
class TrainStage:
    """``train``: the config is a TrainConfig dict; ``model`` overrides what is trained."""

    config: Any
    model: str | None = None


@dataclass(frozen=True)
class DistillStage:
    """``distill``: a DistillConfig dict; ``teacher`` defaults to the run's input model."""

    config: Any
    teacher: str | None = None


@dataclass(frozen=True)
class NasStage:
    """``nas``: the mapping :func:`yoloslim.nas.search_from_dict` takes."""

    options: dict


@dataclass(frozen=True)
class Stage:
    name: str
    config: Any
    raw: dict

    def sized_by_model(self) -> bool:
        """A train or distill stage whose recipe gives no ``imgsz``: it trains at the size
        of the model it gets (a checkpoint's, or the search's for a nas stage's arch)."""
        if self.name == "train":
            return "imgsz" not in self.raw
        if self.name == "distill":
            return "imgsz" not in (self.raw.get("train") or {})
        return False

    def resolved(self, keep_model_sizes: bool = False) -> dict:
        """The stage as a recipe entry with every default filled in; a size taken from the
        model at run time is left out (``keep_model_sizes``: written as the config's
        default, as runs before that rule recorded it)."""
        cfg = self.config
        if isinstance(cfg, TrainStage):
            values = {**_plain(cfg.config), **({"model": cfg.model} if cfg.model else {})}
            if self.sized_by_model() and not keep_model_sizes:
                del values["imgsz"]
        elif isinstance(cfg, DistillStage):
            values = {**_plain(cfg.config), **({"teacher": cfg.teacher} if cfg.teacher else {})}
            if self.sized_by_model() and not keep_model_sizes:
                del values["train"]["imgsz"]
        elif isinstance(cfg, NasStage):
            values = _plain(cfg.options)
        else:
            values = _plain(cfg)
        return {self.name: values}


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    stages: tuple[Stage, ...]
    source: str = "<dict>"

    def resolved(self, keep_model_sizes: bool = False) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "stages": [s.resolved(keep_model_sizes) for s in self.stages],
        }


def _plain(obj: Any) -> Any:
    """Dataclasses, enums, paths and tuples to YAML/JSON-friendly values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        if hasattr(obj, "to_dict"):
            return _plain(obj.to_dict())
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "value") and not isinstance(obj, (int, float, str, bool)):
        return obj.value
    return obj


def _check_types(cls: type, values: dict, where: str) -> None:
    """Reject values whose type does not fit the dataclass field (int, float, bool, str, list)."""
    hints = typing.get_type_hints(cls)
    for key, value in values.items():
        hint = hints.get(key)
        if hint is None or value is None:
            continue
        allowed = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        allowed = tuple(typing.get_origin(a) or a for a in allowed if a is not type(None))
        if not all(isinstance(a, type) for a in allowed):
            continue
        if any(issubclass(a, enum.Enum) for a in allowed):
            allowed = (*allowed, str)
        if any(dataclasses.is_dataclass(a) for a in allowed):
            allowed = (*allowed, dict)
        if list in allowed or tuple in allowed:
            allowed = (*allowed, list, tuple)
        if bool in allowed and not isinstance(value, bool):
            ok = False
        elif float in allowed and isinstance(value, (int, float)) and not isinstance(value, bool):
            ok = True
        elif int in allowed and isinstance(value, bool):
            ok = False
        else:
            ok = isinstance(value, allowed)
        if not ok:
            names = " or ".join(dict.fromkeys(a.__name__ for a in allowed))
            hint = exponent_hint(value) if float in allowed else ""
            raise ConfigError(f"{where}: {key}={value!r} must be {names}{hint}")
        nested = next((a for a in allowed if dataclasses.is_dataclass(a)), None)
        if nested is not None and isinstance(value, dict):  # advanced: {...}, loss: {...}
            known = _field_names(nested)
            _check_types(nested, {k: v for k, v in value.items() if k in known}, f"{where}: {key}")


def _simple(cls: type, values: dict, where: str):
    _check_types(cls, {k: v for k, v in values.items() if k in _field_names(cls)}, where)
    return from_mapping(cls, values, where)


def _field_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def _parse_stage(name: str, values: dict, where: str) -> Any:
    """The config object of one stage; every error names ``where``."""
    simple = {"export": ExportStage, "bench": BenchStage, "reparam": ReparamStage}
    try:
        if name in simple:
            return _simple(simple[name], values, where)
        if name == "train":
            from yoloslim.train.config import TrainConfig, config_from_dict

            values = dict(values)
            model = values.pop("model", None)
            if model is not None:  # a number failed later as a TypeError inside Path()
                check_path(model, "model", "a checkpoint, an arch .yaml or a registered model")
            _check_types(TrainConfig, values, where)
            return TrainStage(config=config_from_dict(values), model=model)
        if name == "prune":
            from yoloslim.compress.prune_config import PruneConfig

            _check_types(PruneConfig, values, where)
            return PruneConfig.from_dict(values)
        if name == "distill":
            from yoloslim.compress.distill import DistillConfig

            values = dict(values)
            teacher = values.pop("teacher", None)
            if teacher is not None:  # a number failed later as a TypeError inside Path()
                check_path(teacher, "teacher", "a checkpoint's path")
            _check_types(DistillConfig, {k: v for k, v in values.items() if k != "train"}, where)
            return DistillStage(config=DistillConfig.from_dict(values), teacher=teacher)
        if name == "quantize":
            from yoloslim.compress.quant_config import QuantConfig

            _check_types(QuantConfig, values, where)
            return QuantConfig.from_dict(values)
        if name == "nas":
            from yoloslim.nas.search import search_kwargs

            search_kwargs(values)  # every value checked, as the search will take it
            return NasStage(options=dict(values))
    except ConfigError as e:
        msg = str(e).replace(f" in {where}", "")  # from_mapping names ``where`` mid-sentence
        raise ConfigError(msg if msg.startswith(where) else f"{where}: {msg}") from e
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from e
    raise AssertionError(f"{name}: a stage in STAGES without a parser")  # load_recipe checked


SHIPPED = Path(__file__).parent / "recipes"  # the recipes installed with yoloslim


def shipped_recipes() -> list[str]:
    """Names of the recipes that come with yoloslim (``cpu-int8``, ...)."""
    return sorted(p.stem for p in SHIPPED.glob("*.yaml"))


def recipe_path(recipe: str | Path) -> Path:
    """The recipe file ``recipe`` names: a YAML file, else a shipped recipe's name
    (``cpu-int8``, or ``cpu-int8.yaml``).

    Raises:
        ConfigError: neither exists (the message lists the shipped names).
    """
    path = Path(recipe).expanduser()
    if path.is_file():
        return path
    if path.parent == Path("."):
        shipped = SHIPPED / (
            path.name if path.suffix.lower() in (".yaml", ".yml") else f"{path.name}.yaml"
        )
        if shipped.is_file():
            local = [
                p for p in (path.with_suffix(".yaml"), path.with_suffix(".yml")) if p.is_file()
            ]
            if local and path.suffix.lower() not in (".yaml", ".yml"):
                # the shipped one, unsaid, where an edited copy of it lay here (audit47 recipes L)
                log.warning(
                    "recipe %r is the shipped %s, not %s in this folder (give %s to run that)",
                    str(recipe),
                    shipped.name,
                    local[0],
                    local[0],
                )
            return shipped
    what = "is a folder, not a recipe file" if path.is_dir() else "recipe file does not exist"
    raise ConfigError(f"{path}: {what} (shipped recipes: {', '.join(shipped_recipes())})")


def load_recipe(recipe: str | Path | dict, *, sets: typing.Sequence[str] = ()) -> Recipe:
    """Parse and validate a recipe (a YAML path, a shipped recipe's name or an already-loaded
    dict) without running it.

    Args:
        recipe: a recipe YAML path, a shipped recipe's name (``cpu-int8``: see
            :func:`shipped_recipes`), or its mapping (``{"stages": [{name: settings}, ...]}``).
        sets: settings changed on the way in (``compress --set``), each
            ``STAGE.KEY[.KEY...]=VALUE``: STAGE is a stage's name (every stage of that name) or
            its number from 1, VALUE is read as YAML (``6``, ``[1, 8]``, ``null``), and the
            changed recipe is checked as a whole (an unknown key is refused as in the file;
            an error the recipe without them does not have names the ``--set`` that brought
            it, not the file).

    Returns:
        The Recipe: its stages in order, each a frozen settings dataclass.

    Raises:
        ConfigError: the file is missing or not YAML, a top-level key or a stage is unknown,
            a stage's setting is invalid, or stages ask a bench to measure different input
            sizes; the message names the file and the stage (``stage 2 (bench)``).

    Example:
        >>> rec = load_recipe("recipes/cpu-int8.yaml")
        >>> [s.name for s in rec.stages]  # doctest: +SKIP
        ['prune', 'export', 'quantize', 'bench']
    """
    source = "<dict>"
    if isinstance(recipe, list):  # the likeliest near miss
        raise ConfigError("recipe: a list of stages; give it as a mapping {'stages': [...]}")
    if not isinstance(recipe, (dict, str, os.PathLike)):
        raise ConfigError(
            f"recipe={type(recipe).__name__}: expected a recipe YAML's path, a shipped recipe's "
            "name or a mapping {'stages': [...]}"
        )
    if not isinstance(recipe, dict):
        path = recipe_path(recipe)
        source = str(path)
        try:
            recipe = yaml.load(path.read_text(), Loader=UniqueKeyLoader)  # noqa: S506 - safe
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML ({yaml_problem(e)})") from e
        except UnicodeDecodeError as e:
            raise ConfigError(f"{path}: not a text file, so no recipe ({e.reason})") from e
    if not isinstance(recipe, dict):
        raise ConfigError(f"{source}: a recipe is a mapping with a 'stages' list")
    recipe = plain_numbers(recipe)  # a mapping built in Python may hold numpy numbers
    changed = recipe
    if isinstance(sets, str):  # one --set given alone, not its characters
        sets = [sets]
    for item in sets:
        changed = _with_set(changed, item, source)
    try:
        return _checked(changed, source)
    except ConfigError as e:
        culprit = _set_to_blame(recipe, sets, source, str(e))
        if culprit is None:
            raise
        # the file is fine as written (a shipped one, which the user did not write): the
        # mistake is in what --set changed
        msg = str(e).removeprefix(f"{source}: ")
        raise ConfigError(f"--set {culprit!r} (on {source}): {msg}") from e


def _set_to_blame(recipe: dict, sets: typing.Sequence[str], source: str, error: str) -> str | None:
    """Which of ``sets`` brought ``error`` (what :func:`_checked` says of ``recipe`` with
    all of them applied): the one without which the recipe no longer fails so; None when
    ``recipe`` fails so without them (the file's own mistake) or there are none."""
    if not sets:
        return None

    def fails_so(items: typing.Sequence[str]) -> bool:
        changed = recipe
        for item in items:
            changed = _with_set(changed, item, source)
        try:
            _checked(changed, source)
        except ConfigError as e:
            return str(e) == error
        return False

    if fails_so(()):
        return None
    for n, item in enumerate(sets):
        if not fails_so([*sets[:n], *sets[n + 1 :]]):
            return item
    return sets[-1]  # each alone would do it (two --set of the same key): the last one


def _checked(recipe: dict, source: str) -> Recipe:
    """The Recipe a loaded mapping (``--set``s applied) describes, every value checked."""
    unknown = sorted(set(recipe) - {"name", "description", "stages"})
    if unknown:
        raise ConfigError(f"{source}: unknown top-level key(s) {unknown}")
    raw_stages = recipe.get("stages")
    if not isinstance(raw_stages, list) or not raw_stages:
        raise ConfigError(f"{source}: 'stages' must be a non-empty list")
    stages = []
    for i, item in enumerate(raw_stages, 1):
        if isinstance(item, str):
            item = {item: {}}
        if not isinstance(item, dict) or len(item) != 1:
            raise ConfigError(f"{source}: stage {i} must be a one-key mapping {{stage: config}}")
        ((name, values),) = item.items()
        where = f"{source}: stage {i} ({name})"
        if name not in STAGES:
            raise ConfigError(f"{where}: unknown stage {name!r}; stages are {', '.join(STAGES)}")
        values = {} if values is None else values
        if not isinstance(values, dict):
            raise ConfigError(f"{where}: config must be a mapping, got {type(values).__name__}")
        stages.append(Stage(name, _parse_stage(name, values, where), dict(values)))
    stages = _bench_sizes(stages, source)
    _check_order(stages, source)
    return Recipe(
        name=str(recipe.get("name") or Path(source).stem),
        description=str(recipe.get("description") or ""),
        stages=tuple(stages),
        source=source,
    )


# a number in exponent form without a dot, which YAML 1.1 (PyYAML) reads as a string
_FLOAT = re.compile(r"[-+]?\d+[eE][-+]?\d+")


def _with_set(recipe: dict, item: str, source: str) -> dict:
    """``recipe`` with one ``STAGE.KEY[.KEY...]=VALUE`` applied (see :func:`load_recipe`)."""
    import copy

    what = f"--set {item!r}"
    target, eq, text = str(item).partition("=")
    path = target.strip().split(".")
    if not eq or len(path) < 2 or not all(path):
        raise ConfigError(f"{what}: give STAGE.KEY=VALUE (e.g. prune.finetune_epochs=2)")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{what}: the value is not YAML ({yaml_problem(e)})") from e
    if isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
        value = float(value)  # YAML 1.1 reads 5e-1 and 1e2 (no dot) as strings: refused
    stages = recipe.get("stages")
    if not isinstance(stages, list):
        raise ConfigError(f"{source}: 'stages' must be a non-empty list")
    named = [next(iter(s)) if isinstance(s, dict) and s else s for s in stages]
    stage, *keys = path
    picked = [int(stage) - 1] if stage.isdigit() else [i for i, n in enumerate(named) if n == stage]
    if not picked or not all(0 <= i < len(stages) for i in picked):
        raise ConfigError(
            f"{what}: {source} has no stage {stage!r} (its stages: "
            f"{', '.join(f'{i} ({n})' for i, n in enumerate(named, 1))})"
        )
    recipe = copy.deepcopy(recipe)
    for i in picked:
        entry = recipe["stages"][i]
        if isinstance(entry, str):  # "reparam": a stage without settings
            entry = recipe["stages"][i] = {entry: {}}
        ((name, settings),) = entry.items()
        settings = entry[name] = {} if settings is None else settings
        walked = [name]
        for key in keys[:-1]:
            if not isinstance(settings, dict):
                break
            if settings.get(key) is None:
                settings[key] = {}
            settings, walked = settings[key], [*walked, key]
        if not isinstance(settings, dict):
            raise ConfigError(f"{what}: stage {i + 1}'s {'.'.join(walked)} is not a mapping")
        settings[keys[-1]] = value
    return recipe


def _check_order(stages: list[Stage], source: str) -> None:
    """A ``nas`` stage finds an untrained architecture: the stage after it must train it,
    ``train`` or ``distill`` (prune would rank random weights' channels, export and bench
    would ship them)."""
    for i, (st, after) in enumerate(zip(stages, stages[1:], strict=False), 1):
        if st.name == "nas" and after.name not in ("train", "distill"):
            raise ConfigError(
                f"{source}: stage {i + 1} ({after.name}) follows nas, whose architecture is "
                "untrained; put a train (or distill) stage between them"
            )


def _bench_sizes(stages: list[Stage], source: str) -> list[Stage]:
    """A bench stage measures every artifact made before it at one input size, and a static
    export or quantized model runs only at its own. Refuse sizes that cannot agree now, not
    hours later when the bench stage starts, and give a bench stage without ``imgsz`` the
    size its earlier stages chose."""
    out: list[Stage] = []
    static: list[tuple[int, str, int | None]] = []  # export/quantize stages: (n, name, imgsz)
    for i, st in enumerate(stages, 1):
        cfg = st.config
        if st.name == "quantize" or (st.name == "export" and not cfg.dynamic):
            static.append((i, st.name, cfg.imgsz))
        if st.name == "bench":
            sized = static + [(i, "bench", cfg.imgsz)]
            given = [x for x in sized if x[2] is not None]
            if given:
                j, name, size = given[0]
                for k, other, value in sized:
                    if value != size and (other != "bench" or value is not None):
                        what = "no imgsz (the checkpoint's)" if value is None else f"imgsz={value}"
                        raise ConfigError(
                            f"{source}: stage {k} ({other}) has {what} but stage {j} ({name}) "
                            f"imgsz={size}; the bench stage (stage {i}) measures every artifact "
                            f"at one size and a static export runs only at its own: give stage "
                            f"{k} imgsz={size}"
                        )
                if cfg.imgsz is None:
                    st = Stage(st.name, dataclasses.replace(cfg, imgsz=size), st.raw)
        out.append(st)
    return out
