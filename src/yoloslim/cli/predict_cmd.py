"""``yoloslim predict``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from yoloslim.cli.common import console, handle_errors
from yoloslim.fileio import atomic_write_text


@handle_errors
def predict(
    source: Path = typer.Argument(..., help="Image file or folder of images."),
    model: Path = typer.Option(..., help="Artifact: .pt, .torchscript, .onnx or .xml."),
    save: Path = typer.Option(None, help="Folder for annotated images and detections.json."),
    conf: float = typer.Option(0.25, help="Confidence threshold."),
    iou: float = typer.Option(0.65, help="NMS IoU threshold."),
    imgsz: int = typer.Option(None, help="Input size (default: the artifact's)."),
    batch: int = typer.Option(8, help="Images per runtime call."),
) -> None:
    """Detect objects; prints a summary and, with --save, writes drawn images and JSON."""
    from rich.progress import track

    from yoloslim.runtime.draw import draw_detections
    from yoloslim.runtime.predictor import Predictor, iter_images

    pred = Predictor(model, imgsz=imgsz, conf=conf, iou=iou)
    items = iter_images(source)
    records = []
    if save:
        save.mkdir(parents=True, exist_ok=True)
    for i, (arr, src) in enumerate(
        track(items, description="predict", disable=len(items) < 2, console=console)
    ):
        det = pred.predict([arr], batch=batch)[0]
        name = Path(src).name if src else f"image_{i:05d}.png"
        records.append({"image": src or name, "detections": det.to_list()})
        if save:
            draw_detections(arr, det).save(save / (Path(name).stem + ".jpg"), quality=92)
        console.print(f"{name}: {len(det)} detections")
    if save:
        atomic_write_text(save / "detections.json", json.dumps(records, indent=1) + "\n")
        console.print(f"wrote {len(records)} images and detections.json to {save}")
