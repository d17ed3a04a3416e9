"""``prune()``: structured (width and depth) pruning, fine-tuning, unstructured sparsity, report.

The schedule (*when*) lives here; *what* to remove comes from the importance
criteria of :mod:`yoloslim.compress.prune_width` (Torch-Pruning) and the block
scores of :mod:`yoloslim.compress.prune_depth`; *how* is Torch-Pruning's
dependency graph. Every stage is measured -- params, GFLOPs, exported size,
latency in a real runtime, mAP -- because FLOPs are not speed.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import math
import os
import shutil
import tempfile
from pathlib import Path

import torch
from torch import nn

from yoloslim.compress.prune_config import AdvancedPruneConfig, Criterion, Method, PruneConfig
from yoloslim.compress.prune_depth import ORIGIN, prune_depth, removable_blocks
from yoloslim.compress.prune_report import measure, measure_latency_pair, summary_rows
from yoloslim.compress.prune_sparse import apply_unstructured
from yoloslim.compress.prune_width import (
    bn_sparsity_train,
    conv_widths,
    profile,
    prune_width,
    taylor_gradients,
    unmatched_patterns,
)
from yoloslim.configs import DEFAULT_IMGSZ, check_config, check_flags, check_path
from yoloslim.errors import ConfigError, ModelError
from yoloslim.extras import require
from yoloslim.fileio import (
    atomic_write_text,
    folder_lock,
    refuse_if_held,
    refuse_overwriting_input,
    remove_stale_temps,
)
from yoloslim.models.blocks import is_fused
from yoloslim.result import Result
from yoloslim.torch_state import autograd_on, keeps_caller_state

__all__ = [
    "AdvancedPruneConfig",
    "Criterion",
    "Method",
    "PruneConfig",
    "prune",
    "restore_pruned",
]

log = logging.getLogger(__name__)

FLOPS_NOTE = (
    "FLOPs are not speed: small detectors at batch 1 on a CPU are overhead-bound, so latency "
    "is measured in the runtime (latency_ms), never inferred from GFLOPs."
)


@keeps_caller_state
@autograd_on()
def prune(
    model: nn.Module | str | Path,
    data: str | Path | None,
    *,
    config: PruneConfig = PruneConfig(),  # noqa: B008 - frozen dataclass, immutable
    out: str | Path | None = None,
    exist_ok: bool = False,
    progress: bool = False,
) -> Result:
    """Prune a detector's channels and/or residual blocks, fine-tune it, and report.

    The schedule: ``config.steps`` steps, each removing blocks (``depth_ratio`` or a
    depth budget) and then channels (ratio or budget) by Torch-Pruning's
    dependency graph, optionally fine-tuning ``finetune_between`` epochs between
    steps; then ``finetune_epochs`` epochs (by distillation from the unpruned model
    with ``distill``), then optional unstructured sparsity. The input model is
    never modified.

    Args:
        model: a Detector, a yoloslim checkpoint path or a registered model name; any
            other ``nn.Module`` taking ``(B, 3, imgsz, imgsz)`` can be width-pruned
            (no fine-tuning, mAP or latency; list its output layers in ``ignore``).
        data: the ``data.yaml``; may be None when nothing needs data (no fine-tuning,
            no Taylor / depth scoring / sparsity phase), and then no mAP is reported.
        config: what and how much to prune.
        out: folder for ``pruned.pt``, ``prune_report.json`` and the fine-tuning and
            export runs; None writes nothing lasting.
        exist_ok: replace the pruned model an earlier prune left in ``out``. Without it
            an ``out`` holding ``pruned.pt`` is an error, as train refuses a folder that
            holds a run, so no pruned (fine-tuned) model is lost by mistake.
        progress: progress bars.

    Returns:
        Result: ``model`` the pruned (fine-tuned) model in eval mode, ``report`` (also
        ``out/prune_report.json``), ``artifacts["checkpoint"]`` = ``out/pruned.pt``
        (a Detector's loads with :func:`yoloslim.load` / ``load_checkpoint``,
        ``weights_only=True``; another ``nn.Module``'s is a record of its pruned widths and
        weights, which :func:`yoloslim.compress.prune.restore_pruned` applies to a fresh
        copy of that module).

    Raises:
        ConfigError: a budget at or above the model's, a method the model cannot
            take (e.g. fine-tuning an external module), data needed but missing, or
            ``out`` holding a pruned model (without ``exist_ok``).
        ModelError: the model cannot be loaded.

    Example:
        >>> # runs/base: damo-tiny (4.9 GFLOPs at 320 px), pruned to 2.5
        >>> res = prune("runs/base/best.pt", "data.yaml",
        ...             config=PruneConfig(target_flops=2.5, finetune_epochs=5), out="runs/prune")
        >>> mAP = res.report["stages"]["finetuned"]["map"]  # mAP50-95 after fine-tuning
    """
    check_flags(exist_ok=exist_ok, progress=progress)
    check_config(config, PruneConfig)
    from yoloslim.runtime.predictor import BUILDABLE, as_artifact

    model = as_artifact(model, required=True, expected=BUILDABLE)
    if isinstance(model, nn.Module):  # torch.compile's wrapper: its graph is the model's
        model = getattr(model, "_orig_mod", model)
    require("torch_pruning", "prune")  # before the baseline's evaluation, not after it
    earlier_exports: list[Path] = []
    if out is not None:
        check_path(out, "out", "the output folder's path")
        out = Path(out).expanduser()  # not a folder named '~' in the working directory
        o = out
        # the fine-tuning runs too: finetune/, and finetune_step{k}/ between steps
        writes = [o / "pruned.pt", o / "prune_report.json", *o.glob("finetune*")]
        refuse_overwriting_input(model, writes, arg="model", hint="give another out (--out)")
        _refuse_replacing(o, exist_ok)
        refuse_if_held(o, "prune")  # now, not after the baseline is measured
        earlier_exports = _refuse_others_runs(o, exist_ok)
    net, names, trained_imgsz = _load_model(model, data)
    upstream = list(getattr(net, "history", []))  # the fine-tuning inside is part of this step
    cfg = (
        config
        if config.imgsz
        else dataclasses.replace(config, imgsz=trained_imgsz or DEFAULT_IMGSZ)
    )
    is_detector = hasattr(net, "spec") and hasattr(net, "forward_raw")
    _check_feasible(cfg, net, data, is_detector)
    if isinstance(data, str | Path):  # read before the run folder is made: a missing one
        from yoloslim.data.config import check_class_count, load_data_config

        if is_detector and hasattr(net, "nc"):  # leaves nothing behind
            name = model if not isinstance(model, nn.Module) else type(model).__name__
            check_class_count(net.nc, str(name), data)
        else:
            load_data_config(data)
    # a target the model already meets, before the baseline's validation (minutes on a real
    # val split) and before --out is made (an empty folder was left); profiled for a target only
    if cfg.target_flops is not None or cfg.target_params is not None:
        _check_budget(cfg, profile(net, cfg.imgsz))
    teacher = copy.deepcopy(net).eval() if cfg.distill else None
    if teacher is not None:  # what the fine-tuning's history names it (was "a Detector")
        # absolute, as every history path (audit50 chain F1: as typed, relative)
        shown = (
            str(Path(model).expanduser().resolve())
            if isinstance(model, str | Path)
            else type(model).__name__
        )
        teacher.history_label = f"the model before this prune ({shown})"
    torch.manual_seed(cfg.seed)

    say = _phase if progress else lambda text: None
    with _workdir(out, exist_ok) as work:
        say("measuring the model before pruning (params, GFLOPs, mAP)")
        before = measure(net, data, cfg, is_detector, progress)
        original = copy.deepcopy(net)
        say(f"pruning ({cfg.pruned_by}, {cfg.steps} step{'s' if cfg.steps > 1 else ''})")
        # the fine-tuning runs' checkpoints are pruned models: they say so, as pruned.pt does
        step = _history(upstream, cfg, out)
        net, schedule = _run_schedule(net, data, cfg, work, teacher, before, progress, step)
        say("measuring the pruned model")
        pruned = measure(net, data, cfg, is_detector, progress)
        _warn_short(cfg, schedule, before, pruned)
        stages = {"before": before, "pruned": pruned}
        if cfg.finetune_epochs:
            net = _finetune(
                net, teacher, data, cfg, cfg.finetune_epochs, work / "finetune", progress, step
            )
            stages["finetuned"] = measure(net, data, cfg, is_detector, progress)
        sparse = None
        if cfg.unstructured is not None:
            sparse = apply_unstructured(net, cfg.unstructured, cfg.ignore)
            stages["sparse"] = measure(net, data, cfg, is_detector, progress)
        net.eval()
        latency = None
        if cfg.latency and is_detector:
            say(f"exporting both models to {cfg.backend} and timing them side by side")
            # marked first: a prune killed while exporting (its report not yet written) left
            # export/ that the same command then refused as "files no prune made"
            (work / "export").mkdir(exist_ok=True)
            atomic_write_text(work / "export" / EXPORT_MARK, "the models yoloslim prune times\n")
            latency = measure_latency_pair(original, net, work / "export", cfg)
            if out is None:  # timed in a temporary folder, gone when prune returns
                latency["info"]["artifacts"] = None
            for name, row in stages.items():
                row.update(latency["before" if name == "before" else "after"])
        report = {
            "model": getattr(net, "spec", {}).get("name", type(net).__name__),
            "config": cfg.to_dict(),
            "stages": stages,
            "table": summary_rows(stages),
            "schedule": schedule,
            "layers": _layer_changes(original, net),
            "unstructured": sparse,
            "latency": latency and latency["info"],
            "note": FLOPS_NOTE
            + (
                " Unstructured zeros leave dense tensors: size and dense latency are unchanged."
                if sparse
                else ""
            ),
        }
        # the returned model says it was pruned, as pruned.pt does (an export of it records
        # this step)
        net.history = step
        for m in net.modules():  # the report has used the blocks' earlier names
            m.__dict__.pop(ORIGIN, None)
        result = Result(net, report)
        if out is not None:
            last = list(stages.values())[-1]
            # the earlier run's report goes first: a kill between the two writes below then
            # leaves the new pruned.pt without a report, never beside the old one's
            (Path(out) / "prune_report.json").unlink(missing_ok=True)
            # the size it was trained at: this prune's, where it trained (fine-tuning, BN
            # sparsity), else the model's own (--imgsz 160 without fine-tuning wrote 160 for
            # a 128-px model, and val and train then took 160 by default)
            trained_here = _fine_tunes(cfg) or cfg.advanced.sparsity_epochs
            size = cfg.imgsz if trained_here or not trained_imgsz else trained_imgsz
            result.artifacts["checkpoint"] = _save(
                net, Path(out), cfg, is_detector, last, original, size
            )
            report["checkpoint"] = str(result.artifacts["checkpoint"])
            _remove_stale_runs(Path(out), cfg)
            if latency is None:  # an earlier prune's timed exports, of another model
                for d in earlier_exports:
                    log.info("removing %s: an earlier prune's export, of another model", d)
                    shutil.rmtree(d, ignore_errors=True)
                if earlier_exports:
                    (Path(out) / "export" / EXPORT_MARK).unlink(missing_ok=True)
            # the report itself, as --json, export_report.json and quant_report.json hold
            result.artifacts["report"] = atomic_write_text(
                Path(out) / "prune_report.json", json.dumps(report, indent=2, default=str) + "\n"
            )
    return result


def _phase(text: str) -> None:
    """A line saying what a long step without a bar of its own is doing (stderr)."""
    from yoloslim.progress import say

    say(f"prune: {text}")


def _load_model(model, data) -> tuple[nn.Module, list[str] | None, int | None]:
    from yoloslim.models.checkpoint import load_checkpoint
    from yoloslim.models.registry import build_model

    suffix = "" if isinstance(model, dict) else Path(str(model)).suffix.lower()
    imgsz = None
    if isinstance(model, nn.Module):
        net = copy.deepcopy(model)
        imgsz = getattr(net, "imgsz", None)
    elif suffix == ".pt" or (
        not isinstance(model, dict) and Path(model).is_file() and suffix not in (".yaml", ".yml")
    ):
        net, ckpt = load_checkpoint(model)
        imgsz = ckpt.get("imgsz")
    else:
        names = None
        if data is not None:
            from yoloslim.data import load_data_config

            names = load_data_config(data).names
        spec = model if isinstance(model, dict) else str(model)
        net = build_model(Path(model) if suffix in (".yaml", ".yml") else spec, names=names)
        log.warning(
            "%s is an architecture, not a trained checkpoint: its weights are random, so the "
            "criterion ranks noise and fine-tuning trains from scratch (prune a trained .pt)",
            net.spec.get("name") or "the model" if isinstance(model, dict) else model,
        )
    if is_fused(net):
        raise ModelError("cannot prune a re-parameterised (deploy-form) model; prune before fuse()")
    return net.eval(), getattr(net, "names", None), imgsz


def _fine_tunes(cfg: PruneConfig) -> bool:
    """Whether the prune fine-tunes at all (after it, or between its steps)."""
    return bool(cfg.finetune_epochs or (cfg.finetune_between and cfg.steps > 1))


def _bn_sparsity_phase(cfg: PruneConfig) -> bool:
    """Whether the prune trains a BN-sparsity phase before ranking (bn-scale criterion)."""
    return bool(cfg.criterion == Criterion.BN_SCALE and cfg.advanced.sparsity_epochs)


def _reads_calib_batches(cfg: PruneConfig) -> bool:
    """Whether the prune reads calibration batches: Taylor importance, depth scoring, the
    BN-sparsity phase."""
    return (
        cfg.criterion == Criterion.TAYLOR
        or cfg.depth_ratio is not None
        or cfg.method == Method.DEPTH
        or _bn_sparsity_phase(cfg)
    )


def _warn_unused(cfg: PruneConfig) -> None:
    """Warn of settings given (not at their defaults) that this prune never reads: they were
    kept and recorded in the report as if used."""
    adv, bn_phase = AdvancedPruneConfig(), _bn_sparsity_phase(cfg)
    reads = [  # (shown as, its config, that config's defaults, the field, read by this prune)
        ("advanced.", cfg.advanced, adv, "sparsity_epochs", cfg.criterion == Criterion.BN_SCALE),
        ("advanced.", cfg.advanced, adv, "sparsity_reg", bn_phase),
        ("advanced.", cfg.advanced, adv, "sparsity_lr", bn_phase),
        ("advanced.", cfg.advanced, adv, "calib_batches", _reads_calib_batches(cfg)),
        ("advanced.", cfg.advanced, adv, "latency_rounds", cfg.latency),
        ("", cfg, PruneConfig(), "backend", cfg.latency),
    ]
    unused = [
        prefix + name
        for prefix, given, default, name, used in reads
        if not used and getattr(given, name) != getattr(default, name)
    ]
    if unused:
        log.warning(
            "%s not used by this prune (sparsity_* are the bn-scale criterion's sparsity "
            "phase, calib_batches feeds taylor, depth and that phase, latency_rounds and "
            "backend the latency measurement)",
            ", ".join(unused),
        )


def _check_feasible(cfg: PruneConfig, net: nn.Module, data, is_detector: bool) -> None:
    if cfg.distill and not _fine_tunes(cfg):  # it was recorded as distilled, and was not
        log.warning(
            "distill (--distill) distils while fine-tuning, and this prune fine-tunes no "
            "epoch (finetune_epochs=0): nothing is distilled"
        )
    if cfg.finetune_between and cfg.steps == 1:
        log.warning(
            "finetune_between=%d (--finetune-between) fine-tunes between steps, and steps=1 "
            "has none: it is not used",
            cfg.finetune_between,
        )
    _warn_unused(cfg)
    needs_detector = {
        "finetune_epochs/finetune_between": cfg.finetune_epochs or cfg.finetune_between,
        "criterion='taylor'": cfg.criterion == Criterion.TAYLOR,
        "depth pruning": cfg.depth_ratio is not None or cfg.method == Method.DEPTH,
        "distill": cfg.distill,
        "advanced.sparsity_epochs": _bn_sparsity_phase(cfg),
    }
    wanted = [k for k, v in needs_detector.items() if v]
    if wanted and not is_detector:
        raise ConfigError(
            f"{', '.join(wanted)} need a yoloslim Detector (loss and data pipeline); "
            f"{type(net).__name__} can only be width-pruned with l1/l2/bn-scale/random"
        )
    if wanted and data is None:
        skip = (
            " (finetune_epochs=0 / --finetune-epochs 0 skips fine-tuning)"
            if (cfg.finetune_epochs or cfg.finetune_between)
            else ""
        )
        raise ConfigError(
            f"no data (--data / data=) but {', '.join(wanted)} need a data.yaml{skip}"
        )
    if (cfg.depth_ratio is not None or cfg.method == Method.DEPTH) and not removable_blocks(net):
        raise ConfigError("depth pruning: the model has no residual block to remove")
    _check_ignore(cfg, net)
    if cfg.finetune_epochs or cfg.finetune_between:  # its keys, before any work
        _finetune_config(cfg, max(cfg.finetune_epochs, cfg.finetune_between))


def _check_ignore(cfg: PruneConfig, net: nn.Module) -> None:
    unmatched = unmatched_patterns(net, cfg.ignore)
    if unmatched:
        example = next((n for n, m in net.named_modules() if isinstance(m, nn.Conv2d)), "")
        raise ConfigError(
            f"PruneConfig.ignore (--ignore): {', '.join(map(repr, unmatched))} "
            f"match{'es' if len(unmatched) == 1 else ''} no module of the model (names look "
            f"like {example!r}; fnmatch patterns such as 'backbone.*')"
        )


def check_targets(cfg: PruneConfig, net: nn.Module, imgsz: int) -> None:
    """ConfigError for ``cfg.ignore`` patterns that match no module of ``net`` and for a
    FLOPs or parameter target ``net`` already meets at ``imgsz``: what a recipe checks on
    its run's model before any stage runs (a train stage before the prune keeps its
    network)."""
    _check_ignore(cfg, net)
    _check_budget(dataclasses.replace(cfg, imgsz=imgsz), profile(net, imgsz))


def _check_budget(cfg: PruneConfig, before: dict) -> None:
    for key, value, unit, scale in (
        ("target_flops", cfg.target_flops, "GFLOPs", 1.0),
        ("target_params", cfg.target_params, "M params", 1e-6),
    ):
        have = before["gflops"] if key == "target_flops" else before["params"] * scale
        if value is not None and value >= have:
            raise ConfigError(
                f"PruneConfig.{key}={value} is not below the model's {have:.4g} {unit} "
                f"(at imgsz={cfg.imgsz}, deploy form): nothing to prune"
            )


def _refuse_replacing(out: Path, exist_ok: bool) -> None:
    if (out / "pruned.pt").exists() and not exist_ok:
        raise ConfigError(
            f"{out} holds a pruned model (pruned.pt) that this prune would replace; choose "
            "another out (--out), or pass exist_ok=True (--exist-ok) to replace it"
        )


@contextlib.contextmanager
def _workdir(out, exist_ok: bool):
    if out is not None:
        with folder_lock(out, "prune"):
            # again under the lock: a prune that finished here since the first check (the
            # baseline took a while to measure) is not replaced (audit42 corrupt F1, train's)
            _refuse_replacing(Path(out), exist_ok)
            # a killed run's half-written files (as large as the model): none is live now
            remove_stale_temps(out, ("pruned.pt", "prune_report.json"))
            yield Path(out)
    else:
        with tempfile.TemporaryDirectory(prefix="yoloslim-prune-") as tmp:
            yield Path(tmp)


def _calib_batches(data, cfg: PruneConfig) -> list:
    """A fixed list of ``calib_batches`` un-augmented training batches (seeded)."""
    from yoloslim.data import DetectionDataset, collate, load_data_config, load_samples

    dc = load_data_config(data)
    ds = DetectionDataset(load_samples(dc, "train"), cfg.imgsz, augment=False, names=dc.names)
    g = torch.Generator().manual_seed(cfg.seed)
    order = torch.randperm(len(ds), generator=g).tolist()
    n = min(len(ds), cfg.batch * cfg.advanced.calib_batches)
    return [collate([ds[i] for i in order[k : k + cfg.batch]]) for k in range(0, n, cfg.batch)]


def _step_targets(cfg: PruneConfig, before: dict, n_blocks: int) -> list[dict]:
    """Per-step goals: cumulative block counts, relative channel ratios, interpolated budgets."""
    steps, out = cfg.steps, []
    r = cfg.width_ratio
    for k in range(1, steps + 1):
        goal: dict = {}
        if cfg.depth_ratio is not None:
            # to nearest, a tie upwards, as widths are (round() sends ties to the even count)
            goal["blocks"] = math.floor(n_blocks * cfg.depth_ratio * k / steps + 0.5)
        if r is not None:  # cumulative: r * k / steps of the original widths gone
            goal["ratio"] = r * k / steps
        if cfg.target_flops is not None:
            goal["gflops"] = before["gflops"] - (before["gflops"] - cfg.target_flops) * k / steps
        if cfg.target_params is not None:
            base = before["params"] / 1e6
            goal["params"] = base - (base - cfg.target_params) * k / steps
        out.append(goal)
    return out


def _run_schedule(
    net, data, cfg: PruneConfig, work: Path, teacher, before: dict, progress: bool, step: list
):
    adv = cfg.advanced
    batches = None
    if _reads_calib_batches(cfg):
        batches = _calib_batches(data, cfg)
    schedule: dict = {"steps": []}
    if _bn_sparsity_phase(cfg):
        schedule["bn_sparsity_losses"] = bn_sparsity_train(
            net,
            batches,
            epochs=adv.sparsity_epochs,
            reg=adv.sparsity_reg,
            lr=adv.sparsity_lr,
            ignore=cfg.ignore,
        )
    if not cfg.structured:
        return net, schedule
    goals = _step_targets(cfg, before, len(removable_blocks(net)) if batches else 0)
    widths = conv_widths(net)  # what cumulative ratios refer to
    removed = 0
    for k, goal in enumerate(goals, 1):
        row: dict = {"step": k}
        if "blocks" in goal:
            row["depth"] = prune_depth(
                net, batches, count=goal["blocks"] - removed, progress=progress
            )
            removed += len(row["depth"]["removed"])
        if cfg.method == Method.DEPTH and ("gflops" in goal or "params" in goal):
            row["depth"] = prune_depth(net, batches, until=_within(goal, cfg), progress=progress)
        elif cfg.method == Method.WIDTH and any(x in goal for x in ("ratio", "gflops", "params")):
            if cfg.criterion == Criterion.TAYLOR:
                row["taylor_loss"] = taylor_gradients(net, batches)
            net, row["width"] = prune_width(
                net,
                criterion=cfg.criterion.value,
                imgsz=cfg.imgsz,
                ratio=goal.get("ratio"),
                target_flops=goal.get("gflops"),
                target_params=goal.get("params"),
                ignore=cfg.ignore,
                global_pruning=cfg.global_pruning,
                round_to=adv.round_to,
                max_layer_ratio=adv.max_layer_ratio,
                tolerance=adv.budget_tolerance,
                widths=widths if "ratio" in goal else None,
            )
            net.zero_grad(set_to_none=True)
        row.update(profile(net, cfg.imgsz))
        log.info("prune step %d/%d: %s", k, cfg.steps, row)
        schedule["steps"].append(row)
        if cfg.finetune_between and k < cfg.steps:
            run = work / f"finetune_step{k}"
            net = _finetune(net, teacher, data, cfg, cfg.finetune_between, run, progress, step)
    return net.eval(), schedule


def target_warning(report: dict) -> str | None:
    """What a prune report says of a FLOPs or parameter target it could not reach (None: met,
    or none was set): said when pruning, and again in compress's record and summary (audit51
    budget M-1: a missed target was in the stage's files only)."""
    steps = (report.get("schedule") or {}).get("steps") or []
    last = steps[-1] if steps else {}
    if not any((last.get(k) or {}).get("budget_met") is False for k in ("width", "depth")):
        return None
    cfg, stages = report.get("config") or {}, report.get("stages") or {}
    before, pruned = stages.get("before") or {}, stages.get("pruned") or {}
    targets = ", ".join(
        f"{k} {cfg[k]}" for k in ("target_flops", "target_params") if cfg.get(k) is not None
    )
    return (
        f"the target ({targets}) was not met: the pruned model has {pruned['gflops']:.4f} "
        f"GFLOPs and {pruned['params'] / 1e6:.4f} M params (before: {before['gflops']:.4f} "
        f"GFLOPs, {before['params'] / 1e6:.4f} M)"
    )


