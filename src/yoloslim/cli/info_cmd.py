"""``yoloslim info``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import typer

from yoloslim.bench.report import figure
from yoloslim.cli.common import check_json_target, handle_errors, literal, print_table, write_json
from yoloslim.sysinfo import relaunch


@handle_errors
def info(
    artifacts: list[Path] = typer.Argument(
        ...,
        help="Checkpoints (.pt), artifacts (.onnx, .xml, .torchscript, .mlpackage, Triton "
        "config) or architecture files (arch.yaml from nas).",
    ),
    json_path: Path = typer.Option(
        None, "--json", callback=check_json_target, help="Write {path: description} as JSON."
    ),
) -> None:
    """What each file is, read from the file alone (no data, no runtime): classes, input size,
    precision, inputs and outputs, and the steps that made it (train, prune, distill...)."""
    from rich.table import Table

    from yoloslim.errors import YoloslimError
    from yoloslim.runtime.describe import describe

    found, failed = {}, []
    for p in artifacts:  # a file that cannot be read does not hide the others
        try:
            found[str(p)] = describe(p)
        except YoloslimError as e:
            failed.append(e)
    if not failed:
        write_json(json_path, found)  # first: whole whatever the printing below does
    for path, d in found.items():
        # paths, class names, tensor and Triton names are the files' own: printed as they
        # are, never read as rich markup
        table = Table(title=literal(path), show_header=False, title_justify="left")
        table.add_column(style="bold")
        table.add_column(overflow="fold")
        for key, value in _rows(d):
            table.add_row(key, literal(value))
        print_table(table)
    if failed:  # said last, one line, as any error (and no --json of a part of the files)
        if len(failed) == 1 and len(artifacts) == 1:
            raise failed[0]
        raise type(failed[0])(
            f"{len(failed)} of {len(artifacts)} files not described"
            f"{' (no --json written)' if json_path else ''}: " + "; ".join(map(str, failed))
        )


def _rows(d: dict) -> list[tuple[str, str]]:
    if d["kind"] == "arch":
        return _arch_rows(d)
    rows = [("kind", f"{d['kind']} (runs in {d['runtime']})")]
    shown = d["names"][:12]
    # a name with a comma, a control character or edge spaces, or an empty one, could not
    # be told from the separator or seen: then all are quoted (audit49 export F2)
    plain = all(n and n == n.strip() and "," not in n and n.isprintable() for n in shown)
    names = ", ".join(shown if plain else (_quoted(n) for n in shown))
    names += " ..." if d["nc"] > 12 else ""
    rows += [("classes", f"{d['nc']}: {names}"), ("imgsz", str(d["imgsz"]))]
    if d["kind"] == "checkpoint":
        from yoloslim.models.checkpoint import arch_label  # torch, for checkpoints only

        rows.append(("arch", arch_label(str(d["arch"]), d["history"])))
        rows += _size_rows(d)
        if d["map"] is not None:  # mAP50 may be missing (a checkpoint's meta is free-form)
            at50 = "" if d["map50"] is None else f" (mAP50 {100 * d['map50']:.1f})"
            rows.append(("mAP50-95", f"{100 * d['map']:.1f}{at50}"))
        if d["training"]:
            t = d["training"]
            how = f"{t['command']} --resume its folder to go on"
            if (t.get("processes") or 1) > 1:  # the same count continues it exactly
                how = relaunch(f"yoloslim {how}", t["processes"], t.get("per_node"))
            state = how if d["resumable"] else "finished"
            rows.append(("training", f"{t['epochs_done']} of {t['epochs']} epochs ({state})"))
    else:
        hint = d.get("precision_hint")  # an IR that asks the CPU to compute in bf16, say
        asks = f" (asks for {hint} compute)" if hint and hint not in d["precision"] else ""
        rows.append(("precision", d["precision"] + asks))
        for key in ("inputs", "outputs"):
            if d[key] is not None:  # TorchScript declares none
                shown = "; ".join(f"{v['name']} {v['shape']} {v['dtype']}" for v in d[key])
                rows.append((key, shown))
        if d["end_to_end"]:
            rows.append(("NMS in the graph", ", ".join(f"{k} {v}" for k, v in d["nms"].items())))
        if d.get("quantization"):
            rows.append(("quantization", str(d["quantization"])))
        if d.get("triton"):
            t = d["triton"]
            rows.append(("triton", f"name {t['name']}, max_batch_size {t['max_batch_size']}"))
    rows.append(("size", f"{d['size_mb']:.2f} MiB"))
    steps = [_step(h) for h in d["history"]]
    rows.append(("history", " -> ".join(steps) if steps else "-"))
    return rows


def _size_rows(d: dict) -> list[tuple[str, str]]:
    params = f"{figure(d['params'] / 1e6)} M ({figure(d['params_deploy'] / 1e6)} M deploy form)"
    return [
        ("params", params),
        ("GFLOPs", f"{figure(d['gflops'])} (deploy form, at {d['imgsz']} px)"),
    ]


def _arch_rows(d: dict) -> list[tuple[str, str]]:
    """An arch.yaml: untrained, so its shape and cost, and the search's score."""
    stages = "; ".join(
        f"{s['block']} {s['out']} ch x{s['depth']}"
        # a conv stage is its strided 3x3 conv alone: its kernel and ratio are not used
        + (f" k{s['kernel']}" if s["block"] != "conv" and s.get("kernel", 3) != 3 else "")
        + (f" r{s['ratio']:g}" if s["block"] != "conv" and s.get("ratio") is not None else "")
        for s in d["stages"]
    )
    rows = [
        ("kind", f"architecture {d['arch']}, untrained: yoloslim train --model {d['path']}"),
        ("classes", str(d["nc"])),
        *_size_rows(d),
        ("backbone", stages),
    ]
    if d["score"] is not None:
        rows.append(("NAS score", f"{d['score']:.3f} (MAE-DET, at {d['imgsz']} px)"))
    elif d.get("edited"):
        why = "the file was edited since its search scored it"
        header = d.get("header_gflops")
        # d["gflops"] is rounded to 4 decimals, the header to 4 significant digits
        if header is not None and not math.isclose(header, d["gflops"], rel_tol=1e-3, abs_tol=1e-4):
            why += f": its header's {header:g} GFLOPs are not the file's {d['gflops']:.4g}"
        rows.append(("NAS score", f"- ({why})"))
    return rows


