"""``yoloslim data ...``: synthesize and check datasets."""

from __future__ import annotations

from pathlib import Path

import typer

from yoloslim.cli.common import (
    check_json_target,
    console,
    err_console,
    handle_errors,
    literal,
    print_table,
    write_json,
)

app = typer.Typer(
    help="Dataset tools.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.command("synth")
@handle_errors
def synth(
    out: Path = typer.Argument(..., help="Output folder."),
    images: int = typer.Option(1000, help="Number of images (train + val)."),
    imgsz: int = typer.Option(320, help="Image side in pixels."),
    classes: int = typer.Option(4, help="Number of shape classes (1-8)."),
    seed: int = typer.Option(0, help="Random seed in [0, 2**32) (same seed, same bytes)."),
    val_fraction: float = typer.Option(0.2, help="Fraction of images in the val split."),
) -> None:
    """Write a deterministic synthetic detection set (YOLO + COCO + data.yaml)."""
    from yoloslim.data.synth import synthesize

    with err_console.status(f"synthesizing {images} images"):
        path = synthesize(
            out, images=images, imgsz=imgsz, classes=classes, seed=seed, val_fraction=val_fraction
        )
    console.print(f"wrote {literal(path)}", soft_wrap=True)


@app.command("check")
@handle_errors
def check(
    data: Path = typer.Argument(..., help="data.yaml"),
    json_path: Path = typer.Option(
        None, "--json", callback=check_json_target, help="Write the report as JSON."
    ),
    imgsz: int = typer.Option(
        None, help="Also count the instances training at this size drops (too small or thin)."
    ),
    decode: bool = typer.Option(
        False,
        "--decode",
        help="Also decode every image whole, as training does, and name those that fail "
        "(corrupt pixel data behind valid headers: training stops on them); slower.",
    ),
) -> None:
    """Validate a dataset and print per-split statistics."""
    from rich.table import Table

    from yoloslim.data import load_data_config
    from yoloslim.data.validate import check_dataset

    report = check_dataset(load_data_config(data), imgsz=imgsz, decode=decode)
    # first: the report is whole whatever the printing below does
    write_json(json_path, report)
    splits = report["splits"]
    # paths and class names are the user's: printed as they are, never read as rich markup
    table = Table(title=f"{literal(data)} ({report['format']})")
    ignored = any(r["ignored"] for r in splits.values())  # a column only where there are some
    cols = ["split", "images", "instances", "empty images", "missing label files", "skipped"]
    if ignored:
        cols.insert(3, "ignored (crowd/difficult)")
    if imgsz is not None:
        cols.append(f"dropped at imgsz {imgsz}")
    # labels the readers left out or cut (warned above): a column only where there are some
    changed = any(sum(r["labels_changed"].values()) for r in splits.values())
    if changed:
        cols.append("labels left out / cut")
    if decode:
        cols.append("undecodable")
    for col in cols:
        table.add_column(col, justify="left" if col == "split" else "right")
    for split, r in splits.items():
        table.add_row(
            split,
            str(r["images"]),
            str(r["instances"]),
            *([str(r["ignored"])] if ignored else []),
            str(r["empty_images"]),
            str(r["missing_labels"]),
            str(len(r["skipped_images"])),
            *([str(r["dropped_at_imgsz"])] if imgsz is not None else []),
            *([_changes(r["labels_changed"])] if changed else []),
            *([str(len(r["undecodable_images"]))] if decode else []),
        )
    print_table(table)
    per_class = Table(title="instances per class")
    per_class.add_column("class")
    for split in splits:
        per_class.add_column(split, justify="right")
    for name in report["names"]:
        per_class.add_row(literal(name), *(str(splits[s]["per_class"][name]) for s in splits))
    print_table(per_class)
    for split, r in splits.items():
        skipped = r["skipped_images"]
        for path in skipped[:_SHOWN_SKIPPED]:
            console.print(f"skipped ({split}): {literal(path)}", soft_wrap=True)
        if len(skipped) > _SHOWN_SKIPPED:
            more = f"and {len(skipped) - _SHOWN_SKIPPED} more skipped ({split})"
            where = "--json lists them all" if json_path else "--json PATH lists them all"
            console.print(f"{more}; {where}")


def _changes(changed: dict[str, int]) -> str:
    """``data check``'s cell for ``labels_changed``: ``2 duplicates, 1 clipped``, or 0."""
    words = {
        "zero_area_dropped": "zero-area",
        "duplicates_dropped": "duplicate(s)",
        "clipped": "cut at the edge",
        "outside_dropped": "outside the image",
    }
    said = [f"{n} {words[k]}" for k, n in changed.items() if n]
    return ", ".join(said) or "0"


_SHOWN_SKIPPED = 10  # skipped images named on the terminal per split (a wrong folder: all)
