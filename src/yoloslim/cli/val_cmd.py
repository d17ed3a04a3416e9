"""``yoloslim val``."""

from __future__ import annotations

from pathlib import Path

import typer

from yoloslim.cli.common import (
    DEVICE_HELP,
    THREADS_HELP,
    check_json_target,
    handle_errors,
    literal,
    print_table,
    write_json,
)


@handle_errors
def val(
    model: Path = typer.Option(..., help="Checkpoint (.pt) or exported artifact."),
    data: Path = typer.Option(..., help="data.yaml"),
    imgsz: int = typer.Option(
        None,
        help="Input size, a multiple of 32 (default: the model's own, checkpoint or artifact).",
    ),
    batch: int = typer.Option(16, help="Batch size."),
    conf: float = typer.Option(0.001, help="Confidence threshold."),
    iou: float = typer.Option(0.65, help="NMS IoU threshold."),
    max_det: int = typer.Option(300, help="Detections kept per image (warned when one hits it)."),
    ov_precision: str = typer.Option(
        None,
        help="OpenVINO .xml only: compute in f32, bf16 or f16 (default: the plugin's choice, "
        "bf16 on AVX512-BF16/AMX CPUs).",
    ),
    device: str = typer.Option("cpu", help=DEVICE_HELP),
    threads: int = typer.Option(None, help=THREADS_HELP),
    json_path: Path = typer.Option(
        None, "--json", callback=check_json_target, help="Write the metrics as JSON."
    ),
) -> None:
    """COCO mAP50-95 / mAP50, per-class AP and AP by box size (COCO's 32/96 px) on the val split.

    "-" (null in --json) marks an AP that is undefined: a class, or a box size, the val split
    has no ground truth box of.
    """
    from rich.table import Table

    from yoloslim.eval.val import validate

    target = model
    if device != "cpu" or threads is not None:
        # the runtime as predict and bench run it: a Predictor is evaluated as it was loaded
        from yoloslim import load

        target = load(model, device=device, threads=threads, ov_precision=ov_precision)
        ov_precision = None  # the Predictor's own
    res = validate(
        target,
        data,
        imgsz=imgsz,
        batch=batch,
        conf=conf,
        iou=iou,
        progress=True,
        ov_precision=ov_precision,
        max_det=max_det,
    )
    # first: the metrics of a whole evaluation are kept whatever the printing below does
    write_json(json_path, res)
    # paths and class names are the user's: printed as they are, never read as rich markup
    table = Table(
        title=f"{literal(model)} on {literal(data)}",
        caption=f"{literal(res['runtime'])} ({literal(res['precision'])}) at {res['imgsz']} px, "
        f"conf {res['conf']:g}, iou {res['iou']:g}, max_det {res['max_det']}",
    )
    table.add_column("class")
    table.add_column("AP50-95 (%)", justify="right")  # --json holds fractions
    for name, ap in res["per_class"].items():  # None: no box of that class
        table.add_row(literal(name), _ap(ap))
    table.add_row("[bold]all", f"[bold]{_ap(res['map'])}  (mAP50 {_ap(res['map50'])})")
    for size, ap in res["map_by_size"].items():  # None: no box of that size
        table.add_row(f"[dim]{size} boxes", _ap(ap))
    print_table(table)


def _ap(ap: float | None) -> str:
    return "-" if ap is None else f"{100 * ap:.1f}"
