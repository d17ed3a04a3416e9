"""``yoloslim prune``."""

from __future__ import annotations

from pathlib import Path

import typer

from yoloslim.cli.common import (
    check_json_target,
    check_out_folder,
    config_file,
    console,
    handle_errors,
    layered,
    literal,
    option_given,
    print_table,
    restart_hint,
    shown_default,
    torch_threads,
    write_json,
)
from yoloslim.configs import int_problem, load_mapping
from yoloslim.errors import ConfigError


@handle_errors
def prune(
    ctx: typer.Context,
    model: str = typer.Option(
        ...,
        help="yoloslim checkpoint (.pt); a registered model name or arch.yaml prunes random "
        "weights (with a warning).",
    ),
    data: Path = typer.Option(None, help="data.yaml (needed for fine-tuning, mAP, Taylor, depth)."),
    out: Path = typer.Option(
        Path("runs/prune"),
        callback=check_out_folder,
        help="Output folder (pruned.pt, prune_report.json).",
    ),
    exist_ok: bool = typer.Option(
        False, "--exist-ok", help="Replace the pruned model an earlier prune left in --out."
    ),
    ratio: float = typer.Option(
        None, help="Channel ratio to remove, in (0, 1) (default 0.5 when no other goal is given)."
    ),
    target_flops: float = typer.Option(None, help="GFLOPs budget (deploy form, at --imgsz)."),
    target_params: float = typer.Option(None, help="Parameter budget in millions."),
    method: str = typer.Option(
        None,
        help="width (channels) or depth (residual blocks) meets the goal "
        + shown_default("width")
        + ".",
    ),
    criterion: str = typer.Option(
        None, help="l1, l2, bn-scale, taylor or random " + shown_default("l2") + "."
    ),
    steps: int = typer.Option(None, help="Iterative pruning steps " + shown_default("1") + "."),
    finetune_epochs: int = typer.Option(
        None, help="Fine-tuning epochs after pruning " + shown_default("10") + "."
    ),
    finetune_between: int = typer.Option(
        None, help="Fine-tuning epochs between steps " + shown_default("0") + "."
    ),
    global_pruning: bool = typer.Option(
        None,
        "--global/--local",
        help="Rank channels across layers (global) or per layer " + shown_default("local") + ".",
    ),
    depth_ratio: float = typer.Option(None, help="Fraction of residual blocks to remove."),
    unstructured: float = typer.Option(
        None, help="Global L1 weight sparsity (dense runtimes: no speed-up)."
    ),
    ignore: list[str] = typer.Option(
        None, help="Module-name pattern whose outputs stay whole (repeatable)."
    ),
    distill: bool = typer.Option(
        None,
        "--distill/--no-distill",
        help="Fine-tune by distillation from the unpruned model "
        + shown_default("no-distill")
        + ".",
    ),
    imgsz: int = typer.Option(None, help="Input size (default: the checkpoint's training size)."),
    batch: int = typer.Option(None, help="Batch size " + shown_default("16") + "."),
    backend: str = typer.Option(
        None, help="Latency runtime: openvino or onnxruntime " + shown_default("openvino") + "."
    ),
    latency: bool = typer.Option(
        None,
        "--latency/--no-latency",
        help="Export and time before/after " + shown_default("latency") + ".",
    ),
    config: Path = typer.Option(
        None, help="YAML file of PruneConfig fields (flags given override it)."
    ),
    threads: int = typer.Option(
        None,
        help="Torch threads for the evaluations and the fine-tuning (default: torch's own; on "
        "a busy machine fewer can be much faster); the latency workers keep their runtime's.",
    ),
    json_path: Path = typer.Option(
        None, "--json", callback=check_json_target, help="Write the prune report as JSON."
    ),
) -> None:
    """Prune channels and/or residual blocks, fine-tune, and report params, GFLOPs, size, latency, mAP."""
    from rich.table import Table

    from yoloslim.compress.prune import PruneConfig
    from yoloslim.compress.prune import prune as run_prune

    flags = dict(
        ratio=ratio,
        target_flops=target_flops,
        target_params=target_params,
        method=method,
        criterion=criterion,
        steps=steps,
        finetune_epochs=finetune_epochs,
        finetune_between=finetune_between,
        global_pruning=global_pruning,
        depth_ratio=depth_ratio,
        unstructured=unstructured,
        ignore=tuple(ignore) if ignore else None,
        distill=distill,
        imgsz=imgsz,
        batch=batch,
        backend=backend,
        latency=latency,
    )
    values = layered(ctx, load_mapping(config, "PruneConfig") if config else None, flags)
    # the goals exclude each other: one given on the command line replaces the file's
    goals = ("ratio", "target_flops", "target_params")
    if any(flags[g] is not None and option_given(ctx, g) for g in goals):
        for g in goals:
            if not option_given(ctx, g):
                values.pop(g, None)
    with config_file(config, ctx):
        cfg = PruneConfig.from_dict(values)
    problem = None if threads is None else int_problem(threads)
    if problem:
        raise ConfigError(f"--threads {threads} {problem}")
    from yoloslim.sysinfo import check_threads

    check_threads(threads, "threads")
    earlier = "" if exist_ok else f" (add --exist-ok where {out} holds a pruned.pt by then)"
    with (
        restart_hint(f"a prune does not resume: the same command runs it anew{earlier}"),
        torch_threads(threads),  # this process's: the evaluations and the fine-tuning
    ):
        res = run_prune(model, data, config=cfg, out=out, exist_ok=exist_ok, progress=True)
    write_json(json_path, res.report)  # first: whole whatever the printing below does
    lat = res.report["latency"]
    table = Table(
        title=f"prune of {literal(model)} ({res.report['config']['imgsz']} px)",
        caption=(
            f"size and latency: the model exported to {lat['backend']} ({lat['precision']}), "
            "batch 1"
            if lat
            else "size: FP32 weights of the deploy form (params x 4 bytes); latency: not "
            "measured (--no-latency)"
        ),
    )
    for col in (
        "stage",
        "params (M)",
        "GFLOPs",
        "size (MiB)",
        "latency (ms)",
        "mAP50-95 (%)",
        "mAP50 (%)",
    ):
        table.add_column(col)
    for row in res.report["table"]:
        table.add_row(*("-" if v is None else str(v) for v in row.values()))
    print_table(table)
    console.print(res.report["note"])
    art = res.artifacts
    console.print(
        f"checkpoint: {literal(art['checkpoint'])}  report: {literal(art['report'])}",
        soft_wrap=True,
    )