_SHOWN = {  # what a history entry shows of itself (the rest is in --json)
    "epochs": "epochs",
    "method": "method",
    "ratio": "ratio",
    "target_flops": "to {} GFLOPs",  # a number in the words (audit50 chain F6)
    "target_params": "to {} M params",
    "depth_ratio": "depth ratio",
    "finetune_epochs": "fine-tuned epochs",
    "finetune_between": "fine-tuned epochs between steps",
    "distilled": "distilled",  # a flag: shown by name alone
    "teacher": "teacher",
    "backend": "backend",  # quantize
    "mode": "mode",
    "calib": "calibration images",
    "float_layers": "convolutions in float",
}


def _step(h: dict) -> str:
    def shown(words: str, v) -> str:
        if v is True:
            return words
        return words.format(v) if "{}" in words else f"{words} {v}"

    details = [shown(_SHOWN[k], v) for k, v in h.items() if k in _SHOWN and v]
    trained, planned = h.get("epochs_trained"), h.get("epochs")
    if trained is not None and planned and trained != planned:  # stopped, or an earlier best
        details[details.index(f"epochs {planned}")] = f"epochs {trained} of {planned}"
    for earlier in h.get("data_before") or []:  # a resume given another --data
        if isinstance(earlier, dict):
            details.append(f"epochs to {earlier.get('until_epoch')} on {earlier.get('data')}")
    return f"{h.get('stage', '?')}" + (f" ({', '.join(details)})" if details else "")


def _quoted(name: str) -> str:
    """``name`` in double quotes, JSON-escaped; a character not seen as itself (a control or
    format character, a space other than " ") as its ``\\uXXXX`` escape, not raw: ""
    and a zero-width space looked alike (review of audit49's fixes, F3)."""
    return (
        '"'
        + "".join(
            json.dumps(c, ensure_ascii=not (c.isprintable() and (c == " " or not c.isspace())))[
                1:-1
            ]
            for c in name
        )
        + '"'
    )
