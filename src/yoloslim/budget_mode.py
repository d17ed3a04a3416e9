"""Budget mode of ``compress``: a grid of prune ratios x {float, INT8}, benched side by side
in one run, and the fastest candidate within a latency and/or mAP-drop budget."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import numbers
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from yoloslim.configs import brief, check_flags, check_path, plain_numbers
from yoloslim.errors import ConfigError
from yoloslim.fileio import (
    atomic_write_text,
    folder_lock,
    refuse_if_held,
    refuse_overwriting_input,
)
from yoloslim.recipe import BenchStage, Recipe, load_recipe
from yoloslim.result import Result
from yoloslim.torch_state import keeps_caller_state

__all__ = ["run_budget", "select_candidate"]

log = logging.getLogger(__name__)

# the recipe stages budget mode takes as templates; the others do not run in it
_TEMPLATES = ("prune", "quantize", "bench")


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
    qualifies when its mAP50-95 drop (in points, to 3 decimals, as it is reported) is at most
    ``max_drop`` and its median batch-1 latency (in ms, to 3 decimals, as the front table
    shows it) at most ``target_latency`` ms (a ``None`` budget always holds). Of two equally
    fast, the one with the higher mAP is chosen.
    """
    base_map = rows[0]["map"]
    front, best = [], None
    for (ratio, scheme, path), row in zip(candidates, rows, strict=True):
        # decided on the figure the report shows: a drop of exactly max_drop is within
        drop = round(100 * (base_map - row["map"]), 3) + 0.0  # + 0.0: never "-0.000"
        ms = round(row["latency_ms"]["median"], 3)
        ok = (max_drop is None or drop <= max_drop) and (
            target_latency is None or ms <= target_latency
        )
        entry = {
            "name": row["name"],
            "ratio": ratio,
            "scheme": scheme,
            "path": path,
            "map": row["map"],
            "drop_points": drop,
            "latency_ms": ms,
            "ok": ok,
        }
        front.append(entry)
        if ok and (best is None or (ms, -row["map"]) < (best["latency_ms"], -best["map"])):
            best = entry
    return front, best


def _finished_bench(saved: Path, paths: list[str], names: list[str], settings: dict) -> dict | None:
    """The bench report of a finished budget run over the same candidates, measured with the
    same ``settings`` (a subset of the report's), else None. A folder copied or moved since
    has the same candidates under its own name: their rows then name this folder's files."""
    if not saved.exists():
        return None
    bench = json.loads(saved.read_text()).get("bench") or {}
    rows = bench.get("rows") or []
    out = saved.parent
    from yoloslim.runtime.ov_core import respelled

    # a row named "(OV f32)" by an earlier version is the same row (review F5)
    here = [(str(_recorded(str(r.get("path")), out)), respelled(str(r.get("name")))) for r in rows]
    if here != list(zip(paths, names, strict=True)):
        return None
    if any(bench.get("settings", {}).get(k) != v for k, v in settings.items()):
        return None
    rows = [{**r, "path": p, "name": n} for r, (p, n) in zip(rows, here, strict=True)]
    return {**bench, "rows": rows}


# a candidate's markers, and those of what is made from each (made again with it)
_MADE_FROM = {
    "pruned.txt": ("float.txt", "onnx.txt", "int8.txt"),
    "float.txt": ("onnx.txt", "int8.txt"),
}


def _remade_since(record: Path, grid: Path) -> bool:
    """Whether a candidate's file was made again after ``record`` (``budget.json``) measured
    the grid: a marker of the grid is newer than it."""
    if not record.exists():
        return True
    measured = record.stat().st_mtime_ns
    return any(m.stat().st_mtime_ns > measured for m in grid.glob("ratio-*/*.txt"))


