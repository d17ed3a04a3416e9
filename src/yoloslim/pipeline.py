"""``compress RECIPE``: run an ordered list of stages, resumably, and bench every result in one run.

A recipe is YAML::

    name: cpu-int8
    description: prune + distil + INT8 OpenVINO
    stages:
      - prune: {ratio: 0.5, criterion: l2, finetune_epochs: 0}
      - distill: {loss: cwd, train: {epochs: 3}}
      - export: {formats: [onnx, openvino]}
      - quantize: {backend: openvino, max_drop: 0.5}
      - bench: {batches: [1]}

Each stage is a one-key mapping from a stage name (:data:`STAGES`) to its config. The
whole recipe is validated when it loads: unknown stages, unknown keys, wrong types and
bad values (export formats and sizes, bench batches, ...) are :class:`ConfigError` naming
the file and the stage. Before anything is written, :func:`run_recipe` also checks what
this machine can export (an ``engine`` format is skipped with a warning without TensorRT
and CUDA). Stage ``i`` writes to ``OUT/NN-name/`` and, when it finishes,
``OUT/NN-name/stage.json`` with its outputs; a run with ``resume=True`` skips the stages
that have one, and refuses a changed recipe, model or data. The resolved recipe (every
default filled in) is written to ``OUT/recipe.yaml``, the model and data to
``OUT/inputs.json``.

The model flows from stage to stage as a checkpoint path; ``export`` and ``quantize``
add artifacts. ``bench`` measures the baseline (the input model exported to OpenVINO
float, the reference every ratio is against), every checkpoint a stage produced (exported
to OpenVINO float) and every artifact, in one run, and writes ``OUT/report.{md,json}``
and ``OUT/pareto.png``.

Example:
    >>> res = run_recipe("runs/base/best.pt", "data.yaml", "recipes/cpu-int8.yaml", out="runs/c")
    >>> res.report["bench"]["rows"][-1]["ratios"]["speedup"]
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import shutil
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from yoloslim.configs import from_mapping
from yoloslim.errors import ConfigError
from yoloslim.fileio import atomic_write_text
from yoloslim.result import Result

__all__ = ["STAGES", "Recipe", "Stage", "load_recipe", "run_recipe"]

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

    def __post_init__(self) -> None:
        from yoloslim.export.registry import EXPORTERS

        if not EXPORTERS:
            import yoloslim.export  # noqa: F401 - registers the formats

        bad = [f for f in self.formats if not isinstance(f, str) or f not in EXPORTERS]
        if bad or not self.formats:
            raise ConfigError(
                f"formats={list(self.formats)}: unknown export format(s) {bad}; "
                f"choose from {sorted(EXPORTERS)}"
            )
        _check_imgsz(self.imgsz)


@dataclass(frozen=True)
class BenchStage:
    """Config of the ``bench`` stage (see :func:`yoloslim.bench.measure.benchmark`)."""

    batches: list = field(default_factory=lambda: [1])
    rounds: int = 10
    runs_per_round: int = 10
    threads: int | None = None
    imgsz: int | None = None

    def __post_init__(self) -> None:
        if not self.batches or not all(_positive_int(b) for b in self.batches):
            raise ConfigError(f"batches={list(self.batches)} must be positive integers")
        for key in ("rounds", "runs_per_round", "threads"):
            value = getattr(self, key)
            if value is not None and not _positive_int(value):
                raise ConfigError(f"{key}={value!r} must be a positive integer")
        _check_imgsz(self.imgsz)


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _check_imgsz(imgsz: Any) -> None:
    if imgsz is not None and (not _positive_int(imgsz) or imgsz % 32):
        raise ConfigError(f"imgsz={imgsz!r} must be a positive multiple of 32")


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

    def resolved(self) -> dict:
        cfg = self.config
        if isinstance(cfg, TrainStage):
            values = {**_plain(cfg.config), **({"model": cfg.model} if cfg.model else {})}
        elif isinstance(cfg, DistillStage):
            values = {**_plain(cfg.config), **({"teacher": cfg.teacher} if cfg.teacher else {})}
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

    def resolved(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "stages": [s.resolved() for s in self.stages],
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
            raise ConfigError(f"{where}: {key}={value!r} must be {names}")


def _simple(cls: type, values: dict, where: str):
    _check_types(cls, {k: v for k, v in values.items() if k in _field_names(cls)}, where)
    return from_mapping(cls, values, where)


def _field_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def _parse_stage(name: str, values: dict, where: str) -> Any:
    """The config object of one stage; every error names ``where``."""
    try:
        if name == "export":
            return _simple(ExportStage, values, where)
        if name == "bench":
            return _simple(BenchStage, values, where)
        if name == "reparam":
            return _simple(ReparamStage, values, where)
        if name == "train":
            from yoloslim.train.config import TrainConfig, config_from_dict

            values = dict(values)
            model = values.pop("model", None)
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
            _check_types(DistillConfig, {k: v for k, v in values.items() if k != "train"}, where)
            return DistillStage(config=DistillConfig.from_dict(values), teacher=teacher)
        if name == "quantize":
            from yoloslim.compress.quant_config import QuantConfig

            _check_types(QuantConfig, values, where)
            return QuantConfig.from_dict(values)
        if name == "nas":
            from yoloslim.nas import Budget, SearchSpace
            from yoloslim.nas.search import _DICT_KEYS

            unknown = sorted(set(values) - _DICT_KEYS)
            if unknown:
                raise ConfigError(f"unknown key(s) {unknown}; allowed: {sorted(_DICT_KEYS)}")
            Budget.from_dict(values.get("budget") or {})
            SearchSpace.from_dict(values.get("space"))
            return NasStage(options=dict(values))
    except ConfigError as e:
        msg = str(e).replace(f" in {where}", "")  # from_mapping names ``where`` mid-sentence
        raise ConfigError(msg if msg.startswith(where) else f"{where}: {msg}") from e
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from e
    raise ConfigError(f"{where}: unknown stage {name!r}; stages are {', '.join(STAGES)}")


def _yaml_problem(e: yaml.YAMLError) -> str:
    """PyYAML's multi-line message as one line: the line, the column and the problem."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    if mark is None:
        return problem
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"