def _warn_short(cfg: PruneConfig, schedule: dict, before: dict, pruned: dict) -> None:
    """Say when pruning fell short of what was asked: a FLOPs or parameter target it could not
    reach, or a depth ratio too small to remove a single block."""
    missed = target_warning(
        {
            "config": cfg.to_dict(),
            "schedule": schedule,
            "stages": {"before": before, "pruned": pruned},
        }
    )
    if missed:
        log.warning("prune: %s", missed)
    cap = cfg.advanced.max_layer_ratio
    if cfg.ratio is not None and cfg.ratio > cap:
        log.warning(
            "prune: ratio %s is above advanced.max_layer_ratio %s, which caps what each layer "
            "loses: it prunes about as far as %s would (raise max_layer_ratio to go further)",
            cfg.ratio,
            cap,
            cap,
        )
    if pruned["params"] >= before["params"] and cfg.pruned_by != "unstructured":
        why = f" (ignore {list(cfg.ignore)} may cover every layer)" if cfg.ignore else ""
        log.warning("prune: no channel or block was removed%s", why)
    steps = schedule.get("steps") or []
    removed = sum(len((s.get("depth") or {}).get("removed", [])) for s in steps)
    if cfg.depth_ratio is not None and not removed:
        log.warning(
            "prune: depth_ratio %s removed no residual block (it rounds to none of them)",
            cfg.depth_ratio,
        )


