"""``yoloslim data ...``: synthesize and check datasets."""

from __future__ import annotations

from pathlib import Path

import typer

from yoloslim.cli.common import console, handle_errors, write_json

app = typer.Typer(help="Dataset tools.", no_args_is_help=True)


@app.command("synth")
@handle_errors
def synth(
    out: Path = typer.Argument(..., help="Output folder."),
    images: int = typer.Option(1000, help="Number of images (train + val)."),
    imgsz: int = typer.Option(320, help="Image side in pixels."),
    classes: int = typer.Option(4, help="Number of shape classes (1-8)."),
    seed: int = typer.Option(0, help="Random seed (same seed, same bytes)."),
    val_fraction: float = typer.Option(0.2, help="Fraction of images in the val split."),
) -> None:
    """Write a deterministic synthetic detection set (YOLO + COCO + data.yaml)."""
    from yoloslim.data.synth import synthesize

    with console.status(f"synthesizing {images} images"):
        path = synthesize(
            out, images=images, imgsz=imgsz, classes=classes, seed=seed, val_fraction=val_fraction
        )
    console.print(f"wrote {path}")


@app.command("check")
@handle_errors
def check(
    data: Path = typer.Argument(..., help="data.yaml"),
    json_path: Path = typer.Option(None, "--json", help="Write the report as JSON."),
) -> None:
    """Validate a dataset and print per-split statistics."""
    from rich.table import Table

    from yoloslim.data import load_data_config
    from yoloslim.data.validate import check_dataset

    report = check_dataset(load_data_config(data))
    table = Table(title=str(data))
    table.add_column("key")
    table.add_column("value")
    for k, v in report.items():
        table.add_row(str(k), str(v))
    console.print(table)
    write_json(json_path, report)