def _number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_budget_args(model, target_latency, max_drop, ratios) -> list[float]:
    """ConfigError naming the first of :func:`run_budget`'s arguments it cannot take; the
    ratios as a sorted list of floats (one number counts as one ratio)."""
    if model is None or not Path(model).expanduser().is_file():
        raise ConfigError(f"model={brief(model)} (--model): budget mode needs a trained checkpoint")
    ratios = plain_numbers(ratios)
    if _number(ratios):
        ratios = [ratios]
    if not isinstance(ratios, (list, tuple)) or not all(_number(r) for r in ratios):
        raise ConfigError(
            f"ratios={ratios!r} (--ratios): give a list of prune ratios, each in (0, 1)"
        )
    for name, value in (("target_latency", target_latency), ("max_drop", max_drop)):
        if value is not None and not _number(plain_numbers(value)):
            flag = name.replace("_", "-")
            raise ConfigError(f"{name}={value!r} (--{flag}): must be a number")
    if target_latency is None and max_drop is None:
        raise ConfigError(
            "budget mode needs a latency target and/or a max drop (target_latency=, max_drop=; "
            "--target-latency, --max-drop)"
        )
    if max_drop is not None and not (math.isfinite(max_drop) and max_drop >= 0):
        raise ConfigError(f"max_drop={max_drop} (--max-drop): must be a number >= 0 (mAP points)")
    if target_latency is not None and not (math.isfinite(target_latency) and target_latency > 0):
        raise ConfigError(
            f"target_latency={target_latency} (--target-latency): must be a number > 0 (ms)"
        )
    if not ratios or any(not 0 < r < 1 for r in ratios):
        raise ConfigError(f"ratios={list(ratios)} (--ratios): prune ratios must each be in (0, 1)")
    seen: dict[str, float | str] = {"0.00": "the baseline's 0"}
    if any(r > 0.99 for r in ratios):  # 0.995 ran as "0.99"; 0.996 was named 1.00
        raise ConfigError(
            f"ratios={list(ratios)} (--ratios): a ratio above 0.99 is named 0.99 or 1.00 (its "
            "folder and row are named by the ratio to two decimals); give at most 0.99"
        )
    for r in ratios:  # a candidate's folder and row are named by its ratio to 2 decimals
        if f"{r:.2f}" in seen:
            raise ConfigError(
                f"ratios={list(ratios)} (--ratios): {seen[f'{r:.2f}']} and {r} are the same "
                "to two decimals, which name a candidate's folder and row; give each once"
            )
        seen[f"{r:.2f}"] = r
    return sorted(float(r) for r in ratios)


def _templates(rec: Recipe, ratios) -> tuple[dict, Any, BenchStage, list[tuple]]:
    """The recipe's prune (one config per ratio), quantize and bench stages as budget mode
    makes and measures its candidates with, and the warnings (``log.warning``'s arguments)
    that name what of the recipe goes unused, to be said once the run holds its folder (they
    were said before a refusal of the folder: audit45 review2 N6)."""
    from yoloslim.compress.prune_config import PruneConfig
    from yoloslim.compress.quant_config import QuantConfig

    notes: list[tuple] = []

    def warn(*args: Any) -> None:
        notes.append(args)

    ignored = [s.name for s in rec.stages if s.name not in _TEMPLATES]
    if ignored:
        warn(
            "budget mode takes only the recipe's %s stages as templates; its %s stage%s "
            "do%s not run",
            "/".join(_TEMPLATES),
            " and ".join([", ".join(ignored[:-1]), ignored[-1]] if len(ignored) > 1 else ignored),
            "s" if len(ignored) > 1 else "",
            "" if len(ignored) > 1 else "es",
        )
    missing = [n for n in ("prune", "quantize") if not any(s.name == n for s in rec.stages)]
    if missing:  # their defaults stand in: said, as fine-tuning 10 epochs per ratio is long
        warn(
            "the recipe has no %s stage: budget mode makes its candidates with the defaults "
            "(%s); add the stage to the recipe to set them",
            " or ".join(missing),
            "; ".join(_DEFAULTS[n] for n in missing),
        )
    prune_cfg = _template(rec, "prune", PruneConfig(latency=False))
    unused = [k for k in ("target_flops", "target_params") if getattr(prune_cfg, k)]
    if unused:  # the grid's ratios stand in for them (they were dropped without a word; a
        # ratio, as the shipped recipes give, is the grid's to set: unsaid)
        warn(
            "the recipe's prune stage sets %s: budget mode prunes each candidate at a ratio "
            "of the grid (--ratios, ratios=) instead",
            ", ".join(f"{k}={getattr(prune_cfg, k)}" for k in unused),
        )
    prune_cfgs = {  # checked now, not when its candidate's turn comes
        r: dataclasses.replace(
            prune_cfg, ratio=r, target_flops=None, target_params=None, latency=False
        )
        for r in ratios
    }
    quant_cfg = _template(rec, "quantize", QuantConfig())
    # the bench at the end measures every candidate side by side, so each quantize run
    # skips its own float-vs-INT8 latency workers and OpenVINO per-layer counters
    quant_cfg = dataclasses.replace(
        quant_cfg,
        advanced=dataclasses.replace(quant_cfg.advanced, latency=False, perf_counters=False),
    )
    bench_cfg = _template(rec, "bench", BenchStage())
    # what the recipe's own bench stage asks (its imgsz may come from the quantize stage's,
    # which is the size the candidates are made and measured at)
    raw = next((s.raw for s in rec.stages if s.name == "bench"), {})
    unused = [f"batches={bench_cfg.batches}"] if list(bench_cfg.batches) != [1] else []
    if raw.get("imgsz") is not None and raw["imgsz"] != quant_cfg.imgsz:
        unused.append(f"imgsz={raw['imgsz']}")
    if unused:  # the shipped cpu-int8 and gpu-fp16 ask for batches [1, 8]
        warn(
            "budget mode measures static-batch candidates at batch 1 and their own input size; "
            "the recipe's bench %s %s not used",
            " and ".join(unused),
            "are" if len(unused) > 1 else "is",
        )
    return prune_cfgs, quant_cfg, bench_cfg, notes