def _within(goal: dict, cfg: PruneConfig):
    def ok(m: nn.Module) -> bool:
        p = profile(m, cfg.imgsz)
        if "gflops" in goal:
            return p["gflops"] <= goal["gflops"]
        return p["params"] / 1e6 <= goal["params"]

    return ok


def _finetune_config(cfg: PruneConfig, epochs: int):
    """The TrainConfig of ``epochs`` of fine-tuning: short-run defaults, then
    ``advanced.finetune``."""
    from yoloslim.train import config_from_dict

    values = dict(
        epochs=epochs,
        imgsz=cfg.imgsz,
        batch=cfg.batch,
        seed=cfg.seed,
        lr0=0.002,
        warmup_epochs=min(1.0, epochs / 3),
        close_mosaic=min(2, epochs),
        val_interval=max(1, epochs // 3),
    )
    user = dict(cfg.advanced.finetune)
    if epochs <= 2 and "close_mosaic" not in user:
        # the last 2 epochs without mosaic: none with it (said so, not warned); a user's own
        # close_mosaic keeps the mosaic it leaves
        values.update(close_mosaic=0, augment={"mosaic": 0.0})
    if isinstance(user.get("augment"), dict):  # a user's keys over ours, not instead of all
        user["augment"] = {**values.get("augment", {}), **user["augment"]}
    values.update(user)
    return config_from_dict(values, where="PruneConfig.advanced.finetune")


def _finetune(
    net, teacher, data, cfg: PruneConfig, epochs: int, out: Path, progress: bool, step: list
):
    from yoloslim.train import train as run_train

    # what made it so far: this prune step, then the fine-tuning's own step (so the prune
    # step here does not say the fine-tuning too: it would read as twice the epochs)
    *before, prune_step = step
    fine_tuning = ("finetune_epochs", "finetune_between", "distilled")
    net.history = [*before, {k: v for k, v in prune_step.items() if k not in fine_tuning}]
    tc = _finetune_config(cfg, epochs)
    if teacher is not None:
        from yoloslim.compress.distill import DistillConfig, distill

        return distill(
            net,
            teacher,
            data,
            config=DistillConfig(train=tc),
            out=out,
            exist_ok=True,
            progress=progress,
        ).model.eval()
    # a rerun of prune into the same --out replaces its own fine-tuning run
    return run_train(net, data, config=tc, out=out, exist_ok=True, progress=progress).model.eval()


def _fine_tuning_runs(out: Path) -> list[Path]:
    """The folders a prune into ``out`` fine-tunes in: finetune/ and finetune_step{k}/."""
    import re

    named = re.compile(r"finetune(_step\d+)?")
    return sorted(d for d in out.glob("finetune*") if named.fullmatch(d.name) and d.is_dir())


def _prune_made(run: Path, out: Path) -> bool | None:
    """Whether the training run in ``run`` is a prune into ``out``'s fine-tuning (its
    checkpoints' history: a prune step into ``out``, then the run); None when it holds no
    checkpoint (nothing to lose)."""
    from yoloslim.models.checkpoint import read_checkpoint

    found = [p for p in (run / "last.pt", run / "best.pt") if p.is_file()]
    if not found:
        return None
    want = os.path.abspath(out)
    for p in found:
        try:
            history = read_checkpoint(p, mmap=True).get("meta", {}).get("history") or []
        except Exception:  # noqa: BLE001 - unreadable: not known to be the prune's
            return False
        steps = [h for h in history if isinstance(h, dict)]
        if not (
            steps
            and steps[-1].get("out") == os.path.abspath(run)
            and any(h.get("stage") == "prune" and h.get("out") == want for h in steps)
        ):
            return False
    return True


# written into out/export/ before prune exports the models it times there
EXPORT_MARK = ".yoloslim-prune"


def _refuse_others_runs(out: Path, exist_ok: bool) -> list[Path]:
    """ConfigError when ``out``'s finetune*/ holds a training run that no prune into ``out``
    made (a user's run, say, under the same name): fine-tuning there would replace its
    checkpoints. One an earlier yoloslim's prune left (its history names no prune step) is
    replaced with ``exist_ok`` where that prune's pruned.pt is there too. The same for
    ``export/before`` and ``export/after``, where prune exports the models it times: they are
    an earlier prune's only beside its prune_report.json; returns those (of another model,
    removed when this prune times nothing)."""
    earlier_prune = exist_ok and (out / "pruned.pt").is_file()
    for run in _fine_tuning_runs(out):
        if _prune_made(run, out) is False and not earlier_prune:
            raise ConfigError(
                f"{run} holds a training run that no prune into {out} made; prune fine-tunes "
                f"in {run.name}/ and would replace its checkpoints: move it, or choose another "
                "out (--out)"
            )
    exports = [d for d in (out / "export" / "before", out / "export" / "after") if d.exists()]
    # a prune's: beside its report, or marked by one stopped before writing it (kill -9)
    ours = _is_prune_report(out / "prune_report.json") or (out / "export" / EXPORT_MARK).is_file()
    if exports and not ours:
        raise ConfigError(
            f"{exports[0]} holds files no prune into {out} made; prune exports the models it "
            "times into export/before and export/after, and would replace them: move them, or "
            "choose another out (--out)"
        )
    return exports


def _is_prune_report(path: Path) -> bool:
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(report, dict) and {"stages", "config", "table"} <= set(report)


def _remove_stale_runs(out: Path, cfg: PruneConfig) -> None:
    """An earlier prune's fine-tuning runs that this one did not redo (it fine-tuned fewer
    times, or not at all) go once its pruned.pt is written: they were of another model."""

    kept = {"finetune"} if cfg.finetune_epochs else set()
    if cfg.finetune_between:
        kept |= {f"finetune_step{k}" for k in range(1, cfg.steps)}
    for run in _fine_tuning_runs(out):
        if run.name not in kept and _prune_made(run, out):
            log.info("removing %s: an earlier prune's fine-tuning run, of another model", run)
            shutil.rmtree(run)


def _layer_changes(before: nn.Module, after: nn.Module) -> dict:
    from yoloslim.models.arch import layer_shapes

    def convs(m: nn.Module) -> dict[str, list[int]]:
        shapes = layer_shapes(m)
        # a block that depth pruning renumbered goes by its name before (blocks.1 that is now
        # blocks.0 is blocks.1's layers, resized or not)
        moved = {
            f"{n}.": f"{getattr(b, ORIGIN)}."
            for n, b in m.named_modules()
            if getattr(b, ORIGIN, n) != n
        }

        def named(n: str) -> str:
            prefix = next((p for p in moved if n.startswith(p)), None)
            return n if prefix is None else moved[prefix] + n[len(prefix) :]

        return {named(n): shapes[n] for n, c in m.named_modules() if isinstance(c, nn.Conv2d)}

    a, b = convs(before), convs(after)
    return {
        "convs_before": len(a),
        "convs_after": len(b),
        "removed": sorted(k for k in a if k not in b)[:200],
        "resized": {k: [a[k], b[k]] for k in a if k in b and a[k] != b[k]},
    }


def _history(upstream: list[dict], cfg: PruneConfig, out: str | Path | None) -> list[dict]:
    """``upstream`` and this prune step, as ``meta.history`` lists it (``out`` None: a prune
    kept in memory, whose entry names no folder)."""
    from yoloslim.models.checkpoint import with_history

    details = dict(
        method=cfg.pruned_by,
        ratio=cfg.ratio,
        target_flops=cfg.target_flops,
        target_params=cfg.target_params,
        depth_ratio=cfg.depth_ratio,
        finetune_epochs=cfg.finetune_epochs,
        # the fine-tuning after each step but the last (None: one step, or none between)
        finetune_between=cfg.finetune_between if cfg.steps > 1 and cfg.finetune_between else None,
        distilled=cfg.distill and _fine_tunes(cfg),  # distils while fine-tuning, or never
    )
    if out is None:
        return [*upstream, {"stage": "prune", "out": None, **details}]
    return with_history(upstream, "prune", out, **details)


# a pruned module's record (prune() of a module that is no Detector); /1 records held no
# Linear layers and no conv's groups
PRUNED_MODULE = "yoloslim-pruned-module/2"
_PRUNED_MODULE_V1 = "yoloslim-pruned-module/1"


def _save(
    net: nn.Module,
    out: Path,
    cfg: PruneConfig,
    is_detector: bool,
    last: dict,
    original: nn.Module,
    imgsz: int,
) -> Path:
    """``out/pruned.pt``, recording ``imgsz`` as the size it was trained at; its meta holds
    the mAP of ``last`` (the last stage measured: after fine-tuning, if any), as a trained
    checkpoint's holds its best epoch's. A module not
    yoloslim's is saved only if :func:`restore_pruned` can rebuild it from ``original``
    (the unpruned module): a ModelError names the layers whose shape the record cannot
    hold."""
    from yoloslim.models.arch import layer_shapes
    from yoloslim.models.checkpoint import atomic_save, save_checkpoint

    meta = {"stage": "prune", "prune": cfg.to_dict(), "history": list(net.history)}
    # the mAP as measured, at cfg.imgsz: not recorded beside another size (--imgsz without
    # fine-tuning), where info would show it as the model's at its own size
    if last.get("map") is not None and imgsz == cfg.imgsz:
        meta.update(map=last["map"], map50=last.get("map50"))
    if is_detector:
        return save_checkpoint(out / "pruned.pt", net, imgsz=imgsz, meta=meta)
    record = {
        "format": PRUNED_MODULE,
        "layers": layer_shapes(net),
        "state_dict": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()},
        "meta": meta,
    }
    _check_restorable(copy.deepcopy(original), record)
    return atomic_save(record, out / "pruned.pt")


