"""``yoloslim compress``."""

from __future__ import annotations

from pathlib import Path

import typer

from yoloslim.cli.common import (
    check_json_target,
    check_out_folder,
    command_line,
    console,
    handle_errors,
    interrupt_hint,
    literal,
    option_given,
    print_table,
    warn,
    write_json,
)


@handle_errors
def compress(
    ctx: typer.Context,
    model: Path = typer.Option(
        None,
        help="Trained checkpoint (.pt): the baseline. Optional for recipes that start with nas.",
    ),
    data: Path = typer.Option(..., help="data.yaml (fine-tuning, calibration, mAP)."),
    recipe: Path = typer.Option(
        ...,
        help="Recipe YAML, or a shipped recipe's name: cpu-int8, gpu-fp16, max-accuracy, edge-tiny.",
    ),
    out: Path = typer.Option(
        Path("runs/compress"), callback=check_out_folder, help="Run folder: DIR/NN-stage/, report.*"
    ),
    resume: bool = typer.Option(
        False,
        help="Continue the run in --out, skipping finished stages (a flag: the folder is "
        "--out, not a value of --resume as for train).",
    ),
    target_latency: float = typer.Option(
        None, help="Budget mode: latency goal (ms, batch 1) for the grid search."
    ),
    max_drop: float = typer.Option(
        None,
        help="Budget mode: allowed mAP50-95 drop in points (0.5 = 0.005) from the baseline's "
        "row: the given model exported, as its runtime computes it.",
    ),
    ratios: str = typer.Option(
        "0.25,0.5,0.65", help="Budget mode: prune ratios of the grid (comma-separated)."
    ),
    sets: list[str] = typer.Option(
        None,
        "--set",
        help="Change a recipe setting, STAGE.KEY=VALUE (repeatable; STAGE: a stage's name or "
        "number; VALUE: YAML), e.g. --set prune.finetune_epochs=2 --set quantize.calib=100.",
    ),
    json_path: Path = typer.Option(
        None,
        "--json",
        callback=check_json_target,
        help="Write the run's record (what compress.json holds; the bench table under bench) here too.",
    ),
) -> None:
    """Run a recipe (prune, distill, export, quantize, ...) and bench every result in one table."""
    from yoloslim.bench.report import rich_table
    from yoloslim.budget_mode import run_budget
    from yoloslim.errors import ConfigError
    from yoloslim.pipeline import run_recipe

    again = command_line() + ("" if resume else " --resume")  # what a stopped run says
    if sets:  # checked with the whole recipe, before anything runs
        from yoloslim.recipe import load_recipe

        recipe = load_recipe(recipe, sets=sets)
    if target_latency is not None or max_drop is not None:
        try:
            grid = tuple(float(r) for r in ratios.split(",") if r.strip())
        except ValueError as e:
            raise ConfigError(f"--ratios {ratios!r}: comma-separated numbers, e.g. 0.25,0.5") from e
        with interrupt_hint(Path(out) / "grid", again):  # made with the first candidate
            res = run_budget(
                model,
                data,
                recipe,
                out=out,
                target_latency=target_latency,
                max_drop=max_drop,
                ratios=grid,
                resume=resume,
                progress=True,
            )
    else:
        if option_given(ctx, "ratios"):
            raise ConfigError(
                "--ratios: the prune ratios of budget mode, which needs --max-drop and/or "
                "--target-latency"
            )
        with interrupt_hint(Path(out) / "recipe.yaml", again):
            res = run_recipe(model, data, recipe, out=out, resume=resume, progress=True)
    write_json(json_path, res.report)  # first: whole whatever the printing below does
    bench = res.report.get("bench")
    if bench:
        print_table(rich_table(bench))
    if res.report.get("mode") == "budget":
        _front_table(res.report)
    for stage in res.report.get("stages") or []:  # said during the run, above the bars
        if stage.get("warning"):
            warn(
                f"stage {stage['index']} ({literal(stage['stage'])}): " + literal(stage["warning"])
            )
    for skip in res.report.get("skipped") or []:
        warn(
            f"skipped: stage {literal(skip['stage'])} format {literal(skip['format'])}: "
            + literal(skip["reason"])
        )
    label = "selected model" if res.report.get("mode") == "budget" else "final checkpoint"
    final = res.report.get("final_model")
    shown = literal(final) if final is not None else "none (no candidate meets the budget)"
    console.print(f"{label}: {shown}; reports in {literal(out)}", soft_wrap=True)
    deployable = res.report.get("deployable") or {}
    if deployable:
        shown = ", ".join(f"{k}: {v}" for k, v in deployable.items())
        console.print(f"final artifact(s): {literal(shown)}", soft_wrap=True)


def _front_table(report: dict) -> None:
    from rich.table import Table

    sel = (report.get("selected") or {}).get("name")
    table = Table(title="budget front (ok: within every budget given)")
    for col in ("candidate", "mAP50-95", "drop vs baseline (pts)", "median ms", "ok", "selected"):
        table.add_column(col)
    # quantize's own accuracy-aware line (on stderr, above) measures its drop from the float
    # IR at f32; these are from the baseline row as bench ran it: two references, two figures
    table.caption = (
        "drop: from the baseline row's mAP as bench measured it (quantize's accuracy-aware "
        "drop is from its own float model)"
    )
    for e in report["front"]:
        table.add_row(
            literal(e["name"]),
            f"{100 * e['map']:.2f}",
            f"{e['drop_points']:.3f}",
            f"{e['latency_ms']:.3f}",  # to the figure the budget is checked on
            "yes" if e["ok"] else "no",
            "yes" if e["name"] == sel else "",
        )
    print_table(table)
    if sel is None:
        warn("no candidate meets the budget; the front above is what was found")