def load_recipe(recipe: str | Path | dict) -> Recipe:
    """Parse and validate a recipe (a YAML path or an already-loaded dict)."""
    source = "<dict>"
    if not isinstance(recipe, dict):
        path = Path(recipe)
        source = str(path)
        if not path.is_file():
            raise ConfigError(f"{path}: recipe file does not exist")
        try:
            recipe = yaml.safe_load(path.read_text())
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML ({_yaml_problem(e)})") from e
    if not isinstance(recipe, dict):
        raise ConfigError(f"{source}: a recipe is a mapping with a 'stages' list")
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
    return Recipe(
        name=str(recipe.get("name") or Path(source).stem),
        description=str(recipe.get("description") or ""),
        stages=tuple(stages),
        source=source,
    )


# ----------------------------------------------------------------------------- running


@dataclass
class _State:
    """What flows between stages (all paths, so that it survives a resume as JSON)."""

    baseline: str | None
    model: str | None  # current checkpoint (or arch.yaml / name before the first train)
    # [name, path, kind(, source checkpoint)] to bench; kind is "ckpt" or "artifact"
    rows: list = field(default_factory=list)

    def to_json(self) -> dict:
        return {"baseline": self.baseline, "model": self.model, "rows": self.rows}


def _stage_prune(st: _State, cfg, data, out: Path, progress: bool) -> dict:
    from yoloslim.compress.prune import prune

    res = prune(st.model, data, config=cfg, out=out, progress=progress)
    ckpt = str(res.artifacts["checkpoint"])
    return {"model": ckpt, "rows": [["pruned", ckpt, "ckpt"]], "report": res.report}


def _stage_distill(st: _State, cfg: DistillStage, data, out: Path, progress: bool) -> dict:
    from yoloslim.compress.distill import distill

    teacher = cfg.teacher or st.baseline
    if teacher is None:
        raise ConfigError("distill stage: no teacher (set 'teacher:' or pass --model)")
    res = distill(st.model, teacher, data, config=cfg.config, out=out, progress=progress)
    ckpt = str(res.artifacts["best"])
    return {"model": ckpt, "rows": [["distilled", ckpt, "ckpt"]], "report": res.report}


