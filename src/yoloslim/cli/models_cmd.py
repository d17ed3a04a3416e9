"""``yoloslim models``: list the built-in detectors with params and FLOPs."""

from __future__ import annotations

import typer

from yoloslim.bench.report import figure
from yoloslim.cli.common import check_json_target, handle_errors, print_table, write_json
from yoloslim.configs import DEFAULT_IMGSZ


@handle_errors
def models(
    imgsz: int = typer.Option(DEFAULT_IMGSZ, help="Input size for the FLOPs count."),
    nc: int = typer.Option(80, help="Number of classes."),
    json_path: str = typer.Option(
        None, "--json", callback=check_json_target, help="Write the table as JSON."
    ),
) -> None:
    """List registered models: parameters (training and deploy form), MACs and FLOPs."""
    from rich.table import Table

    from yoloslim.bench.flops import model_profile
    from yoloslim.models import list_models

    rows = {name: model_profile(name, imgsz=imgsz, nc=nc) for name in list_models()}
    rows = dict(sorted(rows.items(), key=lambda kv: kv[1]["params"]))  # smallest first
    # first: whole whatever the printing below does
    write_json(json_path, {name: {**r, "nc": nc} for name, r in rows.items()})
    table = Table(title=f"built-in models at {imgsz} px, {nc} classes")
    for col in ("model", "params (M, deploy)", "params (M, train)", "GMACs", "GFLOPs (2xMACs)"):
        table.add_column(col, justify="right")
    for name, r in rows.items():
        table.add_row(
            name,
            f"{r['params_deploy'] / 1e6:.2f}",
            f"{r['params'] / 1e6:.2f}",
            figure(r["gmacs"]),
            figure(r["gflops"]),
        )
    print_table(table)
