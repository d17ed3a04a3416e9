"""``yoloslim export``."""

from __future__ import annotations

from pathlib import Path

import typer

from yoloslim.cli.common import console, handle_errors, write_json


@handle_errors
def export(
    model: Path = typer.Option(..., help="yoloslim checkpoint (.pt)."),
    format: str = typer.Option(
        "onnx",
        "--format",
        help="onnx, openvino, torchscript, coreml, engine, triton; comma-separated for several.",
    ),
    out: Path = typer.Option(Path("runs/export"), help="Output folder."),
    imgsz: int = typer.Option(None, help="Input size (default: the checkpoint's)."),
    dynamic: bool = typer.Option(False, help="Dynamic batch axis."),
    half: bool = typer.Option(False, help="FP16 weights where the format supports it."),
    nms: bool = typer.Option(
        False, help="Also write model_e2e.onnx with NMS in the graph (batch 1)."
    ),
    json_path: Path = typer.Option(None, "--json", help="Write the export report as JSON."),
) -> None:
    """Re-parameterise, export and verify each artifact against PyTorch (writes export_report.json)."""
    from rich.table import Table

    from yoloslim.export import export as run_export

    formats = [f.strip() for f in format.split(",") if f.strip()]
    with console.status(f"exporting {', '.join(formats)}"):
        res = run_export(
            model, out, formats=formats, imgsz=imgsz, dynamic=dynamic, half=half, nms=nms
        )
    table = Table(title=f"export of {model}")
    for col in (
        "format",
        "artifact",
        "runtime precision",
        "size (MB)",
        "max |diff| boxes (px)",
        "verified",
    ):
        table.add_column(col)
    for fmt, e in res.report["formats"].items():
        table.add_row(
            fmt,
            e["path"],
            e.get("precision", "-"),
            str(e.get("size_mb", "-")),
            f"{e['max_abs_diff_boxes_px']:.2e}" if "max_abs_diff_boxes_px" in e else "-",
            "yes" if e.get("passed") else e.get("verified", "no"),
        )
    console.print(table)
    write_json(json_path, res.report)