def _stage_train(st: _State, cfg: TrainStage, data, out: Path, progress: bool) -> dict:
    from yoloslim.train import train

    model = cfg.model or st.model
    if model is None:
        raise ConfigError("train stage: nothing to train (set 'model:' or pass --model)")
    res = train(
        model,
        data,
        config=cfg.config,
        out=out,
        resume=(out / "last.pt").exists(),
        progress=progress,
    )
    ckpt = str(res.best)
    return {"model": ckpt, "rows": [["trained", ckpt, "ckpt"]], "report": res.report}


def _stage_nas(st: _State, cfg: NasStage, data, out: Path, progress: bool) -> dict:
    from yoloslim.nas import search_from_dict

    res = search_from_dict(cfg.options, out, progress=progress)
    return {"model": str(out / "arch.yaml"), "rows": [], "report": res.report}


def _stage_reparam(st: _State, cfg, data, out: Path, progress: bool) -> dict:
    from yoloslim.compress.reparam import reparameterize
    from yoloslim.models.checkpoint import load_checkpoint

    model, _ = load_checkpoint(st.model)
    res = reparameterize(model)
    res.save_report(out / "reparam_report.json")
    # the checkpoint stays in train form: export and quantize fuse it again on the way out
    return {"model": st.model, "rows": [], "report": res.report}


def _stage_export(st: _State, cfg: ExportStage, data, out: Path, progress: bool) -> dict:
    from yoloslim.export import export

    res = export(
        st.model,
        out,
        formats=list(cfg.formats),
        imgsz=cfg.imgsz,
        dynamic=cfg.dynamic,
        half=cfg.half,
        verify=cfg.verify,
    )
    rows = [
        [f"export-{k}", str(v), "artifact", st.model]
        for k, v in res.artifacts.items()
        if Path(v).suffix in (".onnx", ".xml", ".torchscript")
    ]
    deployable = {f"export-{k}": str(v) for k, v in res.artifacts.items()}
    return {"model": st.model, "rows": rows, "report": res.report, "deployable": deployable}


def _stage_config(stage: Stage, *, benched: bool) -> Any:
    """The stage's config as run: a quantize stage that a later bench stage measures anyway
    skips its own float-vs-INT8 latency workers, unless the recipe sets ``advanced.latency``."""
    cfg = stage.config
    if stage.name != "quantize" or not benched or "latency" in (stage.raw.get("advanced") or {}):
        return cfg
    return dataclasses.replace(cfg, advanced=dataclasses.replace(cfg.advanced, latency=False))


def _exported_onnx(st: _State, imgsz: int | None) -> str | None:
    """The static-batch ONNX an export stage already wrote of ``st.model`` at ``imgsz``
    (None: the checkpoint's), so that quantize need not export the same graph again."""
    if not st.model or Path(st.model).suffix != ".pt":
        return None
    found = [
        path
        for name, path, _, *source in st.rows
        if name == "export-onnx" and source == [st.model] and Path(path).is_file()
    ]
    if not found:
        return None
    import onnx

    from yoloslim.export.common import onnx_metadata
    from yoloslim.models.checkpoint import read_checkpoint

    want = str(imgsz or read_checkpoint(st.model)["imgsz"])
    for path in found:
        proto = onnx.load(path, load_external_data=False)
        batch = proto.graph.input[0].type.tensor_type.shape.dim[0]
        if onnx_metadata(proto).get("imgsz") == want and batch.HasField("dim_value"):
            return path
    return None


def _stage_quantize(st: _State, cfg, data, out: Path, progress: bool) -> dict:
    from yoloslim.compress.quantize import quantize

    source = _exported_onnx(st, cfg.imgsz) or st.model
    res = quantize(source, data, config=cfg, out=out, progress=progress)
    rows = [
        [f"{k}-{cfg.backend}", str(v), "artifact"] for k, v in res.artifacts.items() if k != "float"
    ]
    deployable = {name: path for name, path, _ in rows}
    return {"model": st.model, "rows": rows, "report": res.report, "deployable": deployable}


