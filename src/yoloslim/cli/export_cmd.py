"""``yoloslim export``."""

from __future__ import annotations

from pathlib import Path

import typer

from yoloslim.cli.common import (
    check_json_target,
    check_out_folder,
    console,
    handle_errors,
    literal,
    print_table,
    refuse_unheeded,
    warn,
    write_json,
)


@handle_errors
def export(
    ctx: typer.Context,
    model: Path = typer.Option(..., help="yoloslim checkpoint (.pt)."),
    format: list[str] = typer.Option(
        ["onnx"],
        "--format",
        help="onnx, openvino, torchscript, coreml, engine, triton; comma-separated for several "
        "(repeatable: each --format adds its formats).",
    ),
    out: Path = typer.Option(Path("runs/export"), callback=check_out_folder, help="Output folder."),
    imgsz: int = typer.Option(
        None, help="Input size, a multiple of 32 up to 8192 (default: the checkpoint's)."
    ),
    dynamic: bool = typer.Option(
        False,
        help="Dynamic batch axis: batches 1-256 for onnx, openvino and triton; 1-32 for a "
        "TensorRT engine (its optimisation profile); coreml keeps a batch of 1; torchscript "
        "takes any batch and size either way.",
    ),
    half: bool = typer.Option(False, help="FP16 weights (OpenVINO, CoreML, TensorRT)."),
    nms: bool = typer.Option(
        False,
        help="Also write model_e2e.onnx with NMS in the graph (onnx, static batch): the "
        "detections predict gives, boxes in the letterboxed input's pixels.",
    ),
    nms_conf: float = typer.Option(0.25, help="Score threshold of the --nms graph."),
    nms_iou: float = typer.Option(0.65, help="NMS IoU threshold of the --nms graph, in (0, 1)."),
    nms_max_det: int = typer.Option(300, help="Most detections the --nms graph returns."),
    triton_name: str = typer.Option(
        "model", help="Triton model name: its folder is OUT/triton/NAME (other models stay)."
    ),
    triton_max_batch: int = typer.Option(
        16, help="Triton max_batch_size: the largest batch the server forms (1-256)."
    ),
    json_path: Path = typer.Option(
        None, "--json", callback=check_json_target, help="Write the export report as JSON."
    ),
    opset: int = typer.Option(None, hidden=True),  # said, not "Possible options: --out"
) -> None:
    """Re-parameterise, export and verify each artifact against PyTorch (writes export_report.json)."""
    from rich.table import Table

    from yoloslim.errors import ConfigError, ExportError
    from yoloslim.export import export as run_export
    from yoloslim.export.onnx import OPSET

    if opset is not None and opset != OPSET:  # audit44 export F3
        raise ConfigError(
            f"--opset {opset}: yoloslim exports ONNX opset {OPSET} alone (the opset its "
            "exporter and checks are made for); convert the model.onnx it writes with "
            "onnx.version_converter for another"
        )

    # each --format given adds its formats (a plain option kept only the last one given)
    formats = [f.strip().lower() for given in format for f in given.split(",") if f.strip()]
    refuse_unheeded(
        ctx,
        ("nms_conf", "nms_iou", "nms_max_det"),
        heeded=nms,
        what="the thresholds of the --nms graph, and no --nms was given: add --nms",
    )
    refuse_unheeded(
        ctx,
        ("triton_name", "triton_max_batch"),
        heeded="triton" in formats,
        what="the model of the triton format, and no triton format was given: add triton "
        "to --format",
    )
    _warn_artifact_name(out)
    try:
        # a line per format as it starts and ends, on stderr (in a log too; a spinner is not)
        res = run_export(
            model,
            out,
            formats=formats,
            imgsz=imgsz,
            dynamic=dynamic,
            half=half,
            nms=nms,
            triton_name=triton_name,
            triton_max_batch=triton_max_batch,
            nms_conf=nms_conf,
            nms_iou=nms_iou,
            nms_max_det=nms_max_det,
            progress=True,
        )
    except ExportError as e:
        # a format failed: the report export_report.json got (which says which, and why)
        # goes to --json too, where a CI job looks for it; then exit 2 as before
        if getattr(e, "report", None) is not None:
            write_json(json_path, e.report)
        raise
    write_json(json_path, res.report)  # first: whole whatever the printing below does
    # every cell is the report's (a format as given, paths, an earlier export's model):
    # printed as it is, never read as rich markup
    table = Table(title=f"export of {literal(model)} ({res.report['imgsz']} px)")
    for col in ("format", "artifact", "runtime", "checked in", "MiB", "max |diff|", "verified"):
        table.add_column(col)
    for fmt, e in res.report["formats"].items():
        # OpenVINO's version carries its build (2026.4.1-22982-e213a147257-releases/2026/4):
        # the release is enough for the table, the report keeps it whole
        runtime = " ".join(
            str(e[k]).split("-")[0] if k == "runtime_version" else str(e[k])
            for k in ("runtime", "runtime_version")
            if e.get(k)
        )
        if not runtime and isinstance(e.get("runtime_versions"), dict):  # the NMS graph's
            runtime = ", ".join(  # checked in each of them (a "-" hid that it was)
                f"{k} {str(v).split('-')[0]}" for k, v in e["runtime_versions"].items()
            )
        precision = e.get("precision", "-")
        default = (e.get("default_precision") or {}).get("precision")
        if default:  # checked at f32, run at the plugin's default (bf16 here) by val/bench
            precision = f"{precision} (runs {default} by default)"
        diff = e.get("max_abs_diff")
        cells = (
            fmt + _earlier(e, res.report),
            e["path"],
            runtime or "-",
            precision,
            str(e.get("size_mb", "-")),
            f"{diff:.2e}" if diff is not None else "-",
            e.get("verified") or ("yes" if e.get("passed") else "no"),
        )
        table.add_row(*(literal(c) for c in cells))
    if any("exported_with" in e for e in res.report["formats"].values()):
        table.caption = "(earlier): kept from an earlier export into this folder"
    print_table(table)
    for fmt, e in res.report["formats"].items():  # what the table has no column for
        if e.get("note") and "exported_with" not in e:
            console.print(f"note: {literal(fmt)}: {literal(e['note'])}", soft_wrap=True)
    console.print(f"report: {literal(Path(out) / 'export_report.json')}", soft_wrap=True)