def _check_restorable(fresh: nn.Module, record: dict) -> None:
    """ModelError unless ``record`` rebuilds the pruned module from ``fresh`` (a copy of the
    unpruned one), naming the tensors whose shape it does not hold (layers other than
    Conv2d, Linear and BatchNorm2d that pruning resized)."""
    from yoloslim.models.arch import apply_layers

    apply_layers(fresh, record["layers"])
    have = fresh.state_dict()
    wrong = [
        f"{k} ({type(fresh.get_submodule(k.rpartition('.')[0])).__name__})"
        for k, v in record["state_dict"].items()
        if k in have and have[k].shape != v.shape
    ]
    if wrong:
        raise ModelError(
            f"the pruned module cannot be saved so that it reloads: pruning resized "
            f"{', '.join(wrong[:5])}{' ...' if len(wrong) > 5 else ''}, and a pruned-module "
            "record holds the shapes of Conv2d, Linear and BatchNorm2d layers only; list such "
            "layers in ignore (--ignore) to keep them whole"
        )


def restore_pruned(model: nn.Module, path: str | Path) -> nn.Module:
    """Rebuild a pruned external module: a fresh ``model`` resized to the record and loaded.

    The record (written by :func:`prune` for non-yoloslim modules) holds per-layer
    conv/BN shapes and the weights; it loads with ``weights_only=True``.
    """
    from yoloslim.models.arch import apply_layers

    rec = torch.load(Path(path), map_location="cpu", weights_only=True)
    fmt = rec.get("format") if isinstance(rec, dict) else None
    if fmt not in (PRUNED_MODULE, _PRUNED_MODULE_V1):
        raise ModelError(f"{path}: not a pruned-module record (use yoloslim.load for checkpoints)")
    apply_layers(model, rec["layers"], legacy=fmt == _PRUNED_MODULE_V1)
    model.load_state_dict(rec["state_dict"])
    return model.eval()