def _stage_bench(
    st: _State, cfg: BenchStage, data, out: Path, progress: bool, run_dir: Path
) -> dict:
    from yoloslim.bench.latency import LatencyConfig
    from yoloslim.bench.measure import benchmark
    from yoloslim.bench.report import write_report
    from yoloslim.export import export

    names, paths = [], []
    # a checkpoint an export stage already wrote to OpenVINO is measured from that artifact
    exported = {r[3]: r[1] for r in st.rows if len(r) > 3 and r[1].endswith(".xml")}
    candidates = ([["baseline", st.baseline, "ckpt"]] if st.baseline else []) + st.rows
    for name, path, kind, *_ in candidates:
        if kind == "ckpt":
            if path not in exported:
                res = export(
                    path, out / f"{len(exported):02d}-{name}", formats=["openvino"], imgsz=cfg.imgsz
                )
                exported[path] = str(res.artifacts["openvino"])
            path, name = exported[path], f"{name} (OV float)"
        if path in paths:
            continue
        names.append(name)
        paths.append(path)
    lat = LatencyConfig(rounds=cfg.rounds, runs_per_round=cfg.runs_per_round, threads=cfg.threads)
    res = benchmark(
        paths, data, imgsz=cfg.imgsz, batches=tuple(cfg.batches), latency=lat, names=names
    )
    write_report(res.report, out)
    write_report(res.report, run_dir)  # the run's final report sits at its top level
    return {"model": st.model, "rows": [], "report": res.report}


_RUNNERS: dict[str, Callable] = {
    "nas": _stage_nas,
    "train": _stage_train,
    "prune": _stage_prune,
    "distill": _stage_distill,
    "reparam": _stage_reparam,
    "export": _stage_export,
    "quantize": _stage_quantize,
}


def _preflight(rec: Recipe) -> tuple[dict[int, Any], list[dict]]:
    """What this machine can run, decided before any stage starts: the export stages'
    configs as run (``{stage index: config}``) and the formats skipped.

    An ``engine`` (TensorRT) format is skipped with a warning when TensorRT or a CUDA
    device is missing, so that one recipe serves GPU and CPU machines; any other format
    whose runtime is missing, or an export stage left with nothing to write, is a
    :class:`ConfigError` naming the file and the stage.
    """
    from yoloslim.export.registry import EXPORTERS

    if not EXPORTERS:
        import yoloslim.export  # noqa: F401 - registers the formats

    configs: dict[int, Any] = {}
    skipped: list[dict] = []
    for i, stage in enumerate(rec.stages, 1):
        where = f"{rec.source}: stage {i} ({stage.name})"
        if stage.name == "bench":
            reason = EXPORTERS["openvino"].unavailable()
            if reason:  # it exports every checkpoint to OpenVINO float
                raise ConfigError(f"{where}: the bench stage needs OpenVINO: {reason}")
        if stage.name != "export":
            continue
        kept = []
        for fmt in stage.config.formats:
            reason = EXPORTERS[fmt].unavailable()
            if reason is None:
                kept.append(fmt)
            elif fmt == "engine":
                log.warning("%s: skipping the engine format: %s", where, reason)
                skipped.append({"stage": i, "format": fmt, "reason": reason})
            else:
                raise ConfigError(f"{where}: cannot export {fmt}: {reason}")
        if not kept:
            raise ConfigError(
                f"{where}: formats={list(stage.config.formats)}: nothing left to export here "
                "(the engine format needs TensorRT and a CUDA device)"
            )
        configs[i] = dataclasses.replace(stage.config, formats=kept)
    return configs, skipped


def _inputs(model: str | Path | None, data: str | Path) -> dict:
    """What a resumed run must be given again: the model file (path, size, mtime) and data."""
    entry: dict = {"model": None, "data": str(Path(data).resolve())}
    if model is not None:
        st = Path(model).stat()
        entry.update(
            model=str(Path(model).resolve()), model_bytes=st.st_size, model_mtime_ns=st.st_mtime_ns
        )
    return entry


def _check_resume_inputs(out: Path, inputs: dict) -> None:
    saved_file = out / "inputs.json"
    if not saved_file.exists():  # a run from before inputs.json was written
        return
    saved = json.loads(saved_file.read_text())
    for key, flag in (("model", "--model"), ("data", "--data")):
        if saved.get(key) != inputs[key]:
            raise ConfigError(
                f"{out}: this run was made with {flag} {saved.get(key)}, not {inputs[key]}; "
                f"resume with the same {flag} or choose another --out"
            )
    if (saved.get("model_bytes"), saved.get("model_mtime_ns")) != (
        inputs.get("model_bytes"),
        inputs.get("model_mtime_ns"),
    ):
        raise ConfigError(
            f"{out}: --model {inputs['model']} changed since this run (size or modification "
            "time); choose another --out"
        )