def _warn_artifact_name(out: Path) -> None:
    """A warning for an ``--out`` named like an artifact (``exp/mymodel.onnx``): a legal
    folder name, but --out is the folder the artifacts go into, and ``--model`` of predict,
    val, info or bench takes a file in it, not the folder."""
    from yoloslim.runtime.backends import SUFFIXES

    suffix = Path(out).suffix.lower()
    if suffix in (*SUFFIXES, ".pth", ".engine", ".mlpackage"):
        warn(
            f"--out {literal(out)} is a folder named like an artifact "
            f"({literal(suffix)}); the artifacts go inside it "
            f"({literal(Path(out) / 'model.onnx')}, ...), and --model takes those files, not "
            "the folder"
        )


def _earlier(entry: dict, report: dict) -> str:
    """`` (earlier ...)`` for an entry an earlier export left, with what differs from this one."""
    was = entry.get("exported_with")
    if was is None:
        return ""
    other = []
    digests = was.get("model_digest"), report.get("model_digest")
    if None not in digests and digests[0] != digests[1]:  # older reports kept none
        # the path and weights digest: two runs' best.pt share a name
        other.append(f"model {was.get('model') or '?'}, weights {digests[0][:8]}")
    if was.get("imgsz") != report.get("imgsz"):
        other.append(f"{was.get('imgsz')} px")
    return f" (earlier{': ' + ', '.join(other) if other else ''})"
