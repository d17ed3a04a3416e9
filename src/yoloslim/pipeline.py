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
    >>> speedup = res.report["bench"]["rows"][-1]["ratios"]["speedup"]  # over the baseline
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from yoloslim.configs import DEFAULT_IMGSZ, check_flags, check_path
from yoloslim.errors import ConfigError, ModelError, YoloslimError
from yoloslim.fileio import (
    atomic_write_text,
    folder_lock,
    refuse_if_held,
    refuse_overwriting_input,
    remove_stale_temps,
    staged,
)
from yoloslim.recipe import (
    STAGES,
    BenchStage,
    DistillStage,
    ExportStage,
    NasStage,
    Recipe,
    Stage,
    TrainStage,
    check_stage_threads,
    load_recipe,
)
from yoloslim.result import Result
from yoloslim.torch_state import keeps_caller_state

__all__ = ["STAGES", "Recipe", "Stage", "load_recipe", "run_recipe"]

log = logging.getLogger(__name__)

# stages that continue from their own last.pt on a resume (the others start again)
_RESUMABLE = ("train", "distill")
# what a stage run again keeps of its folder: the latencies a nas stage measured (keyed by
# candidate and runtime, they hold whatever ran before), which a stopped search would lose
_KEPT = {"nas": ("nas_latency_cache.jsonl",)}


def _stage_file_names() -> re.Pattern[str]:
    """The names the stages write into their folders (and their staging and temp names)."""
    from yoloslim.train.run_folder import RUN_FILES

    own = [
        r"stage\.json",
        r"\..*",  # staging folders and temp files
        r"model[._].*",  # export's artifacts (and its OpenVINO folder)
        # quantize's roles, each an ONNX folder or an OpenVINO one (int8_openvino was a
        # user's file to a rerun, and stayed)
        r"triton|export|(float|fp16|bf16|int8)(_openvino)?|export_report\.json|quant_.*\.(json|md)",
        r"pruned\.pt|prune_report\.json|finetune(_step\d+)?|reparam_report\.json",
        r"arch\.yaml|nas_report\.json|nas_latency_cache\.jsonl",
        r"report\.(json|md)|pareto\.png|\d\d-.+",  # bench's report and its rows' exports
        *(re.escape(n) for n in RUN_FILES),
    ]
    return re.compile("|".join(own))


def _empty_stage_folder(sdir: Path, keep: tuple[str, ...]) -> None:
    """Remove what the stage wrote in ``sdir`` but the files named in ``keep``; a file or
    folder of another name (a user's notes) is kept, and said."""
    own = _stage_file_names()
    kept = []
    for entry in sdir.iterdir():
        if entry.name in keep and entry.is_file() and not entry.is_symlink():
            continue
        if not own.fullmatch(entry.name):
            kept.append(entry.name)
        elif entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    if kept:
        log.warning(
            "%s: kept %s, which no stage writes, while the stage runs there again",
            sdir,
            ", ".join(sorted(kept)),
        )


@dataclass
class _State:
    """What flows between stages (all paths, so that it survives a resume as JSON)."""

    baseline: str | None
    model: str | None  # current checkpoint (or arch.yaml / name before the first train)
    # [name, path, kind(, source checkpoint)] to bench; kind is "ckpt" or "artifact"
    rows: list = field(default_factory=list)


def _stage_prune(st: _State, cfg, data, out: Path, progress: bool) -> dict:
    from yoloslim.compress.prune import prune

    # the stage's own folder: a resumed run may have written its pruned.pt already
    res = prune(st.model, data, config=cfg, out=out, exist_ok=True, progress=progress)
    ckpt = str(res.artifacts["checkpoint"])
    return {"model": ckpt, "rows": [["pruned", ckpt, "ckpt"]], "report": res.report}


def _going_on(out: Path, model: str | None) -> tuple[str | None, dict]:
    """The model and arguments of a train or distill stage: going on from the ``last.pt`` an
    interrupted run left in its folder (its own model), else starting afresh there (what a
    stop left before ``last.pt`` was written goes)."""
    resume = (out / "last.pt").exists()
    return None if resume else model, {"resume": resume, "exist_ok": not resume}


def _stage_distill(st: _State, cfg: DistillStage, data, out: Path, progress: bool) -> dict:
    from yoloslim.compress.distill import distill, settings_checked

    teacher = cfg.teacher or st.baseline
    if teacher is None:
        raise ConfigError("distill stage: no teacher (set its 'teacher:', or give the run a model)")
    student, again = _going_on(out, st.model)
    with settings_checked():  # when the run began (_check_unused_settings), not on its resume
        res = distill(
            student, teacher, data, config=cfg.config, out=out, progress=progress, **again
        )
    ckpt = str(res.artifacts["best"])
    return {"model": ckpt, "rows": [["distilled", ckpt, "ckpt"]], "report": res.report}


def _stage_train(st: _State, cfg: TrainStage, data, out: Path, progress: bool) -> dict:
    from yoloslim.train import train

    model = cfg.model or st.model
    if model is None:
        raise ConfigError(
            "train stage: nothing to train (set its 'model:', or give the run a model)"
        )
    model, again = _going_on(out, model)
    res = train(model, data, config=cfg.config, out=out, progress=progress, **again)
    ckpt = str(res.best)
    return {"model": ckpt, "rows": [["trained", ckpt, "ckpt"]], "report": res.report}


def _stage_nas(st: _State, cfg: NasStage, data, out: Path, progress: bool) -> dict:
    from yoloslim.data.config import load_data_config
    from yoloslim.nas import search_from_dict

    options = dict(cfg.options)
    if "nc" not in options:  # the FLOPs budget counts the head the data's classes need
        options["nc"] = len(load_data_config(data).names)
    res = search_from_dict(options, out, progress=progress)
    return {"model": str(out / "arch.yaml"), "rows": [], "report": res.report}


def _stage_reparam(st: _State, cfg, data, out: Path, progress: bool) -> dict:
    from yoloslim.compress.reparam import reparameterize
    from yoloslim.models.checkpoint import load_checkpoint

    model, _ = load_checkpoint(st.model)
    res = reparameterize(model)
    # the stage's own record (save_report refuses to replace a run's record)
    atomic_write_text(out / "reparam_report.json", res.to_json() + "\n")
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
        triton_name=cfg.triton_name,
        triton_max_batch=cfg.triton_max_batch,
        progress=progress,
        nms=cfg.nms,
        nms_conf=cfg.nms_conf,
        nms_iou=cfg.nms_iou,
        nms_max_det=cfg.nms_max_det,
    )
    from yoloslim.export.registry import EXPORTERS

    def fp16(k: str) -> bool:  # half stored FP16 weights in this artifact
        return cfg.half and k in EXPORTERS and EXPORTERS[k].honours_half

    names = {k: f"export-{k}-fp16" if fp16(k) else f"export-{k}" for k in res.artifacts}
    # the 4th field names the checkpoint an OpenVINO IR is the float form of, which a bench
    # stage measures instead of exporting it again; an FP16 IR (half) is not that, so it
    # keeps its own row (named so: its precision column says what the plugin computes in)
    # and the bench exports the FP32 one
    rows = [
        [names[k], str(v), "artifact", None if fp16(k) else st.model]
        for k, v in res.artifacts.items()
        if Path(v).suffix in (".onnx", ".xml", ".torchscript")
    ]
    deployable = {names[k]: str(v) for k, v in res.artifacts.items()}
    return {"model": st.model, "rows": rows, "report": res.report, "deployable": deployable}