def run_recipe(
    model: str | Path | None,
    data: str | Path,
    recipe: str | Path | dict | Recipe,
    *,
    out: str | Path = "runs/compress",
    resume: bool = False,
    progress: bool = False,
) -> Result:
    """Run a recipe's stages in order on ``model`` (a checkpoint; None when the recipe starts
    with ``nas``/``train``) and return the last ``bench`` report (or the last stage's).

    Everything is checked before anything is written to ``out``: the recipe, the model and
    data paths, the formats this machine can export (an ``engine`` format is skipped with a
    warning without TensorRT and CUDA), and, on a resume, that the recipe, ``model`` and
    ``data`` are the run's own. A folder where no stage finished may be reused freely.
    ``report["final_model"]`` is the last checkpoint and ``report["deployable"]`` the
    artifacts of the last stage that made any (``{name: path}``).

    Raises:
        ConfigError: invalid recipe, a missing model or data file, a format this machine
            cannot export, ``out`` holds another run and ``resume`` is False, or the recipe,
            model or data differ from the run being resumed.
    """
    rec = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    out = Path(out)
    data = str(data)
    if model is not None and not Path(model).is_file():
        raise ConfigError(f"--model {model}: checkpoint does not exist")
    if not Path(data).exists():
        raise ConfigError(f"--data {data}: does not exist")
    run_configs, skipped = _preflight(rec)
    resolved = yaml.safe_dump(rec.resolved(), sort_keys=False)
    inputs = _inputs(model, data)
    saved = out / "recipe.yaml"
    if saved.exists() and any(out.glob("[0-9][0-9]-*/stage.json")):
        if not resume:
            raise ConfigError(f"{out}: holds a compress run; pass --resume or choose another --out")
        if saved.read_text() != resolved:
            raise ConfigError(f"{out}: the recipe changed since this run; use another --out")
        _check_resume_inputs(out, inputs)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(saved, resolved)
    atomic_write_text(out / "inputs.json", json.dumps(inputs, indent=1) + "\n")

    st = _State(baseline=str(model) if model else None, model=str(model) if model else None)
    stage_reports: list[dict] = []
    result_report: dict = {}
    deployable: dict = {}
    for i, stage in enumerate(rec.stages, 1):
        sdir = out / f"{i:02d}-{stage.name}"
        done = sdir / "stage.json"
        if resume and done.exists():
            record = json.loads(done.read_text())
            log.info("resume: stage %d (%s) already done", i, stage.name)
        else:
            if sdir.exists() and stage.name != "train":
                shutil.rmtree(sdir)  # an interrupted stage's partial outputs (train resumes)
            sdir.mkdir(parents=True, exist_ok=True)
            log.info("stage %d/%d: %s", i, len(rec.stages), stage.name)
            if stage.name == "bench":
                outcome = _stage_bench(st, stage.config, data, sdir, progress, out)
            else:
                cfg = run_configs.get(i) or _stage_config(
                    stage, benched=any(s.name == "bench" for s in rec.stages[i:])
                )
                outcome = _RUNNERS[stage.name](st, cfg, data, sdir, progress)
            record = {
                "stage": stage.name,
                "index": i,
                "model": outcome["model"],
                "rows": outcome["rows"],
                "report": outcome["report"],
                "deployable": outcome.get("deployable", {}),
            }
            atomic_write_text(done, json.dumps(record, indent=1, default=str) + "\n")
        st.model = record["model"]
        st.rows.extend(record["rows"])
        made = record.get("deployable")
        if made is None:  # a stage.json from before "deployable" was recorded
            made = {r[0]: r[1] for r in record["rows"] if r[2] == "artifact"}
        deployable = made or deployable
        stage_reports.append({"stage": stage.name, "index": i, "dir": str(sdir)})
        if stage.name == "bench":
            result_report = record["report"]
    final = {
        "recipe": rec.name,
        "stages": stage_reports,
        "final_model": st.model,
        "deployable": deployable,
        "skipped": skipped,
        "artifacts": st.rows,
        "bench": result_report,
    }
    atomic_write_text(out / "compress.json", json.dumps(final, indent=1, default=str) + "\n")
    artifacts = {row[0]: Path(row[1]) for row in st.rows}
    return Result(model=st.model, report=final, artifacts=artifacts)


