"""``yoloslim nas``."""

from __future__ import annotations

from pathlib import Path

import typer

from yoloslim.cli.common import (
    check_json_target,
    config_file,
    console,
    handle_errors,
    layered,
    literal,
    print_table,
    restart_hint,
    shown_default,
    write_json,
)
from yoloslim.configs import DEFAULT_IMGSZ, load_mapping


@handle_errors
def nas(
    ctx: typer.Context,
    imgsz: int = typer.Option(
        DEFAULT_IMGSZ, help="Input size the budgets and the score use (multiple of 32)."
    ),
    budget_flops: float = typer.Option(None, help="GFLOPs budget (deploy form, at --imgsz)."),
    budget_params: float = typer.Option(None, help="Parameter budget in millions (deploy form)."),
    budget_latency: float = typer.Option(
        None, help="Latency budget in ms, measured on this machine (see --latency-runtime)."
    ),
    budget_layers: int = typer.Option(None, help="Budget of conv layers in the deploy backbone."),
    budget_effectiveness: float = typer.Option(
        None,
        help="Bound on DeepMAD's effectiveness rho (backbone depth / geometric-mean width, "
        "worst stage): keeps the score from buying depth with thin layers. damo-nano: 0.77.",
    ),
    iterations: int = typer.Option(300, help="Mutations tried."),
    population: int = typer.Option(32, help="Candidates kept."),
    polish: int = typer.Option(
        0,
        help="Rounds of steepest ascent from the evolution's best over its one- and two-gene "
        "neighbours (0: none).",
    ),
    seed: int = typer.Option(0, help="Random seed (search and score)."),
    init_repeats: int = typer.Option(3, help="Random initialisations the score averages."),
    score_method: str = typer.Option(
        "gaussian",
        help="gaussian (MAE-DET's random forward) or analytic (TinyNAS madnas closed form: "
        "no randomness; the score ~100x faster to compute).",
    ),
    stage_weights: str = typer.Option(
        None,
        help="The score's weight of each of the 5 stages, comma-separated "
        + shown_default("0,0,1,1,6; DAMO-YOLO's 320 px configs use 0,0,1,1,16"),
    ),
    nc: int = typer.Option(80, help="Classes of the detector (head FLOPs/params)."),
    latency_runtime: str = typer.Option(
        "torch", help="torch, onnxruntime or openvino (in-process)."
    ),
    latency_threads: int = typer.Option(1, help="Threads for latency measurements."),
    latency_cache: Path = typer.Option(
        None,
        help="JSON-lines file of measured latencies to reuse and add to; only entries measured "
        "on this machine with the same settings are reused "
        + shown_default("nas_latency_cache.jsonl beside the report")
        + ".",
    ),
    no_latency_cache: bool = typer.Option(
        False, "--no-latency-cache", help="Measure every candidate's latency again; keep no file."
    ),
    init: list[str] = typer.Option(
        None,
        help="Seed the population with this arch (registered name, arch.yaml or a checkpoint "
        ".pt; repeatable). "
        "The result scores at least as high as every seed (under a latency budget, as "
        "every seed that stays within it when the best are timed again).",
    ),
    keep_neck: bool = typer.Option(
        False,
        "--keep-neck",  # a flag alone: --no-keep-neck (the default) took a column of the help
        help="Keep the neck and head widths of the first --init arch fixed and search the "
        "backbone only (DAMO-YOLO style); default: they follow the backbone widths.",
    ),
    config: Path = typer.Option(
        None, help="YAML of search settings (imgsz, budget, space, ...); flags given override it."
    ),
    out: Path = typer.Option(
        Path("arch.yaml"), help="arch.yaml to write (nas_report.json goes beside it), or a folder."
    ),
    json_path: Path = typer.Option(
        None, "--json", callback=check_json_target, help="Write the search report as JSON."
    ),
) -> None:
    """Zero-shot architecture search (MAE-NAS): the best backbone under the budgets, as arch.yaml."""
    from yoloslim.errors import ConfigError
    from yoloslim.nas import search_from_dict
    from yoloslim.nas.search import init_items

    weights = None
    if stage_weights is not None:
        try:
            weights = [float(w) for w in stage_weights.split(",")]
        except ValueError as e:
            raise ConfigError(
                f"--stage-weights {stage_weights!r}: expected 5 comma-separated numbers"
            ) from e
        weights = [int(w) if w.is_integer() else w for w in weights]
    flags = dict(
        imgsz=imgsz,
        stage_weights=weights,
        iterations=iterations,
        population=population,
        seed=seed,
        init_repeats=init_repeats,
        nc=nc,
        score_method=score_method,
        polish=polish,
    )
    if latency_cache is not None and no_latency_cache:
        raise ConfigError("give --latency-cache FILE or --no-latency-cache, not both")
    _check_json_beside(json_path, out)
    settings = layered(ctx, load_mapping(config, "search settings") if config else None, flags)
    with config_file(config, ctx):  # a mistake in what the file gives (budget: 0.5) names it
        if init:
            settings["init"] = list(init)
        if keep_neck:
            if not settings.get("init"):
                raise ConfigError(
                    "--keep-neck needs --init ARCH (the arch whose neck and head to keep)"
                )
            # the first seed; init may be one (init: damo-nano), whose [0] was its "d"
            first = init_items(settings["init"])[0]
            settings["space"] = {**(settings.get("space") or {}), "template": first}
        budget = layered(
            ctx,
            settings.get("budget"),
            dict(
                flops=budget_flops,
                params=budget_params,
                latency_ms=budget_latency,
                layers=budget_layers,
                effectiveness=budget_effectiveness,
            ),
            dict(
                flops="budget_flops",
                params="budget_params",
                latency_ms="budget_latency",
                layers="budget_layers",
                effectiveness="budget_effectiveness",
            ),
            key="budget",
        )
        if not budget:
            raise ConfigError(
                "give a budget: --budget-flops, --budget-params, --budget-latency, "
                "--budget-layers or --budget-effectiveness"
            )
        settings["budget"] = budget
        settings["latency"] = layered(
            ctx,
            settings.get("latency"),
            dict(runtime=latency_runtime, threads=latency_threads),
            dict(runtime="latency_runtime", threads="latency_threads"),
            key="latency",
        )
        if latency_cache is not None or no_latency_cache:
            settings["latency_cache"] = False if no_latency_cache else str(latency_cache)
        # a stop said only "interrupted", after a warning that an earlier result would be
        # replaced (audit43 nas F3): what it kept is said too, of the arch file in a folder
        # --out as well (audit46 nas F2: "nothing written" over a kept one); the latency
        # cache keeps what it measured
        from yoloslim.nas.search import _arch_path

        arch_file = _arch_path(Path(out).expanduser())
        kept = (
            f"{arch_file} (and its nas_report.json) kept as they were"
            if arch_file.is_file()
            else f"no {arch_file.name} written"
        )
        with restart_hint(f"{kept}; a search does not resume: the same command runs it anew"):
            res = search_from_dict(settings, out, progress=True)
    # a stop from here on came after the search wrote its files: "interrupted" alone left
    # it untold that they replaced an earlier result (audit48 nas F4)
    done = f"the search had ended and written {res.artifacts['arch']} and its nas_report.json"
    with restart_hint(done):
        write_json(json_path, res.report)  # first: whole whatever the printing below does
    with restart_hint(done + ("" if json_path is None else f", and --json {json_path}")):
        _table(res.best)
        arch = literal(res.artifacts["arch"])
        console.print(
            f"best score {res.score:.3f}  ->  {arch}  ({res.report['search_s']} s)",
            soft_wrap=True,
        )