def _stage_config(stage: Stage, *, benched: bool) -> Any:
    """The stage's config as run: a quantize stage that a later bench stage measures anyway
    skips its own float-vs-INT8 latency workers, unless the recipe sets ``advanced.latency``."""
    cfg = stage.config
    if stage.name != "quantize" or not benched or "latency" in (stage.raw.get("advanced") or {}):
        return cfg
    return dataclasses.replace(cfg, advanced=dataclasses.replace(cfg.advanced, latency=False))


def _as_run(rec: Recipe) -> Recipe:
    """``rec`` with each stage's config as it will run (see :func:`_stage_config`), so that
    ``OUT/recipe.yaml`` describes the run and, fed back as a recipe, repeats it."""
    stages = tuple(
        dataclasses.replace(
            s, config=_stage_config(s, benched=any(t.name == "bench" for t in rec.stages[i:]))
        )
        for i, s in enumerate(rec.stages)
    )
    return dataclasses.replace(rec, stages=stages)


def _model_imgsz(model: str | None, earlier: Sequence[Stage]) -> int | None:
    """The input size ``model`` was made for: a checkpoint's own, or the search's for the
    arch a nas stage wrote (None for a registered name or a given arch.yaml)."""
    from yoloslim.models.checkpoint import trained_imgsz

    if model is None:
        return None
    if Path(model).suffix.lower() == ".pt":
        return trained_imgsz(model)
    nas = [s for s in earlier if s.name == "nas"]
    if nas and Path(model).name == "arch.yaml":
        return int(nas[-1].config.options.get("imgsz") or DEFAULT_IMGSZ)
    return None


def _sized_by_model(cfg: Any, st: _State, earlier: Sequence[Stage]) -> Any:
    """A train or distill stage's config at the size of the model it trains (see
    :meth:`Stage.sized_by_model`), so that a 160 px checkpoint is not retrained at 320."""
    if isinstance(cfg, TrainStage):
        size = _model_imgsz(cfg.model or st.model, earlier)
        if size is None:
            return cfg
        return dataclasses.replace(cfg, config=dataclasses.replace(cfg.config, imgsz=size))
    size = _model_imgsz(st.model, earlier)
    if size is None:
        return cfg
    inner = cfg.config
    return dataclasses.replace(
        cfg, config=dataclasses.replace(inner, train=dataclasses.replace(inner.train, imgsz=size))
    )


# a row name a stage of the same kind already took gets this and its stage number
_REPEATED = " (stage "