_DEFAULTS = {
    "prune": "PruneConfig's: 10 fine-tuning epochs per ratio",
    "quantize": "QuantConfig's: OpenVINO, 300 calibration images",
}


def _record(path: str | Path, out: Path) -> str:
    """A candidate's file as its marker records it: relative to the run folder (a copied or
    moved folder's markers name its own files)."""
    return Path(os.path.relpath(Path(path).absolute(), out)).as_posix()


def _recorded(text: str, out: Path) -> Path:
    """The file a marker names, in ``out``: a relative record is in the folder; an absolute
    one (written before markers were relative) is rebased from its run folder's ``grid/``
    onto this one's, as a folder copied since has its own files there."""
    path = Path(text.strip())
    if not path.is_absolute():
        return out / path
    parts = path.parts
    if "grid" in parts:
        return out.joinpath(*parts[len(parts) - parts[::-1].index("grid") - 1 :])
    return path


def _pruned_at(cdir: Path) -> float | None:
    """The ratio a candidate's ``prune/prune_report.json`` says it was pruned at (None:
    unreadable): a ratio asked for again within the same 2-decimal folder is another one."""
    try:
        return float(
            json.loads((cdir / "prune" / "prune_report.json").read_text())["config"]["ratio"]
        )
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _budget_markdown(final: dict) -> str:
    """The budget and the pick, as a section after the bench report in ``report.md``."""
    goals = [
        f"mAP50-95 drop <= {final['max_drop_points']} points"
        if final["max_drop_points"] is not None
        else None,
        f"batch-1 median latency <= {final['target_latency_ms']} ms"
        if final["target_latency_ms"] is not None
        else None,
    ]
    sel = (final.get("selected") or {}).get("name")
    lines = [
        "",
        "## Budget",
        "",
        f"Goal: {' and '.join(g for g in goals if g)}. Selected: "
        + (f"**{sel}** ({final['final_model']})." if sel else "none (no candidate meets it)."),
        "",
        "| candidate | mAP50-95 (%) | drop (points) | median ms | ok | selected |",
        "|---|---|---|---|---|---|",
    ]
    for e in final["front"]:
        lines.append(
            f"| {e['name']} | {100 * e['map']:.2f} | {e['drop_points']:.3f} | "
            f"{e['latency_ms']:.3f} | {'yes' if e['ok'] else 'no'} | "
            f"{'yes' if e['name'] == sel else ''} |"
        )
    return "\n".join(lines) + "\n"


