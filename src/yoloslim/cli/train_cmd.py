"""``yoloslim train``."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import typer

from yoloslim.cli.common import (
    check_device_from_file,
    check_json_target,
    check_run_folder,
    console,
    expand_home,
    first_process,
    flag_given,
    handle_errors,
    interrupt_hint,
    layered,
    literal,
    refuse_config_in_run,
    resume_command,
    resume_overrides,
    resume_state,
    shown_default,
    write_json,
)
from yoloslim.configs import load_mapping


@handle_errors
def train(
    ctx: typer.Context,
    model: str = typer.Option(
        "damo-nano",
        help="Registered name (see `yoloslim models`), arch.yaml, or a checkpoint .pt to "
        "fine-tune.",
    ),
    data: Path = typer.Option(
        None, help="data.yaml; required (with --resume: default, the run's own)."
    ),
    epochs: int = typer.Option(30, help="Epochs."),
    imgsz: int = typer.Option(
        None,
        help="Input size (multiple of 32; default: a checkpoint's own, or the size an "
        "arch.yaml from nas was searched at; else 320).",
    ),
    batch: int = typer.Option(16, help="Global batch size."),
    out: Path = typer.Option(Path("runs/train"), callback=check_run_folder, help="Output folder."),
    exist_ok: bool = typer.Option(
        False, "--exist-ok", help="Start afresh in an --out that holds another run, replacing it."
    ),
    optimizer: str = typer.Option("adamw", help="adamw or sgd."),
    lr0: float = typer.Option(
        None, help="Peak learning rate (a --config file's, else " + shown_default("0.004") + ")."
    ),
    workers: int = typer.Option(
        None, help="Data-loader workers " + shown_default("0 on 2 cores or fewer, else 1") + "."
    ),
    seed: int = typer.Option(0, help="Random seed."),
    device: str = typer.Option(
        "auto", help="auto, cpu or cuda[:N] (auto: cuda when torch sees a GPU)."
    ),
    threads: int = typer.Option(
        None,
        help="Threads torch computes on (default: torch's, one per core; on a machine busy "
        "with other work, 1 can be many times faster).",
    ),
    config: Path = typer.Option(
        None, help="YAML file of TrainConfig fields (flags given override it)."
    ),
    resume: Path = typer.Option(
        None,
        callback=expand_home,
        help="Resume the run in this folder from its last.pt, with its saved settings "
        "(--device, --workers, --threads and --data may change).",
    ),
    json_path: Path = typer.Option(
        None, "--json", callback=check_json_target, help="Write the training report as JSON."
    ),
) -> None:
    """Train a detector; writes last.pt, best.pt (by val mAP; none when the val split has
    no box), metrics.jsonl and train_config.yaml."""
    from yoloslim.errors import ConfigError
    from yoloslim.train import config_from_dict
    from yoloslim.train import train as run_train

    if resume is not None:
        runtime = resume_overrides(ctx)
        state = resume_state(resume)
        saved = config_from_dict(state.get("train_state", {}).get("config", {}))
        with interrupt_hint(Path(resume) / "last.pt", resume_command("train", resume)):
            res = run_train(
                None,
                data,
                config=dataclasses.replace(saved, **runtime),
                out=resume,
                resume=True,
                progress=True,
            )
    else:
        if data is None:
            raise ConfigError("--data is required (unless --resume DIR is given)")
        flags = dict(
            epochs=epochs,
            imgsz=imgsz,
            batch=batch,
            optimizer=optimizer,
            lr0=lr0,
            workers=workers,
            seed=seed,
            device=device,
            threads=threads,
        )
        refuse_config_in_run(config, out)
        values = layered(ctx, load_mapping(config, "TrainConfig") if config else None, flags)
        # flags are all known keys: an unknown one came from the file
        where = f"--config {config}" if config else "train config"
        try:
            cfg = config_from_dict(values, where=where)
        except ConfigError as e:
            # a bad value given as a flag beside --config is the flag's, not the file's
            if config and flag_given(e, ctx):
                raise ConfigError(str(e).replace(f"{where}: ", "", 1)) from e
            raise
        check_device_from_file(cfg.device, config, ctx)
        with interrupt_hint(Path(out) / "last.pt", resume_command("train", out), new_run=True):
            res = run_train(model, data, config=cfg, out=out, exist_ok=exist_ok, progress=True)
    print_best(res.report.get("best_map"), res.best)
    if first_process():  # the other ranks never validate: their report has no mAP
        write_json(json_path, res.report)


def print_best(best: float | None, path) -> None:
    """The run's best mAP50-95 as `yoloslim val` prints it (percent, one decimal) and its file;
    under torchrun, by the first process only."""
    if not first_process():
        return
    if path is None and best is None:  # no epoch had a defined mAP: the val split holds no box
        console.print("no best.pt: no validation mAP to choose one by (the val split has no box)")
        return
    shown = "-" if best is None else f"{100 * best:.1f}%"
    where = "(best.pt is not in the run folder)" if path is None else f"->  {literal(path)}"
    console.print(f"best mAP50-95 {shown}  {where}", soft_wrap=True)