def _exported_onnx(st: _State, imgsz: int | None) -> str | None:
    """The static-batch ONNX an export stage already wrote of ``st.model`` at ``imgsz``
    (None: the checkpoint's), so that quantize need not export the same graph again."""
    if not st.model or Path(st.model).suffix.lower() != ".pt":
        return None
    found = [
        path
        for name, path, _, *source in st.rows
        if name.split(_REPEATED)[0] == "export-onnx"
        and source == [st.model]
        and Path(path).is_file()
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
    from yoloslim.runtime.ov_core import default_precision
    from yoloslim.sysinfo import invocation

    names, paths = [], []
    # a checkpoint an export stage already wrote to OpenVINO is measured from that artifact
    exported = {r[3]: r[1] for r in st.rows if len(r) > 3 and r[3] and r[1].endswith(".xml")}
    candidates = ([["baseline", st.baseline, "ckpt"]] if st.baseline else []) + st.rows
    for name, path, kind, *_ in candidates:
        if kind == "ckpt":
            if path not in exported:
                res = export(
                    path, out / f"{len(exported):02d}-{name}", formats=["openvino"], imgsz=cfg.imgsz
                )
                exported[path] = str(res.artifacts["openvino"])
            # an FP32 IR, run as deployed: in what the plugin computes it in by default
            path, name = exported[path], f"{name} (OV {default_precision()})"
        if path in paths:
            continue
        names.append(name)
        paths.append(path)
    lat = LatencyConfig(
        rounds=cfg.rounds, runs_per_round=cfg.runs_per_round, threads=cfg.threads, warmup=cfg.warmup
    )
    res = benchmark(
        paths, data, imgsz=cfg.imgsz, batches=tuple(cfg.batches), latency=lat, names=names
    )
    # a fresh machine has no run to resume: the command without --resume makes it all
    res.report["command"] = invocation(drop=("--resume",))
    # the run's final report also sits at its top level: copied, not drawn again
    for path in write_report(res.report, out).values():
        with staged(run_dir / path.name) as tmp:
            shutil.copyfile(path, tmp)
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


def _check_named_models(rec: Recipe, model: str | Path | None, data: str | Path) -> None:
    """ConfigError, before any stage runs, for a stage's ``teacher:`` file that is not there,
    is no yoloslim checkpoint or has another class count than the data, or a ``model:`` (or a
    nas stage's ``init:``) that is neither a file nor a registered name, and for a distill
    stage with no teacher at all (no ``teacher:`` and no run model): found otherwise only
    once the stages before it had run (a whole prune and its fine-tuning, say)."""
    from yoloslim.models import list_models

    for i, s in enumerate(rec.stages, 1):
        where = f"{rec.source}: stage {i} ({s.name})"
        if s.name == "distill":
            teacher = s.config.teacher
            if teacher is None and model is None:
                raise ConfigError(
                    f"{where}: no teacher (set its 'teacher:', or give the run a model)"
                )
            if teacher is not None and not Path(teacher).expanduser().is_file():
                raise ConfigError(f"{where}: teacher {teacher} does not exist")
            if teacher is not None:
                _check_checkpoint(where, "teacher", Path(teacher).expanduser(), data)
        if s.name == "nas":  # its seeds, read only when the search starts
            from yoloslim.nas.search import init_items

            for item in init_items(s.config.options.get("init")):
                if isinstance(item, dict) or str(item) in list_models():
                    continue
                if not Path(item).expanduser().is_file():
                    raise ConfigError(
                        f"{where}: init {str(item)!r} is neither a file nor a registered model "
                        f"({', '.join(list_models())})"
                    )
        named = getattr(s.config, "model", None) if s.name == "train" else None
        unknown = named is not None and str(named) not in list_models()
        if unknown and not Path(str(named)).expanduser().is_file():
            raise ConfigError(
                f"{where}: model {named!r} is neither a file nor a registered model "
                f"({', '.join(list_models())})"
            )
        if unknown and Path(str(named)).suffix.lower() == ".pt":  # trained weights: its classes
            _check_checkpoint(where, "model", Path(str(named)).expanduser(), data)


def _check_checkpoint(where: str, what: str, path: Path, data: str | Path) -> None:
    """A distill stage's teacher, or a train stage's checkpoint ``model:`` (``what`` says
    which), is a yoloslim checkpoint of the data's class count."""
    from yoloslim.data.config import check_class_count, load_data_config
    from yoloslim.errors import DataError
    from yoloslim.models.checkpoint import read_checkpoint

    if path.suffix.lower() != ".pt":
        raise ConfigError(
            f"{where}: {what} {path}: expected a yoloslim .pt checkpoint (an exported "
            "artifact has no training form to train or distill from)"
        )
    try:
        names = read_checkpoint(path, mmap=True).get("names") or []
    except ModelError as e:
        raise ConfigError(f"{where}: {what}: {e}") from e
    try:
        cfg = load_data_config(data)
    except DataError:  # said by the run's own data check
        return
    try:
        check_class_count(len(names), f"{what} {path}", cfg)
    except ModelError as e:
        raise ConfigError(f"{where}: {e}") from e


def _check_ignored_scopes(rec: Recipe, model: str | None) -> None:
    """ConfigError naming the file and the stage, before any stage runs, for a quantize
    stage's ``ignored_scope`` pattern that matches no node or layer of the run's model
    (exported to ONNX, and for OpenVINO converted, as the stage will): found otherwise
    only when that stage starts, after the stages before it (maybe hours of training).

    Sound because the stages before it keep the model's layer and node names: train and
    distill change weights, reparam nothing in the checkpoint, a width prune the channels
    of the same layers, and a depth prune deletes blocks, which renumbers the rest
    (``del blocks[i]``), so its names are a subset of the model's. A pattern that matches
    nothing in the model therefore matches nothing later (one that matches only blocks a
    depth prune removes is still refused when the stage runs). A nas stage or a train
    stage with its own ``model:`` brings another network, whose names are known only once
    it exists: quantize stages after one are checked when they run (that error names the
    file and the stage too, see :func:`_run_stage`). Without a run model (a recipe
    starting with nas or train), or with an arch.yaml one (untrained: it cannot be exported
    until the recipe's train stage has trained it), there is nothing to check against yet.
    Only custom patterns cost an export here: the ``decode``/``head_preds`` keywords always
    match.
    """
    from yoloslim.compress.quant_config import DECODE, HEAD_PREDS

    checked: list[tuple[int, Any]] = []
    for i, s in enumerate(rec.stages, 1):
        if s.name == "nas" or (s.name == "train" and s.config.model):
            break  # another network from here on
        if s.name == "quantize" and set(s.config.ignored_scope) - {DECODE, HEAD_PREDS}:
            checked.append((i, s.config))
    if model is None or not checked or Path(model).suffix.lower() != ".pt":
        return  # an arch.yaml model is untrained until a train stage: no export of it yet
    import tempfile

    from yoloslim.compress.quant_scope import resolve_scope
    from yoloslim.compress.quantize import _backend
    from yoloslim.export import export

    log.info("checking the quantize stages' ignored_scope patterns on %s", model)
    with tempfile.TemporaryDirectory(prefix="yoloslim-scope-") as tmp:
        onnx = Path(export(model, tmp, formats=["onnx"], verify=False).artifacts["onnx"])
        views: dict[str, Any] = {}
        for i, cfg in checked:
            if cfg.backend not in views:  # OpenVINO names the converted graph's nodes itself
                views[cfg.backend] = _backend(cfg, onnx, Path(tmp)).view()
            try:
                resolve_scope(views[cfg.backend], cfg.ignored_scope)
            except ConfigError as e:
                raise ConfigError(f"{rec.source}: stage {i} (quantize): {e}") from e


def _check_unused_settings(rec: Recipe, first: int = 1) -> None:
    """ConfigError naming the file and the stage, before any stage runs, for settings a stage
    refuses when it starts because it would never use them (a distill stage's freeze_epochs
    without progressive, a quantize stage's ONNX Runtime knobs on OpenVINO): found otherwise
    after the stages before it ran (audit32 review3 M2). ``first``: the stages from it on only
    (those a resumed run's changed recipe gives anew)."""
    from yoloslim.compress.distill import _refuse_unused_settings

    for i, s in enumerate(rec.stages, 1):
        if i < first:
            continue
        try:
            if s.name == "distill":
                _refuse_unused_settings(s.config.config)
            elif s.name == "quantize":
                s.config.refuse_unused()
        except ConfigError as e:
            raise ConfigError(f"{rec.source}: stage {i} ({s.name}): {e}") from e


def _check_first_prune(rec: Recipe, model: str | None) -> None:
    """ConfigError naming the file and the stage, before any stage runs, for the first prune
    stage's ``ignore`` patterns that match no module of the run's model and a target the model
    already meets: found otherwise when the stage starts, after a train or distill stage
    before it. Sound while the stages before it keep the network (train and distill change
    weights, export, quantize and bench nothing); a nas stage, a train stage with a
    ``model:`` of its own and a reparam stage bring another, and the check stops there."""
    if model is None or Path(model).suffix.lower() != ".pt":
        return
    trained_at = None  # the size a train or distill stage before it trains (and records)
    for i, s in enumerate(rec.stages, 1):
        if s.name in ("nas", "reparam") or (s.name == "train" and s.config.model):
            return
        if s.name == "train":
            trained_at = getattr(s.config.config, "imgsz", None) or trained_at
        elif s.name == "distill":
            train_cfg = getattr(s.config.config, "train", None)
            trained_at = getattr(train_cfg, "imgsz", None) or trained_at
        if s.name != "prune":
            continue
        cfg = s.config
        if not (cfg.ignore or cfg.target_flops is not None or cfg.target_params is not None):
            return
        from yoloslim.compress.prune import check_targets
        from yoloslim.models.checkpoint import load_checkpoint

        net, ckpt = load_checkpoint(model)
        size = cfg.imgsz or trained_at or int(ckpt["imgsz"])  # the size the stage will use
        try:
            check_targets(cfg, net, size)
        except ConfigError as e:
            raise ConfigError(f"{rec.source}: stage {i} (prune): {e}") from e
        return


def _preflight(rec: Recipe) -> tuple[dict[int, Any], list[dict]]:
    """What this machine can run, decided before any stage starts: the export stages'
    configs as run (``{stage index: config}``) and the formats skipped.

    An ``engine`` (TensorRT) format is skipped with a warning when TensorRT or a CUDA
    device is missing, so that one recipe serves GPU and CPU machines; any other format
    whose runtime is missing, or an export stage left with nothing to write, is a
    :class:`ConfigError` naming the file and the stage.
    """
    from yoloslim.export.registry import EXPORTERS, half_problem

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
        if stage.name == "quantize" and stage.config.backend == "openvino":
            from yoloslim.extras import install_hint, installed

            if not installed("nncf"):  # found when the stage began, after the ones before
                raise ConfigError(f"{where}: {install_hint('nncf', 'openvino')}")
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
        half = stage.config.half
        if half_problem(kept, half):  # the FP16 engine was the reason for half
            log.warning(
                "%s: half: none of %s stores FP16 weights (the engine format is skipped "
                "here); they are exported in FP32",
                where,
                ", ".join(kept),
            )
            half = False
        configs[i] = dataclasses.replace(stage.config, formats=kept, half=half)
    return configs, skipped


def _known_model(model) -> bool:
    """Whether a train stage's ``model:`` is a file or a registered model's name."""
    from yoloslim.models.registry import list_models

    return bool(model) and (Path(str(model)).expanduser().is_file() or model in list_models())


def _check_baseline_size(rec: Recipe, model: str) -> None:
    """A bench stage without ``imgsz`` exports each checkpoint at its own size, and measures
    them all at one: refuse a baseline trained at another size than a nas, train, distill or
    prune stage before it (the last one) fixes for the models it makes, now rather than when
    the bench stage starts."""
    from yoloslim.models.checkpoint import read_checkpoint
    from yoloslim.train.config import sized_for

    fixed: tuple[int, str, int] | None = None
    for i, st in enumerate(rec.stages, 1):
        size = None
        if st.name == "nas":
            size = st.config.options.get("imgsz")
        elif st.name == "prune":  # it fine-tunes, and records, the pruned model at its imgsz
            size = st.config.imgsz
        elif st.name == "train" and _known_model(st.config.model) and st.sized_by_model():
            # a model of its own: a checkpoint's or searched arch's size, else 320 (a name
            # that is neither is refused later, as such)
            size = sized_for(st.config.config, st.config.model).imgsz
        elif st.name == "train":
            size = getattr(st.config.config, "imgsz", None)
        elif st.name == "distill":
            size = getattr(getattr(st.config.config, "train", None), "imgsz", None)
        if size:  # the last such stage sets the size of what the bench compares
            fixed = (i, st.name, int(size))
        if st.name == "bench" and st.config.imgsz is None and fixed is not None:
            own = int(read_checkpoint(model, mmap=True)["imgsz"])  # only its size is read
            if own != fixed[2]:
                # the bench's size must be every static export's and quantize stage's too
                sized = [
                    f"{k} ({s.name})"
                    for k, s in enumerate(rec.stages[:i], 1)
                    if s.name == "bench"
                    or (
                        (s.name == "quantize" or (s.name == "export" and not s.config.dynamic))
                        and s.config.imgsz is None
                    )
                ]
                where = ", ".join(sized[:-1]) + (" and " if len(sized) > 1 else "") + sized[-1]
                raise ConfigError(
                    f"{rec.source}: model {model} (--model) was trained at {own} px, but stage "
                    f"{fixed[0]} ({fixed[1]}) makes models at {fixed[2]} px and the bench stage "
                    f"(stage {i}) measures all at one size: give a model trained at "
                    f"{fixed[2]} px, or imgsz={fixed[2]} to stage{'s' if len(sized) > 1 else ''} "
                    f"{where}"
                )


def file_sha1(path: str | Path) -> str:
    """The SHA-1 of a file's bytes, read in 1 MiB pieces."""
    import hashlib

    h = hashlib.sha1()
    with open(path, "rb") as f:
        while piece := f.read(1 << 20):
            h.update(piece)
    return h.hexdigest()


def data_digest(data: str | Path, *, content: bool = True) -> str | None:
    """A digest of what a run's measurements rest on: the data.yaml's text and the val
    split's samples (each image's path and bytes, and its labels). The data regenerated in
    place, or its labels edited, gives another digest; an image touched, or copied back
    without its time (a git checkout), does not (its modification time refused a resume:
    audit52 scale F4). ``content=False``: the digest of earlier versions, by each image's
    size and modification time (a run they began is checked by it). None for data that does
    not read (the stage that reads it says what is wrong)."""
    import hashlib

    import numpy as np

    from yoloslim.data import load_data_config, load_samples
    from yoloslim.errors import DataError
    from yoloslim.progress import quieted

    try:
        cfg = load_data_config(data)
        h = hashlib.sha1(Path(data).expanduser().read_bytes())
        with quieted("yoloslim.data", logging.ERROR):  # its warnings are the stages' to give
            samples = load_samples(cfg, "val")
    except (DataError, OSError):
        return None
    for smp in samples:
        try:
            if content:
                h.update(f"{smp.path}\0{file_sha1(smp.path)}\0".encode())
            else:
                st = Path(smp.path).stat()
                h.update(f"{smp.path}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
        except OSError:
            return None
        for arr in (smp.boxes, smp.classes, smp.ignore):
            h.update(np.ascontiguousarray(arr).tobytes() if arr is not None else b"-")
    return h.hexdigest()


def run_inputs(model: str | Path | None, data: str | Path) -> dict:
    """What a resumed run must be given again: the model file (path, size, mtime) and the
    data (its path, and :func:`data_digest`)."""
    entry: dict = {
        "model": None,
        "data": str(Path(data).resolve()),
        "data_digest": data_digest(data),
        "digests": "content",  # data_digest's and the files' by their bytes (earlier: mtime)
    }
    if model is not None:
        st = Path(model).stat()
        entry.update(
            model=str(Path(model).resolve()),
            model_bytes=st.st_size,
            model_mtime_ns=st.st_mtime_ns,
            model_sha1=file_sha1(model),
        )
    return entry


def _stage_files(rec: Recipe) -> dict[str, dict]:
    """The files a recipe's stages name (a train stage's ``model:``, a distill stage's
    ``teacher:``), by stage folder: what it is, its path, size and modification time. A
    finished stage was made from them, so a resume checks them as it does ``--model``."""
    files = {}
    for i, s in enumerate(rec.stages, 1):
        key = {"train": "model", "distill": "teacher"}.get(s.name)
        named = getattr(s.config, key, None) if key else None
        path = Path(named).expanduser() if named else None
        if path is not None and path.is_file():  # not a registered model's name
            st = path.stat()
            files[f"{i:02d}-{s.name}"] = {
                "key": key,
                "path": str(path.resolve()),
                "bytes": st.st_size,
                "mtime_ns": st.st_mtime_ns,
                "sha1": file_sha1(path),
            }
    return files


def same_file(was: dict, now: dict, prefix: str = "") -> bool:
    """Whether a run's record of a file (``path``, ``bytes``, ``mtime_ns``, ``sha1``, each
    key after ``prefix``) is of the file ``now`` records: by its bytes' SHA-1 where the run
    kept it (a file touched, or copied back without its time, is the same file), else by
    its size and modification time (a run an earlier version began)."""
    size, mtime, sha1 = (prefix + k for k in ("bytes", "mtime_ns", "sha1"))
    path = prefix.rstrip("_") or "path"  # run_inputs keeps the model's path as "model"
    if was.get(path) != now.get(path):
        return False
    if was.get(sha1) is not None:
        return was[sha1] == now.get(sha1)
    return (was.get(size), was.get(mtime)) == (now.get(size), now.get(mtime))


def _stage_files_redone(
    out: Path,
    saved: dict[str, dict],
    now: dict[str, dict],
    recipe_changed: list[str],
    said: list[str],
) -> list[str]:
    """On a resume: the stage folders whose ``model:``/``teacher:`` file is not the one the
    run used (changed in place, or another file by the same name: a relative path read from
    another folder) and whose stage began but did not finish: it starts afresh, said. A
    finished one is refused (audit44 compress F2: the stage made with the old teacher was
    kept; review F6: an unfinished one refused the whole run). A stage the recipe changed is
    the recipe change's. ``saved``: the run's record of them (``inputs.json``); what the run
    is to say of the stages it redoes is added to ``said``."""
    redone = []
    for folder, file in now.items():
        was = saved.get(folder)
        if not isinstance(was, dict) or folder in recipe_changed or same_file(was, file):
            continue
        how = "its contents" if was.get("sha1") else "size or modification time"
        what = f"{file['key']} {file['path']}" + (
            f" changed since this run ({how})"
            if was.get("path") == file["path"]
            else f" is not the file this run used ({was.get('path')}; a relative path read "
            "from another folder?)"
        )
        if (out / folder / "stage.json").exists():
            raise ConfigError(
                f"{out}: stage {folder}'s {what}: the stage was made with the other one; "
                "resume with it, or use another output folder"
            )
        if (out / folder / "last.pt").exists():
            said.append(
                f"{out}: stage {folder}'s {what}; the stage had not finished, and starts "
                "afresh with it"
            )
            redone.append(folder)
    return redone


def _record_text(path: Path) -> str:
    """A run record's text; ConfigError naming it when it is not UTF-8 (a damaged file: it
    was a UnicodeDecodeError's traceback, audit42 corrupt F5)."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"{path}: damaged (not UTF-8 text); the run there cannot be resumed: choose "
            "another output folder"
        ) from e


def check_resume_inputs(out: Path, inputs: dict, also: dict[str, str] | None = None) -> dict | None:
    """Refuse to resume the run in ``out`` with a model or data other than those it recorded
    (``out/inputs.json``, :func:`run_inputs`), or with its model file changed since; ``also``
    maps further keys of ``inputs`` to what they are, for the error when one differs.
    Returns the record (None for a run from before it was written)."""
    saved_file = out / "inputs.json"
    if not saved_file.exists():  # a run from before inputs.json was written
        return None
    try:
        saved = json.loads(_record_text(saved_file))
    except json.JSONDecodeError:
        saved = None
    if not isinstance(saved, dict):  # a traceback's JSONDecodeError or AttributeError
        raise ConfigError(
            f"{saved_file}: damaged (not the JSON object a compress run writes); the run there "
            "cannot be resumed: choose another output folder"
        )
    for key in ("model", "data"):
        if saved.get(key) != inputs[key]:
            raise ConfigError(
                f"{out}: this run was made with {key} {saved.get(key)}, not {inputs[key]}; "
                f"resume with the same {key} or choose another output folder"
            )
    if inputs.get("model") is not None and not same_file(saved, inputs, "model_"):
        how = "its contents" if saved.get("model_sha1") else "size or modification time"
        raise ConfigError(
            f"{out}: the model {inputs['model']} changed since this run ({how}); "
            "choose another output folder"
        )
    digest = inputs.get("data_digest")
    if saved.get("digests") != "content" and saved.get("data_digest") is not None:
        digest = data_digest(inputs["data"], content=False)  # a run an earlier version began
    if saved.get("data_digest") is not None and digest is None:  # "changed" misled: review2 F1
        raise ConfigError(
            f"{out}: the data {inputs['data']} cannot be read to check it is this run's (its "
            "data.yaml, or a val image unreadable: `yoloslim data check` names it); fix it "
            "and resume"
        )
    if saved.get("data_digest") not in (None, digest):
        raise ConfigError(
            f"{out}: the data {inputs['data']} changed since this run (its data.yaml, or its "
            "val split's images or labels): the run's measurements are of the old data; "
            "choose another output folder"
        )
    for key, what in (also or {}).items():
        if saved.get(key) != inputs[key]:
            changed = _changed(saved.get(key), inputs[key])
            raise ConfigError(
                f"{out}: {what} changed since this run ({changed}); resume with the same "
                "settings (the same --set options) or use another output folder"
            )
    return saved


def _changed(before: object, now: object, where: str = "") -> str:
    """The settings that differ between two nested mappings, as ``key: old -> new`` (the
    first few), for an error that says what to put back."""
    if isinstance(before, dict) and isinstance(now, dict):
        diffs = [
            _changed(before.get(k), now.get(k), f"{where}{k}.")
            for k in sorted(set(before) | set(now), key=str)
            if before.get(k) != now.get(k)
        ]
        return "; ".join(diffs[:4]) + ("; ..." if len(diffs) > 4 else "")
    return f"{where.rstrip('.')}: {before!r} -> {now!r}"


def _restore_reports(bench_dir: Path, out: Path, report: dict) -> None:
    """Put back a finished bench stage's report files at the run's top level where one is
    gone (a resume that found every stage done left them missing). Where they no longer
    hold the stage's ``report`` (a copied run folder: the record's paths were moved to the
    copy, the report files still named the original's files), both sets are written again."""
    from yoloslim.bench.report import holds_report, write_report

    if report.get("rows") and bench_dir.is_dir() and not holds_report(bench_dir, report):
        write_report(report, bench_dir)
    stale = (out / "report.json").is_file() and not holds_report(out, report)
    for name in ("report.json", "report.md", "pareto.png"):
        src, dst = bench_dir / name, out / name
        if src.is_file() and (stale or not dst.exists()):
            with staged(dst) as tmp:
                shutil.copyfile(src, tmp)


def _rebased(record: dict, out: Path, done: Path) -> dict:
    """``record`` with the paths into the run folder it was written in (``record["run"]``)
    moved to ``out``, where that folder is now (copied or moved: a copy used the original's
    files, a moved run failed part way); saved back so. Paths outside the run (the input
    model, a teacher) stay."""
    was = record.get("run")
    if not was or was == str(out):
        return record
    old, new = json.dumps(was)[1:-1], json.dumps(str(out))[1:-1]  # as the JSON spells them
    text = json.dumps(record, default=str)
    text = text.replace(f'"{old}"', f'"{new}"').replace(f'"{old}/', f'"{new}/')
    moved = json.loads(text)
    moved["run"] = str(out)
    log.info("resume: %s was written in %s; its paths now point into %s", done, was, out)
    atomic_write_text(done, json.dumps(moved, indent=1, default=str) + "\n")
    return moved


def _stage_record(done: Path, name: str) -> dict | None:
    """The record ``done`` (a stage's ``stage.json``) of a finished ``name`` stage, or None
    when there is none, or when the file is not one (then, with a warning, the stage runs
    again)."""
    if not done.exists():
        return None
    try:
        record = json.loads(done.read_text())
    except (ValueError, OSError):
        record = None
    keys = ("stage", "model", "rows", "report")
    if (
        not isinstance(record, dict)
        or record.get("stage") != name
        or not all(k in record for k in keys)
    ):
        log.warning(
            "resume: %s is not the record of a finished %s stage; running it again", done, name
        )
        return None
    return record


def _made(record: dict, out: Path) -> list[Path]:
    """The files a finished stage made in ``out``: its checkpoint, its artifacts (an
    OpenVINO IR with its weights file)."""
    made = [record.get("model"), *(r[1] for r in record.get("rows", []))]
    made += list((record.get("deployable") or {}).values())
    paths = [Path(p) for p in made if p and Path(p).absolute().is_relative_to(out)]
    paths += [p.with_suffix(".bin") for p in paths if p.suffix == ".xml"]
    return list(dict.fromkeys(paths))


def _sizes(record: dict, out: Path) -> dict[str, int]:
    """The sizes of the files :func:`_made` names, by their path in ``out`` (a resume finds
    one cut short: a full disk, a partial copy)."""
    return {_in_run(p, out): p.stat().st_size for p in _made(record, out) if p.is_file()}


def _in_run(path: Path, out: Path) -> str:
    """``path`` relative to the run folder ``out``: the key of its size in ``stage.json``."""
    return os.path.relpath(path.absolute(), out)


def _missing_outputs(record: dict, out: Path) -> list[str]:
    """What is wrong with the files a finished stage made in ``out``: each gone, or (a
    record with their sizes) of another size than the stage left it (a truncated ONNX was
    kept and named the run's artifact: audit42 corrupt F6)."""
    sizes = record.get("sizes") or {}
    problems = []
    for p in _made(record, out):
        if not p.exists():
            problems.append(f"{p} is gone")
            continue
        was = sizes.get(_in_run(p, out))
        size = p.stat().st_size if p.is_file() else None
        if isinstance(was, int) and size is not None and size != was:
            problems.append(f"{p} is {size} bytes, not the {was} it was made with")
    return problems


# the records a compress run writes into its folder
_RECORDS = ("recipe.yaml", "inputs.json", "compress.json", "report.json", "report.md", "pareto.png")


def _say(text: str) -> None:
    """A line on the progress console (stderr), as the stages' own progress lines."""
    from yoloslim.progress import say

    say(f"compress: {text}", style="bold")


def _same_recipe(saved: str, resolved: str, earlier: tuple[str, ...]) -> bool:
    """Whether a run's ``recipe.yaml`` is the recipe resolved now: as written, or once read
    again with today's defaults (a setting added since, such as an export stage's
    ``triton_max_batch``, takes its default, which is what the run used)."""
    if saved in (resolved, *earlier):
        return True
    try:
        again = _as_run(load_recipe(yaml.safe_load(saved))).resolved()
    except (ConfigError, yaml.YAMLError):
        return False
    return yaml.safe_dump(again, sort_keys=False) == resolved


def _read_pair(saved: str, resolved: str) -> tuple[Any, Any]:
    """A run's ``recipe.yaml`` and the recipe resolved now, parsed; the saved one read again
    with today's defaults where it loads, as :func:`_same_recipe` compares it (else as
    written). yaml.YAMLError when one is not YAML."""
    before, now = yaml.safe_load(saved) or {}, yaml.safe_load(resolved) or {}
    with contextlib.suppress(ConfigError, TypeError, AttributeError):
        before = _as_run(load_recipe(before)).resolved()
    return before, now


def _recipe_change(saved: str, resolved: str, most: int = 4) -> str:
    """What differs between a run's ``recipe.yaml`` and the recipe resolved now, in words
    (up to ``most`` differences, then a count), for the error that refuses the resume."""
    try:
        before, now = _read_pair(saved, resolved)
    except yaml.YAMLError:
        return "its recipe.yaml is not readable YAML"

    def names(recipe: dict) -> list[str]:
        return [next(iter(s), "?") if isinstance(s, dict) else str(s) for s in recipe["stages"]]

    if not isinstance(before, dict) or not isinstance(before.get("stages"), list):
        return "its recipe.yaml holds no stage list"
    if names(before) != names(now):
        return f"stages {', '.join(names(before))} then, {', '.join(names(now))} now"

    def differences(a, b, path: str) -> Iterator[str]:
        if isinstance(a, dict) and isinstance(b, dict):
            for key in [*a, *(k for k in b if k not in a)]:
                yield from differences(a.get(key), b.get(key), f"{path}.{key}" if path else key)
        elif a != b:
            yield f"{path}: {a!r} then, {b!r} now"

    found = [
        f"stage {i} ({name}) {d}"
        for i, (name, a, b) in enumerate(
            zip(names(now), before["stages"], now["stages"], strict=True), 1
        )
        for d in differences(a.get(name) if isinstance(a, dict) else a, b.get(name), "")
    ]
    rest = [{k: v for k, v in r.items() if k != "stages"} for r in (before, now)]
    found += differences(*rest, "")
    if not found:
        return "its layout"
    more = f"; and {len(found) - most} more" if len(found) > most else ""
    return "; ".join(found[:most]) + more


def _changed_from(saved: str, resolved: str) -> tuple[int, list[str]] | None:
    """``(k, folders)``: the first stage (1-based) where a run's ``recipe.yaml`` and the
    recipe resolved now differ (one past the shorter list when stages were only added or
    removed at the end), and the stage folders the run had from there on (``03-distill``);
    None when more than the stages differs, or it cannot be read."""
    try:
        before, now = _read_pair(saved, resolved)
        a, b = before["stages"], now["stages"]
        rest = [{k: v for k, v in r.items() if k != "stages"} for r in (before, now)]
        names = [next(iter(x)) if isinstance(x, dict) else str(x) for x in a]
    except (yaml.YAMLError, KeyError, TypeError, AttributeError, StopIteration):
        return None
    if rest[0] != rest[1] or not isinstance(a, list) or not isinstance(b, list):
        return None
    k = next(
        (i for i, (x, y) in enumerate(zip(a, b, strict=False), 1) if x != y),
        min(len(a), len(b)) + 1,
    )
    return k, [f"{j:02d}-{name}" for j, name in enumerate(names, 1) if j >= k]


def _finished(sdir: Path, stage: Stage, i: int, out: Path) -> tuple[dict | None, bool]:
    """On a resume: stage ``i``'s record when it finished and its outputs are all there
    (its paths rebased onto ``out``), else None; and whether it finished but an output of
    it is gone (it runs again, from scratch)."""
    done = sdir / "stage.json"
    record = _stage_record(done, stage.name)
    if record is None:
        return None, False
    record = _rebased(record, out, done)
    missing = _missing_outputs(record, out)
    if missing:
        log.warning(
            "resume: stage %d (%s) finished, but %s; running it again, and the stages after it",
            i,
            stage.name,
            missing[0],
        )
        return None, True
    log.info("resume: stage %d (%s) already done", i, stage.name)
    return record, False


def _run_stage(
    rec: Recipe, i: int, st: _State, run_configs: dict, data: str, sdir: Path, progress: bool,
    out: Path,
) -> dict:  # fmt: skip
    """Run stage ``i`` of ``rec`` into ``sdir`` and write its ``stage.json``; returns that
    record."""
    stage = rec.stages[i - 1]
    sdir.mkdir(parents=True, exist_ok=True)
    log.info("stage %d/%d: %s", i, len(rec.stages), stage.name)
    if stage.name == "bench":
        outcome = _stage_bench(st, stage.config, data, sdir, progress, out)
    else:
        cfg = run_configs.get(i) or _stage_config(
            stage, benched=any(s.name == "bench" for s in rec.stages[i:])
        )
        if stage.sized_by_model():
            cfg = _sized_by_model(cfg, st, rec.stages[: i - 1])
        try:
            outcome = _RUNNERS[stage.name](st, cfg, data, sdir, progress)
        except YoloslimError as e:
            # found wrong only now (a quantize stage's ignored_scope after a nas or train
            # stage made another network, a model the stage cannot take): which file and
            # stage it is in, on the error itself (its type and fields, an ExportError's
            # report, stay)
            where = f"{rec.source}: stage {i} ({stage.name})"
            if not str(e).startswith(str(rec.source)):
                e.args = (f"{where}: {e}", *e.args[1:])
            raise
    record = {
        "stage": stage.name,
        "index": i,
        "run": str(out),  # where its paths point; a copied run rebases them
        "model": outcome["model"],
        "rows": outcome["rows"],
        "report": outcome["report"],
        "deployable": outcome.get("deployable", {}),
    }
    record["sizes"] = _sizes(record, out)
    atomic_write_text(sdir / "stage.json", json.dumps(record, indent=1, default=str) + "\n")
    return record


def _warn_unbenched(rec: Recipe) -> None:
    """Say which stages come after the last bench stage: what they make is in no table."""
    benches = [i for i, s in enumerate(rec.stages, 1) if s.name == "bench"]
    later = [f"{i} ({s.name})" for i, s in enumerate(rec.stages, 1) if benches and i > benches[-1]]
    if later:
        one = len(later) == 1
        log.warning(
            "%s: %s %s %s after the bench stage (%d): what %s in no table (put bench last to "
            "measure it)",
            rec.source,
            "stage" if one else "stages",
            ", ".join(later),
            "comes" if one else "come",
            benches[-1],
            "it makes is" if one else "they make is",
        )
    # stages that make another model than the one the artifacts before them were made of
    makers = [i for i, s in enumerate(rec.stages, 1) if s.name in ("export", "quantize")]
    changes = [
        f"{i} ({s.name})"
        for i, s in enumerate(rec.stages, 1)
        if makers and i > makers[-1] and s.name in ("nas", "train", "prune", "distill")
    ]
    if changes:  # deployable then named the older model's files (audit47 recipes M)
        log.warning(
            "%s: %s after the last stage that makes artifacts (%d, %s): the run's deployable "
            "artifacts are of the model before %s, not of its final checkpoint (put an export "
            "or quantize stage last to deploy that)",
            rec.source,
            f"stage {changes[0]} comes"
            if len(changes) == 1
            else f"stages {', '.join(changes)} come",
            makers[-1],
            rec.stages[makers[-1] - 1].name,
            "it" if len(changes) == 1 else "them",
        )


def _is_compress_record(path: Path) -> bool:
    """Whether ``path`` holds what run_recipe writes as compress.json (a budget run's too)."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and {"stages", "recipe"} <= set(record)


def _check_baseline(rec: Recipe, model: str, data: str) -> None:
    """A ``--model`` the recipe uses as trained weights is a checkpoint of the data's
    classes, checked before any stage: an arch.yaml (random weights) before a prune (or as
    a bench's baseline row) ran every stage and failed at the bench, or without one ended
    with a pruned random network; a checkpoint of another class count failed at the first
    stage that read it (after a whole training, say). An arch.yaml a first train stage
    trains is fine when no bench stage needs a baseline."""
    from yoloslim.data.config import check_class_count, load_data_config
    from yoloslim.errors import DataError
    from yoloslim.models.checkpoint import read_checkpoint

    if Path(model).suffix.lower() != ".pt":
        trained_first = rec.stages[0].name in ("train", "nas")  # they make their own
        if trained_first and not any(s.name == "bench" for s in rec.stages):
            return
        why = (
            "its bench stage measures the baseline"
            if trained_first
            else f"its first stage ({rec.stages[0].name}) needs trained weights"
        )
        raise ModelError(
            f"model {model} (--model): the recipe takes it as a trained checkpoint (.pt), as "
            f"{why}; an arch.yaml has no trained weights (a recipe that starts with nas, or "
            "a train stage that names its model, makes its own), and an exported artifact "
            "is no checkpoint"
        )
    try:
        names = read_checkpoint(model, mmap=True).get("names") or []
        cfg = load_data_config(data)
    except (ModelError, DataError):  # the first stage that reads them says what is wrong
        return
    check_class_count(len(names), f"model {model} (--model)", cfg)


def _check_run(
    rec: Recipe, model: str | None, data: str, out: Path, resume: bool
) -> tuple[dict, list, str, dict, tuple[int, list[str]] | None, list[str]]:
    """Check everything :func:`run_recipe` needs before it writes to ``out``; returns the
    stages' preflight configs, the skipped formats, the resolved recipe YAML, the run's
    inputs record, the stages a resume redoes (first number, folders) and what it is to say
    of them once the run holds the folder (said here, a later refusal made them untrue:
    review2 N6)."""
    first = rec.stages[0]
    if model is None and not (
        first.name == "nas" or (first.name == "train" and first.config.model)
    ):
        raise ConfigError(
            f"{rec.source}: the recipe starts with {first.name}, which needs a model: give a "
            "checkpoint (model=, --model); only a recipe that starts with nas, or with a train "
            "stage that names its model, runs without one"
        )
    if model is not None and not Path(model).is_file():
        from yoloslim.models.registry import list_models

        named = Path(model).name in list_models()  # a registered name is no checkpoint
        raise ConfigError(
            f"model {model} (--model): "
            + (
                "a registered model's name, with no trained weights; give a checkpoint (.pt)"
                if named
                else "checkpoint does not exist"
            )
        )
    if not Path(data).exists():
        raise ConfigError(f"data {data} (--data): does not exist")
    if model is not None:
        _check_baseline(rec, model, data)
        _check_baseline_size(rec, model)
    if any(s.name in ("quantize", "bench") for s in rec.stages):
        from yoloslim.eval.val import require_boxes

        # those stages refuse a val split without a box (no mAP to compare): before the
        # stages ahead of them have run for nothing
        require_boxes(data)
    # the stage folders are emptied before their stage runs: no input may live in one
    writes = [out / n for n in ("recipe.yaml", "inputs.json", "compress.json")]
    writes += [out / f"{i:02d}-{s.name}" for i, s in enumerate(rec.stages, 1)]
    sources = [("model", model), ("data", data)]
    own = out / "recipe.yaml"  # on resume, the run's own record may be given back as is
    if Path(rec.source).is_file() and not (resume and own.exists() and own.samefile(rec.source)):
        sources.append(("recipe", rec.source))  # in a stage folder, or a user's recipe.yaml
    for i, s in enumerate(rec.stages, 1):
        named = getattr(s.config, "model", None) or getattr(s.config, "teacher", None)
        if s.name in ("train", "distill") and named:
            sources.append((f"stage {i} ({s.name})", named))
    for arg, source in sources:
        refuse_overwriting_input(source, writes, arg=arg, hint="choose another output folder")
    _check_named_models(rec, model, data)
    _check_first_prune(rec, model)
    if not resume:  # a run begun with them goes on (review2 M1); a new one is told at once
        _check_unused_settings(rec)
        check_stage_threads(rec)
    _warn_unbenched(rec)
    run_configs, skipped = _preflight(rec)
    resolved = yaml.safe_dump(_as_run(rec).resolved(), sort_keys=False)
    earlier = (  # how runs made before a rule changed wrote the same recipe
        yaml.safe_dump(rec.resolved(keep_model_sizes=True), sort_keys=False),  # as parsed
        yaml.safe_dump(_as_run(rec).resolved(keep_model_sizes=True), sort_keys=False),
    )
    inputs = {**run_inputs(model, data), "stage_files": _stage_files(rec)}
    saved = out / "recipe.yaml"
    if (out / "budget.json").exists() or (out / "grid").is_dir():
        raise ConfigError(
            f"{out}: holds a budget run (grid/); resume it with a budget (--max-drop, "
            "--target-latency; max_drop=, target_latency=) or choose another output folder"
        )
    record = out / "compress.json"
    if record.is_file() and not _is_compress_record(record):
        raise ConfigError(
            f"{record} is not a compress run's record; it is not replaced, so move it or "
            "choose another output folder"
        )
    finished = any(out.glob("[0-9][0-9]-*/stage.json"))
    lost = [n for n in ("recipe.yaml", "inputs.json") if not (out / n).exists()]
    if finished and lost:
        # neither resumed nor started afresh, which would empty the finished stages' folders
        # (audit44 compress F1; review F8, review2 N3: each refusal sent to the other)
        raise ConfigError(
            f"{out}: holds a compress run's finished stages but not its {' or '.join(lost)}, "
            "which a resume needs; choose another output folder (a new run here would empty "
            "them)"
        )
    if finished and not resume:
        raise ConfigError(
            f"{out}: holds a compress run; resume it (--resume, resume=True) or choose another "
            "output folder"
        )
    if resume and not saved.exists():  # a mistyped --out would start every stage afresh
        raise ConfigError(
            f"{out}: no compress run to resume (no recipe.yaml); drop --resume (resume=False) "
            "to start one"
        )
    if resume and not (out / "inputs.json").exists():  # a recipe.yaml of the user's alone
        raise ConfigError(
            f"{out}: no compress run to resume (a recipe.yaml but no inputs.json, which a run "
            "writes with it); drop --resume (resume=False) to start one, with the recipe "
            "outside the folder"
        )
    changed_from, said = None, []
    if saved.exists() and resume:  # also when no stage finished: a train stage resumes
        text = _record_text(saved)
        if not _same_recipe(text, resolved, earlier):
            change = _recipe_change(text, resolved)
            changed = _changed_from(text, resolved)
            if changed is None or any((out / d / "stage.json").exists() for d in changed[1]):
                raise ConfigError(
                    f"{out}: the recipe changed since this run ({change}), in a stage that "
                    f"finished; resume with the recipe and --set options it ran with (its "
                    f"resolved recipe is {out / 'recipe.yaml'}), or use another output folder"
                )
            # a mistake fixed in a stage that never finished (a teacher, a backend): the
            # stages before it are kept; refused, the fix cost every finished stage
            changed_from = changed
            # its new settings are checked as a new run's (the stage's own check is off in a
            # compress run: audit51 review2 N1)
            _check_unused_settings(rec, first=changed[0])
            said.append(
                f"{out}: the recipe changed from stage {changed[0]} on ({change}), which had "
                "not finished: the finished stages before it are kept, and the run goes on "
                "with this recipe"
            )
        recorded = check_resume_inputs(out, inputs) or {}
        folders = changed_from[1] if changed_from else []
        was = recorded.get("stage_files") or {}
        redone = _stage_files_redone(out, was, inputs["stage_files"], folders, said)
        if redone:  # emptied before the run goes on, as a recipe change's stages are
            first = min(int(f[:2]) for f in redone)
            if changed_from is not None:
                first = min(first, changed_from[0])
            changed_from = (first, [*folders, *redone])
    _check_ignored_scopes(rec, model)  # it exports the model: after the cheaper checks
    return run_configs, skipped, resolved, inputs, changed_from, said


@keeps_caller_state
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
    with ``nas``/``train``); the report holds the last ``bench`` stage's report.

    Everything is checked before anything is written to ``out``: the recipe, the model and
    data paths, the formats this machine can export (an ``engine`` format is skipped with a
    warning without TensorRT and CUDA), the quantize stages' ``ignored_scope`` patterns
    (matched on ``model`` exported to ONNX; see :func:`_check_ignored_scopes`), and, on a
    resume, that the recipe, ``model`` and ``data`` are the run's own. A folder where no
    stage finished may be reused freely.
    ``report["final_model"]`` is the last checkpoint and ``report["deployable"]`` the
    artifacts of the last stage that made any (``{name: path}``).

    Args:
        model: the checkpoint to compress (None when the recipe starts with ``nas``/``train``).
        data: the data.yaml every stage trains, validates and calibrates on.
        recipe: a recipe YAML path, a mapping, or a :class:`~yoloslim.recipe.Recipe`.
        out: the run folder: one subfolder per stage, ``compress.json``, ``recipe.yaml``.
        resume: skip the stages this run already finished (and redo those whose outputs
            are gone).
        progress: show progress bars.

    Returns:
        Result: ``model`` is the last checkpoint (``report["final_model"]``); ``report`` is
        what ``compress.json`` holds (``stages`` with their folders, ``final_model``,
        ``deployable``, ``skipped``, ``artifacts`` and ``bench``: the last bench stage's
        report, ``{}`` without one); ``artifacts`` maps each row's name to its path.

    Raises:
        ConfigError: invalid recipe, a missing model or data file, a format this machine
            cannot export, ``out`` holds another run and ``resume`` is False, or the recipe,
            model or data differ from the run being resumed.

    Example:
        >>> res = run_recipe("runs/nano/best.pt", "data.yaml", "recipes/cpu-int8.yaml",
        ...                  out="runs/compress")
        >>> res.report["deployable"]  # doctest: +SKIP
    """
    check_flags(resume=resume, progress=progress)
    from torch import nn

    from yoloslim.runtime.predictor import as_artifact

    check_path(data, "data", "the data.yaml's path")
    check_path(out, "out", "the output folder's path")
    rec = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    # absolute, so the paths the stages record still hold for a resume from another folder
    out = Path(out).expanduser().absolute()
    data = str(Path(data).expanduser().absolute())
    model = as_artifact(model)
    if isinstance(model, nn.Module):
        raise ConfigError(
            "run_recipe takes the model as a checkpoint file (the run records it and checks it "
            "on resume): save it with ys.save_checkpoint and pass the path"
        )
    if model is not None:
        model = str(Path(model).expanduser().absolute())
    refuse_if_held(out, "compress")  # now, not after the recipe's inputs are checked
    checked = _check_run(rec, model, data, out, resume)
    run_configs, skipped, resolved, inputs, changed, said = checked
    with folder_lock(out, "compress"):  # made here, if it is not there yet
        for line in said:
            log.warning("%s", line)
        # a killed run's half-written records: none is live while we hold the lock
        remove_stale_temps(out, _RECORDS)
        for folder in changed[1] if changed is not None else []:
            # the changed stages' unfinished folders (a partial training of another
            # configuration does not resume into this one)
            if (out / folder).is_dir():
                shutil.rmtree(out / folder)
        for sdir in out.glob("[0-9][0-9]-*"):
            remove_stale_temps(sdir, ("stage.json", "reparam_report.json"))
        atomic_write_text(out / "recipe.yaml", resolved)
        atomic_write_text(out / "inputs.json", json.dumps(inputs, indent=1) + "\n")

        st = _State(baseline=str(model) if model else None, model=str(model) if model else None)
        stage_reports: list[dict] = []
        result_report: dict = {}
        deployable: dict = {}
        redo = False  # once a stage runs again, the ones after it use its new outputs
        for i, stage in enumerate(rec.stages, 1):
            sdir = out / f"{i:02d}-{stage.name}"
            record, gone = (None, False) if redo or not resume else _finished(sdir, stage, i, out)
            if record is None:
                # an interrupted stage's partial outputs go, except an interrupted train or
                # distill stage's on a resume (it resumes), unless what it trained on was made
                # again (redo) or its own outputs are gone
                goes_on = stage.name in _RESUMABLE and resume and not (redo or gone)
                if sdir.exists() and not goes_on:
                    # under its lock: a run writing there now (an export into the stage's
                    # folder) refuses this one before its files go (audit47 conc F7)
                    with folder_lock(sdir, f"compress ({stage.name} stage)"):
                        _empty_stage_folder(sdir, _KEPT.get(stage.name, ()))
                redo = True
                if progress:  # which stage the bars below belong to
                    _say(f"stage {i}/{len(rec.stages)} ({stage.name}) -> {sdir}")
                record = _run_stage(rec, i, st, run_configs, data, sdir, progress, out)
            elif progress:
                _say(f"stage {i}/{len(rec.stages)} ({stage.name}): finished earlier, kept")
            st.model = record["model"]
            taken = {row[0] for row in st.rows}  # a second prune's "pruned" hides not the first's
            st.rows.extend(
                [f"{row[0]}{_REPEATED}{i})" if row[0] in taken else row[0], *row[1:]]
                for row in record["rows"]
            )
            made = record.get("deployable")
            if made is None:  # a stage.json from before "deployable" was recorded
                made = {r[0]: r[1] for r in record["rows"] if r[2] == "artifact"}
            deployable = made or deployable
            entry = {"stage": stage.name, "index": i, "dir": str(sdir)}
            if stage.name in ("quantize", "prune"):  # a missed budget, said again at the end
                from yoloslim.compress.prune import target_warning
                from yoloslim.compress.quantize import budget_warning

                said = budget_warning if stage.name == "quantize" else target_warning
                missed = said(record.get("report") or {})
                if missed:
                    entry["warning"] = missed
            stage_reports.append(entry)
            if stage.name == "bench":
                result_report = record["report"]
                _restore_reports(sdir, out, result_report)
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
        # a Path, as every artifact and quantize's model (a str: audit48 api F10)
        return Result(model=Path(st.model), report=final, artifacts=artifacts)