# ----------------------------------------------------------------------------- budget mode


def _template(rec: Recipe, name: str, default: Any) -> Any:
    for s in rec.stages:
        if s.name == name:
            return s.config
    return default


def select_candidate(
    candidates: list[tuple[float, str, str]],
    rows: list[dict],
    max_drop: float | None,
    target_latency: float | None,
) -> tuple[list[dict], dict | None]:
    """The budget front and the fastest candidate within it (None when none qualifies).

    ``candidates`` are ``(prune ratio, scheme, artifact)``, ``rows`` their bench rows in the
    same order, the first being the baseline that mAP drops are measured from. A candidate
    qualifies when its mAP50-95 drop is at most ``max_drop`` points and its median batch-1
    latency at most ``target_latency`` ms (a ``None`` budget always holds).
    """
    base_map = rows[0]["map"]
    front, best = [], None
    for (ratio, scheme, path), row in zip(candidates, rows, strict=True):
        drop = round(100 * (base_map - row["map"]), 6)  # a drop of exactly max_drop is within
        ms = row["latency_ms"]["median"]
        ok = (max_drop is None or drop <= max_drop) and (
            target_latency is None or ms <= target_latency
        )
        entry = {
            "name": row["name"],
            "ratio": ratio,
            "scheme": scheme,
            "path": path,
            "map": row["map"],
            "drop_points": round(drop, 3),
            "latency_ms": ms,
            "ok": ok,
        }
        front.append(entry)
        if ok and (best is None or ms < best["latency_ms"]):
            best = entry
    return front, best


def _finished_bench(saved: Path, paths: list[str], names: list[str], settings: dict) -> dict | None:
    """The bench report of a finished budget run over the same candidates, measured with the
    same ``settings`` (a subset of the report's), else None."""
    if not saved.exists():
        return None
    bench = json.loads(saved.read_text()).get("bench") or {}
    rows = bench.get("rows") or []
    if [(r.get("path"), r.get("name")) for r in rows] != list(zip(paths, names, strict=True)):
        return None
    if any(bench.get("settings", {}).get(k) != v for k, v in settings.items()):
        return None
    return bench