def _say_grid_change(record: Path, ratios: Sequence[float]) -> None:
    """On a resume, say which prune ratios the earlier run's front had that this one drops or
    adds: the grid is measured again, and a dropped candidate's files stay unused."""
    try:
        front = json.loads(record.read_text())["front"]
        before = sorted({float(e["ratio"]) for e in front if e.get("ratio")})
    except (OSError, ValueError, KeyError, TypeError):  # none (yet), or not readable
        return
    now = sorted(float(r) for r in ratios)
    if before == now:
        return
    dropped = [r for r in before if r not in now]
    added = [r for r in now if r not in before]
    # a ratio's folder is named to 2 decimals: 0.301 prunes again in 0.3's (audit45 budget
    # M/L1: 0.3's files were said to stay unused)
    folders = {f"{r:.2f}" for r in now}
    unused = [r for r in dropped if f"{r:.2f}" not in folders]
    log.warning(
        "%s: the grid changed (ratios %s, now %s%s%s): every candidate is measured again%s",
        record.parent,
        before,
        now,
        f"; dropped {dropped}" if dropped else "",
        f"; added {added}" if added else "",
        f"; the files of {unused} stay in grid/ unused" if unused else "",
    )


@keeps_caller_state
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

    Args:
        model: the trained checkpoint to compress.
        data: the data.yaml to fine-tune, calibrate and measure mAP on.
        recipe: the templates (a recipe YAML path, a mapping or a Recipe).
        out: the run folder (``budget.json``, one folder per candidate, the bench report).
        target_latency: the most median batch-1 latency (ms) a candidate may have.
        max_drop: the most mAP50-95 points a candidate may lose against the baseline.
        ratios: the prune ratios to try, each in (0, 1).
        resume: continue a run in ``out``.
        progress: show progress bars.

    Returns:
        Result: ``model`` is the selected candidate's artifact path (None when none
        qualifies); ``report`` is what ``budget.json`` holds (``front``: every candidate
        with its mAP, latency and ``ok``; ``selected``; ``final_model``; ``bench``: the
        one bench run); ``artifacts`` maps each candidate's name to its artifact.

    Raises:
        ConfigError: ``model`` is not a checkpoint file, neither budget is given, a budget
            or ratio is out of range, the recipe is invalid, or ``out`` holds a budget run
            and ``resume`` is False.
        ModelError: ``model`` has another class count than ``data``.

    Example:
        >>> res = run_budget("runs/nano/best.pt", "data.yaml", "recipes/cpu-int8.yaml",
        ...                  target_latency=3.0, max_drop=1.0, out="runs/budget")
        >>> res.report["selected"]  # doctest: +SKIP
    """
    check_flags(resume=resume, progress=progress)
    from torch import nn

    from yoloslim.bench.latency import LatencyConfig
    from yoloslim.bench.measure import benchmark
    from yoloslim.bench.report import holds_report, to_markdown, write_report
    from yoloslim.compress.prune import prune
    from yoloslim.compress.quantize import quantize
    from yoloslim.data.config import check_class_count
    from yoloslim.export import export
    from yoloslim.models.checkpoint import read_checkpoint
    from yoloslim.pipeline import check_resume_inputs, run_inputs
    from yoloslim.runtime.ov_core import default_precision
    from yoloslim.runtime.predictor import as_artifact
    from yoloslim.sysinfo import invocation

    check_path(data, "data", "the data.yaml's path")
    check_path(out, "out", "the output folder's path")
    refuse_if_held(Path(out).expanduser(), "compress (budget)")  # before the model is read
    model = as_artifact(model)
    if isinstance(model, nn.Module):
        raise ConfigError(
            "run_budget takes the model as a checkpoint file (the run records it and checks it "
            "on resume): save it with ys.save_checkpoint and pass the path"
        )
    ratios = _check_budget_args(model, target_latency, max_drop, ratios)
    # plain numbers: numpy ones were written to budget.json as strings ("3.0")
    target_latency, max_drop = plain_numbers(target_latency), plain_numbers(max_drop)
    # absolute: the run records its candidates' paths and resumes from any folder
    model = Path(model).expanduser().absolute()
    data = Path(data).expanduser().absolute()
    out = Path(out).expanduser().absolute()
    # a model or data of a candidate's folder would be rewritten by the run (before the
    # markers of an interrupted run are dropped, and any work is done)
    for arg, source in (("model", model), ("data", data)):
        refuse_overwriting_input(source, [out / "grid"], arg=arg, hint="give another out (--out)")
    # mapped: only its names are read (a last.pt's optimizer state is not)
    nc = len(read_checkpoint(model, mmap=True)["names"])
    check_class_count(nc, f"model {model} (--model)", data)
    from yoloslim.eval.val import require_boxes

    require_boxes(data)  # every candidate's drop is measured in mAP: before any is made
    rec = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    prune_cfgs, quant_cfg, bench_cfg, notes = _templates(rec, ratios)
    if not resume:  # now, not after every candidate is made (a resume: as it measures)
        from yoloslim.sysinfo import check_threads

        check_threads(bench_cfg.threads, f"{rec.source}: the bench stage: threads")
    from yoloslim.bench.report import check_report_folder

    check_report_folder(out)  # its report.md/json are written last, after all the work
    if (out / "budget.json").exists() and not resume:
        raise ConfigError(
            f"{out}: holds a budget run; resume it (--resume, resume=True) or choose another "
            "output folder"
        )
    if (out / "recipe.yaml").exists():
        raise ConfigError(f"{out}: holds a compress recipe run; choose another output folder")
    # what makes the candidates, as they are made (the ratio is each candidate's own; the
    # bench settings are checked with its measurements, which are simply taken again)
    prune_made = prune_cfgs[ratios[0]].to_dict()
    prune_made.pop("ratio")
    made = json.loads(json.dumps({"prune": prune_made, "quantize": quant_cfg.to_dict()}))
    inputs = {**run_inputs(model, data), "templates": made}
    ran = [out / n for n in ("inputs.json", "budget.json", "grid")]  # (older runs: no inputs)
    if resume and not any(p.exists() for p in ran):  # a mistyped --out: no run there
        raise ConfigError(
            f"{out}: no budget run to resume (no inputs.json, budget.json or grid/); drop "
            "--resume (resume=False) to start one"
        )
    if resume:
        check_resume_inputs(out, inputs, {"templates": "the recipe's prune or quantize stage"})
    with folder_lock(out, "compress (budget)"):  # made here, if it is not there yet
        for note in notes:
            log.warning(*note)
        if resume:  # said once the run goes on (audit45 review L4: before the lock refused)
            _say_grid_change(out / "budget.json", ratios)
        else:  # a fresh run: no candidate of an earlier one in this folder is reused
            earlier = sorted((out / "grid").glob("ratio-*/*.txt"))
            if earlier:
                log.warning(
                    "%s: an interrupted run made %d candidate file(s) here; this run starts "
                    "afresh and makes them again (--resume, resume=True, keeps them)",
                    out,
                    len(earlier),
                )
            for marker in earlier:
                marker.unlink()
        atomic_write_text(out / "inputs.json", json.dumps(inputs, indent=1) + "\n")

        def cached(marker: Path, make: Callable[[], str], valid: bool = True) -> str:
            """The path ``marker`` records; made again when it is gone (or not ``valid``),
            and then the markers of what was made from it go first, so that a resume stopped
            half way never takes those for this one's (on disk, not in memory: the next
            resume sees it too). The grid's measurements count as stale once a marker is
            newer than them."""
            if resume and valid and marker.exists():
                path = _recorded(marker.read_text(), out)
                if path.exists():  # else: made again
                    return str(path)
            for later in _MADE_FROM.get(marker.name, ()):
                (marker.parent / later).unlink(missing_ok=True)
            # the run's record names this candidate's file with the old model's numbers: gone
            # before the file is made again (a resume stopped here left budget.json's
            # selected/final_model naming another model: audit23 budget M1)
            for name in ("budget.json", "report.json", "report.md", "pareto.png"):
                (out / name).unlink(missing_ok=True)
            path = make()
            atomic_write_text(marker, _record(path, out) + "\n")
            return str(Path(path).absolute())

        candidates: list[tuple[float, str, str]] = []  # (ratio, scheme, artifact)
        for n, ratio in enumerate((0.0, *ratios), 1):
            cdir = out / "grid" / f"ratio-{ratio:.2f}"
            cdir.mkdir(parents=True, exist_ok=True)
            if progress:  # which candidate the bars below belong to
                from yoloslim.progress import say

                what = f"prune {ratio:.2f}" if ratio else "unpruned"
                say(
                    f"compress (budget): candidate {n}/{len(ratios) + 1} ({what}, float and "
                    f"INT8) -> {cdir}",
                    style="bold",
                )
            ckpt = str(model)
            if ratio > 0:
                cfg = prune_cfgs[ratio]
                ckpt = cached(
                    cdir / "pruned.txt",
                    lambda cfg=cfg, cdir=cdir: prune(
                        model,
                        data,
                        config=cfg,
                        out=cdir / "prune",
                        exist_ok=True,
                        progress=progress,
                    ).artifacts["checkpoint"],
                    valid=_pruned_at(cdir) in (None, ratio),
                )

            def exported(ckpt=ckpt, cdir=cdir) -> str:
                # one ONNX export serves both the float IR and the INT8 quantization
                res = export(
                    ckpt, cdir / "float", formats=["onnx", "openvino"], imgsz=quant_cfg.imgsz
                )
                atomic_write_text(cdir / "onnx.txt", _record(res.artifacts["onnx"], out) + "\n")
                return str(res.artifacts["openvino"])

            xml = cached(cdir / "float.txt", exported)
            onnx_marker = cdir / "onnx.txt"  # absent in runs from before it was written
            onnx = _recorded(onnx_marker.read_text(), out) if onnx_marker.exists() else None
            # the ONNX is an intermediate (removed to save room?): else from the checkpoint
            source = str(onnx) if onnx is not None and onnx.exists() else ckpt
            int8 = cached(
                cdir / "int8.txt",
                lambda source=source, cdir=cdir: quantize(
                    source, data, config=quant_cfg, out=cdir / "int8", progress=progress
                ).artifacts["int8"],
            )
            candidates += [(ratio, "float", xml), (ratio, "int8", int8)]

        # a float IR runs as deployed, in what the plugin computes an FP32 IR in by default
        ov = f"(OV {default_precision()})"
        names = [
            f"{f'prune {r:.2f}' if r else 'baseline'} {ov if s == 'float' else s}"
            for r, s, _ in candidates
        ]
        lat = LatencyConfig(
            rounds=bench_cfg.rounds,
            runs_per_round=bench_cfg.runs_per_round,
            threads=bench_cfg.threads,
            warmup=bench_cfg.warmup,
        )
        paths = [p for _, _, p in candidates]
        same = {
            "rounds": lat.rounds,
            "runs_per_round": lat.runs_per_round,
            "warmup": lat.warmup,
            "threads": lat.threads or "runtime default",
            "data": str(data),
        }
        reuse = resume and not _remade_since(out / "budget.json", out / "grid")
        bench = _finished_bench(out / "budget.json", paths, names, same) if reuse else None
        fresh = bench is None
        if fresh:
            bench = benchmark(paths, data, batches=(1,), latency=lat, names=names).report
        # what a fresh machine runs: the command that makes this selection (a resume may
        # give another --max-drop)
        bench["command"] = invocation(drop=("--resume",))
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
        atomic_write_text(
            out / "budget.json", json.dumps(final, indent=1, default=str, allow_nan=False) + "\n"
        )
        # report.md ends with the budget and the pick (only budget.json and the terminal had
        # them), written for each selection
        notes = _budget_markdown(final)
        if fresh or not holds_report(out, bench):
            # new measurements, or removed since, a copied run's naming the original's
            # files, or another command: the whole report
            write_report(bench, out, notes=notes)
        else:
            atomic_write_text(out / "report.md", to_markdown(bench) + notes)
        return Result(
            model=None if best is None else Path(best["path"]),  # a Path, as artifacts
            report=final,
            artifacts={e["name"]: Path(e["path"]) for e in front},
        )
