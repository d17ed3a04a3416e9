"""``yoloslim predict``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from yoloslim.cli.common import console, handle_errors
from yoloslim.fileio import atomic_write_text


@handle_errors
def predict(
    source: Path = typer.Argument(..., help="Image file, folder of images, or video file."),
    model: Path = typer.Option(..., help="Artifact: .pt, .torchscript, .onnx or .xml."),
    save: Path = typer.Option(
        None, help="Folder for annotated images (or video) and detections.json."
    ),
    conf: float = typer.Option(0.25, help="Confidence threshold."),
    iou: float = typer.Option(0.65, help="NMS IoU threshold."),
    imgsz: int = typer.Option(None, help="Input size (default: the artifact's)."),
    batch: int = typer.Option(8, help="Images (or video frames) per runtime call."),
) -> None:
    """Detect objects; prints a summary and, with --save, writes drawn images/video and JSON."""
    from yoloslim.runtime.predictor import Predictor
    from yoloslim.runtime.video import is_video

    pred = Predictor(model, imgsz=imgsz, conf=conf, iou=iou)
    if save:
        save.mkdir(parents=True, exist_ok=True)
    if is_video(source):
        records = _predict_video(pred, source, save, batch)
    else:
        records = _predict_images(pred, source, save, batch)
    if save:
        atomic_write_text(save / "detections.json", json.dumps(records, indent=1) + "\n")
        console.print(f"wrote {len(records)} results and detections.json to {save}")


def _predict_images(pred, source: Path, save: Path | None, batch: int) -> list[dict]:
    from rich.progress import track

    from yoloslim.runtime.draw import draw_detections
    from yoloslim.runtime.predictor import iter_images

    items = iter_images(source)
    records = []
    for i, (arr, src) in enumerate(
        track(items, description="predict", disable=len(items) < 2, console=console)
    ):
        det = pred.predict([arr], batch=batch)[0]
        name = Path(src).name if src else f"image_{i:05d}.png"
        records.append({"image": src or name, "detections": det.to_list()})
        if save:
            draw_detections(arr, det).save(save / (Path(name).stem + ".jpg"), quality=92)
        console.print(f"{name}: {len(det)} detections")
    return records


def _predict_video(pred, source: Path, save: Path | None, batch: int) -> list[dict]:
    """Frames in batches of ``batch``; writes ``SAVE/<stem>.mp4`` with boxes drawn."""
    import contextlib

    import numpy as np
    from rich.progress import Progress

    from yoloslim.runtime.draw import draw_detections
    from yoloslim.runtime.video import VideoReader, VideoWriter

    records: list[dict] = []
    with contextlib.ExitStack() as stack:
        reader = stack.enter_context(VideoReader(source))
        writer = None
        if save:
            writer = stack.enter_context(VideoWriter(save / (source.stem + ".mp4"), reader.fps))
        progress = stack.enter_context(Progress(console=console))
        task = progress.add_task(f"predict {source.name}", total=len(reader) or None)

        def flush(frames: list[np.ndarray]) -> None:
            for arr, det in zip(frames, pred.predict(frames, batch=batch), strict=True):
                records.append({"frame": len(records), "detections": det.to_list()})
                if writer is not None:
                    writer.write(np.asarray(draw_detections(arr, det)))
            progress.advance(task, len(frames))

        pending: list[np.ndarray] = []
        for frame in reader:
            pending.append(frame)
            if len(pending) == batch:
                flush(pending)
                pending = []
        if pending:
            flush(pending)
    n = sum(len(r["detections"]) for r in records)
    console.print(f"{source.name}: {len(records)} frames, {n} detections")
    return records