def run_budget(
    model: str | Path,
    data: str | Path,
    recipe: str | Path | dict | Recipe,
    *,
    out: str | Path = "runs/compress",
    target_latency: float | None = None,
    max_drop: float | None = None,
    ratios: tuple[float, ...] = (0.25, 0.5, 0.65),
    resume: bool = False,
    progress: bool = False,
) -> Result:
    """Grid of prune ratios x {float, INT8}; keep the fastest candidate within the budget.

    The recipe's ``prune`` and ``quantize`` stages (or their defaults) are the templates:
    each ratio in ``ratios`` (plus 0, the unpruned model) is pruned and fine-tuned as the
    recipe says, exported once to ONNX (at the quantize stage's ``imgsz``), converted to
    OpenVINO float and quantized from that ONNX. The quantize runs skip their own latency
    and per-layer counters: all candidates are measured together in one ``bench`` run. A
    candidate qualifies when its mAP50-95 is within ``max_drop`` points of the baseline's
    and its median latency at batch 1 is at most ``target_latency`` ms. The fastest qualifying candidate is selected; the report lists
    the whole front (every candidate, with ``ok``), and ``selected`` is None if none
    qualifies. ``resume`` skips every finished candidate; resuming a finished run (say
    with another budget) also reuses its bench measurements and only selects again.
    """
    from yoloslim.bench.latency import LatencyConfig
    from yoloslim.bench.measure import benchmark
    from yoloslim.bench.report import write_report
    from yoloslim.compress.prune import prune
    from yoloslim.compress.prune_config import PruneConfig
    from yoloslim.compress.quant_config import QuantConfig
    from yoloslim.compress.quantize import quantize
    from yoloslim.export import export

    if model is None or not Path(model).is_file():
        raise ConfigError(f"--model {model}: budget mode needs a trained checkpoint")
    if target_latency is None and max_drop is None:
        raise ConfigError("budget mode needs --target-latency and/or --max-drop")
    if max_drop is not None and max_drop < 0:
        raise ConfigError(f"--max-drop {max_drop}: must be >= 0 (mAP points)")
    if target_latency is not None and target_latency <= 0:
        raise ConfigError(f"--target-latency {target_latency}: must be > 0 ms")
    if not ratios or any(not 0 < r < 1 for r in ratios):
        raise ConfigError(f"--ratios {list(ratios)}: prune ratios must each be in (0, 1)")
    rec = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    prune_cfg = _template(rec, "prune", PruneConfig(latency=False))
    quant_cfg = _template(rec, "quantize", QuantConfig())
    # the bench at the end measures every candidate side by side, so each quantize run
    # skips its own float-vs-INT8 latency workers and OpenVINO per-layer counters
    quant_cfg = dataclasses.replace(
        quant_cfg,
        advanced=dataclasses.replace(quant_cfg.advanced, latency=False, perf_counters=False),
    )
    bench_cfg = _template(rec, "bench", BenchStage())
    out = Path(out)
    if (out / "budget.json").exists() and not resume:
        raise ConfigError(f"{out}: holds a budget run; pass --resume or choose another --out")
    out.mkdir(parents=True, exist_ok=True)

    def cached(marker: Path, make: Callable[[], str]) -> str:
        if resume and marker.exists():
            return marker.read_text().strip()
        path = make()
        atomic_write_text(marker, str(path) + "\n")
        return str(path)

    candidates: list[tuple[float, str, str]] = []  # (ratio, scheme, artifact)
    for ratio in (0.0, *ratios):
        cdir = out / "grid" / f"ratio-{ratio:.2f}"
        cdir.mkdir(parents=True, exist_ok=True)
        ckpt = str(model)
        if ratio > 0:
            cfg = dataclasses.replace(
                prune_cfg, ratio=ratio, target_flops=None, target_params=None, latency=False
            )
            ckpt = cached(
                cdir / "pruned.txt",
                lambda cfg=cfg, cdir=cdir: prune(
                    model, data, config=cfg, out=cdir / "prune", progress=progress
                ).artifacts["checkpoint"],
            )

        def exported(ckpt=ckpt, cdir=cdir) -> str:
            # one ONNX export serves both the float IR and the INT8 quantization
            res = export(ckpt, cdir / "float", formats=["onnx", "openvino"], imgsz=quant_cfg.imgsz)
            atomic_write_text(cdir / "onnx.txt", str(res.artifacts["onnx"]) + "\n")
            return str(res.artifacts["openvino"])

        xml = cached(cdir / "float.txt", exported)
        onnx_marker = cdir / "onnx.txt"  # absent in runs from before it was written
        source = onnx_marker.read_text().strip() if onnx_marker.exists() else ckpt
        int8 = cached(
            cdir / "int8.txt",
            lambda source=source, cdir=cdir: quantize(
                source, data, config=quant_cfg, out=cdir / "int8", progress=progress
            ).artifacts["int8"],
        )
        candidates += [(ratio, "float", xml), (ratio, "int8", int8)]

    names = [f"prune {r:.2f} {s}" if r else f"baseline {s}" for r, s, _ in candidates]
    lat = LatencyConfig(
        rounds=bench_cfg.rounds, runs_per_round=bench_cfg.runs_per_round, threads=bench_cfg.threads
    )
    paths = [p for _, _, p in candidates]
    same = {
        "rounds": lat.rounds,
        "runs_per_round": lat.runs_per_round,
        "threads": lat.threads or "runtime default",
        "data": str(data),
    }
    bench = _finished_bench(out / "budget.json", paths, names, same) if resume else None
    if bench is None:
        bench = benchmark(paths, data, batches=(1,), latency=lat, names=names).report
        write_report(bench, out)
    front, best = select_candidate(candidates, bench["rows"], max_drop, target_latency)
    final = {
        "recipe": rec.name,
        "mode": "budget",
        "target_latency_ms": target_latency,
        "max_drop_points": max_drop,
        "front": front,
        "selected": best,
        "final_model": best["path"] if best else None,
        "bench": bench,
    }
    atomic_write_text(out / "budget.json", json.dumps(final, indent=1, default=str) + "\n")
    return Result(
        model=final["final_model"],
        report=final,
        artifacts={e["name"]: Path(e["path"]) for e in front},
    )
