"""``yoloslim compress``."""

from __future__ import annotations

from pathlib import Path

import typer

from yoloslim.cli.common import console, handle_errors, write_json


@handle_errors
def compress(
    model: Path = typer.Option(
        None,
        help="Trained checkpoint (.pt): the baseline. Optional for recipes that start with nas.",
    ),
    data: Path = typer.Option(..., help="data.yaml (fine-tuning, calibration, mAP)."),
    recipe: Path = typer.Option(..., help="Recipe YAML, e.g. recipes/cpu-int8.yaml."),
    out: Path = typer.Option(Path("runs/compress"), help="Run folder: DIR/NN-stage/, report.*"),
    resume: bool = typer.Option(False, help="Continue a run in --out, skipping finished stages."),
    target_latency: float = typer.Option(
        None, help="Budget mode: latency goal (ms, batch 1) for the grid search."
    ),
    max_drop: float = typer.Option(
        None, help="Budget mode: allowed mAP50-95 drop in points (0.5 = 0.005)."
    ),
    json_path: Path = typer.Option(None, "--json", help="Write the final report JSON here too."),
) -> None:
    """Run a recipe (prune, distill, export, quantize, ...) and bench every result in one table."""
    from yoloslim.bench.report import rich_table
    from yoloslim.pipeline import run_budget, run_recipe

    if target_latency is not None or max_drop is not None:
        res = run_budget(
            model,
            data,
            recipe,
            out=out,
            target_latency=target_latency,
            max_drop=max_drop,
            resume=resume,
            progress=True,
        )
    else:
        res = run_recipe(model, data, recipe, out=out, resume=resume, progress=True)
    bench = res.report.get("bench")
    if bench:
        console.print(rich_table(bench))
    if res.report.get("selected"):
        console.print(f"selected: {res.report['selected']}")
    console.print(f"final model: {res.report.get('final_model')}; reports in {out}")
    write_json(json_path, res.report)