def _check_json_beside(json_path: Path | None, out: Path) -> None:
    """ConfigError when ``--json`` names another search's report, beside its arch file: that
    arch.yaml would be left with a report of a different network."""
    import json

    from yoloslim.errors import ConfigError
    from yoloslim.nas.search import _arch_path

    if json_path is None or not json_path.is_file():
        return
    own = _arch_path(out).parent / "nas_report.json"
    if own.exists() and json_path.samefile(own):
        return  # the report the search writes there anyway, the same
    try:
        data = json.loads(json_path.read_bytes())
    except (OSError, ValueError):
        return  # check_json_target has judged it
    other = data.get("arch_file") if isinstance(data, dict) else None
    beside = json_path.parent / other if isinstance(other, str) else None
    if beside is None or not beside.is_file():
        return
    mine = _arch_path(out)
    if mine.exists() and beside.samefile(mine):
        return  # the arch file this search replaces: the report then describes the new one
    raise ConfigError(
        f"--json {json_path}: it is the report of {beside}, beside it; replaced, it would "
        "describe another network: name another file"
    )


def _table(best: list[dict]) -> None:
    from rich.table import Table

    t = Table(title="best candidates")
    genes = {  # each stage's gene as the columns show it
        "widths": lambda g: str(g["out"]),
        "depths": lambda g: str(g["depth"]),
        "kernels": lambda g: str(g["kernel"]),
        "ratios": lambda g: f"{g['ratio']:g}",
    }
    shown = {col: ["/".join(map(f, b["genome"])) for b in best] for col, f in genes.items()}
    # kernels and ratios get a column where the candidates differ in them (else two rows
    # could read the same), and a caption line where they all share them
    same = [col for col in ("kernels", "ratios") if len(set(shown[col])) == 1]
    for col in ("rank", "score", "GFLOPs", "params (M)", "layers", "rho", "latency ms"):
        t.add_column(col, justify="right")
    columns = [col for col in genes if col not in same]
    for col in columns:
        t.add_column(col, justify="right")
    for i, b in enumerate(best):
        t.add_row(
            str(b["rank"]),
            f"{b['score']:.2f}",
            f"{b['gflops']:.3f}",
            f"{b['params_deploy'] / 1e6:.3f}",
            str(b["layers"]),
            f"{b['effectiveness']:.3f}",
            f"{b['latency_ms']:.2f}" if b["latency_ms"] is not None else "-",
            *(shown[col][i] for col in columns),
        )
    if best and same:
        t.caption = "; ".join(f"{col} of every row: {shown[col][0]}" for col in same)
    print_table(t)
