"""``yoloslim distill``."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import typer

from yoloslim.cli.common import (
    check_device_from_file,
    check_json_target,
    check_run_folder,
    config_file,
    expand_home,
    handle_errors,
    interrupt_hint,
    layered,
    refuse_config_in_run,
    refuse_unheeded,
    resume_command,
    resume_overrides,
    shown_default,
    write_json,
)
from yoloslim.configs import load_mapping


@handle_errors
def distill(
    ctx: typer.Context,
    teacher: Path = typer.Option(
        None,
        help="Teacher checkpoint (.pt); required (with --resume: default, the run's own, "
        "which last.pt records).",
    ),
    student: str = typer.Option(
        "damo-nano", help="Student: checkpoint (.pt), registered model name or arch.yaml."
    ),
    data: Path = typer.Option(
        None, help="data.yaml; required (with --resume: default, the run's own)."
    ),
    epochs: int = typer.Option(None, help="Epochs " + shown_default("30") + "."),
    imgsz: int = typer.Option(
        None,
        help="Input size (multiple of 32; default: the student checkpoint's, else the "
        "teacher's, else 320).",
    ),
    batch: int = typer.Option(None, help="Global batch size " + shown_default("16") + "."),
    out: Path = typer.Option(
        Path("runs/distill"), callback=check_run_folder, help="Output folder."
    ),
    exist_ok: bool = typer.Option(
        False, "--exist-ok", help="Start afresh in an --out that holds another run, replacing it."
    ),
    loss: str = typer.Option(
        None, help="Feature loss on the neck: cwd, mimic, mgd or at " + shown_default("cwd") + "."
    ),
    logit_weight: float = typer.Option(
        None, help="Weight of the logit terms (0: off) " + shown_default("1.0") + "."
    ),
    feature_weight: float = typer.Option(
        None, help="Weight of the feature term (0: off) " + shown_default("1.0") + "."
    ),
    temperature: float = typer.Option(
        None,
        help="Temperature of the logit terms (softened scores and DFL bins; T^2-scaled, and "
        "stronger up to about T=2-4 on a detector's background anchors) "
        + shown_default("2.0")
        + ".",
    ),
    progressive: bool = typer.Option(
        None,
        "--progressive/--no-progressive",
        help="Freeze the student's backbone first, ramp the distillation weights up "
        + shown_default("no-progressive")
        + ".",
    ),
    freeze_epochs: int = typer.Option(
        None, help="Epochs with the backbone frozen (progressive) " + shown_default("1") + "."
    ),
    warmup_epochs: float = typer.Option(
        None, help="Distillation weight warm-up (progressive) " + shown_default("1.0") + "."
    ),
    lr0: float = typer.Option(None, help="Peak learning rate " + shown_default("0.004") + "."),
    workers: int = typer.Option(
        None, help="Data-loader workers " + shown_default("0 on 2 cores or fewer, else 1") + "."
    ),
    seed: int = typer.Option(None, help="Random seed " + shown_default("0") + "."),
    device: str = typer.Option(None, help="auto, cpu or cuda[:N] " + shown_default("auto") + "."),
    threads: int = typer.Option(
        None,
        help="Threads torch computes on (default: torch's, one per core; on a machine busy "
        "with other work, 1 can be many times faster).",
    ),
    config: Path = typer.Option(
        None,
        help="YAML of DistillConfig fields (nested `train:` and `advanced:`); flags override it.",
    ),
    resume: Path = typer.Option(
        None,
        callback=expand_home,
        help="Resume the run in this folder from its last.pt, with its saved settings "
        "(--device, --workers, --threads and --data may change, and --teacher where that "
        "file moved).",
    ),
    json_path: Path = typer.Option(
        None, "--json", callback=check_json_target, help="Write the report as JSON."
    ),
) -> None:
    """Train a student with a teacher's guidance (logits + neck features); writes best.pt, last.pt.

    Prune recovery: `yoloslim prune ... --distill`, or prune with --finetune-epochs 0 and
    then `yoloslim distill --teacher base.pt --student PRUNED/pruned.pt ...`.
    """
    from yoloslim.cli.common import first_process, resume_state
    from yoloslim.cli.train_cmd import print_best
    from yoloslim.compress.distill import DistillConfig
    from yoloslim.compress.distill import distill as run_distill
    from yoloslim.errors import ConfigError
    from yoloslim.train.run_folder import recorded_data

    if resume is not None:
        runtime = resume_overrides(ctx, also=("teacher",))
        state = resume_state(resume, start_option="--student")
        saved = state["train_state"].get("hook", {}).get("config")
        cfg = None  # not a distill run: distill() says so
        if saved is not None:
            saved = DistillConfig.from_dict(saved)
            cfg = dataclasses.replace(saved, train=dataclasses.replace(saved.train, **runtime))
        with interrupt_hint(Path(resume) / "last.pt", resume_command("distill", resume)):
            res = run_distill(
                None,
                teacher,
                data or recorded_data(Path(resume), state),
                config=cfg,
                out=resume,
                resume=True,
                progress=True,
            )
    else:
        if data is None:
            raise ConfigError("--data is required (unless --resume DIR is given)")
        if teacher is None:
            raise ConfigError("--teacher is required (unless --resume DIR is given)")
        top = dict(
            loss=loss,
            logit_weight=logit_weight,
            feature_weight=feature_weight,
            temperature=temperature,
            progressive=progressive,
            freeze_epochs=freeze_epochs,
            warmup_epochs=warmup_epochs,
        )
        refuse_config_in_run(config, out)
        values = layered(ctx, load_mapping(config, "DistillConfig") if config else None, top)
        flags = dict(
            epochs=epochs,
            imgsz=imgsz,
            batch=batch,
            lr0=lr0,
            workers=workers,
            seed=seed,
            device=device,
            threads=threads,
        )
        with config_file(config, ctx):  # a mistake in what the file gives (train: 3) names it
            values["train"] = layered(ctx, values.get("train"), flags, key="train")
            cfg = DistillConfig.from_dict(values)
        check_device_from_file(cfg.train.device, config, ctx)
        refuse_unheeded(  # they were ignored without a word
            ctx,
            ("freeze_epochs", "warmup_epochs"),
            heeded=cfg.progressive,
            what="the progressive schedule, and it is off: add --progressive",
        )
        with interrupt_hint(Path(out) / "last.pt", resume_command("distill", out), new_run=True):
            res = run_distill(
                student, teacher, data, config=cfg, out=out, exist_ok=exist_ok, progress=True
            )
    print_best(res.report["train"].get("best_map"), res.artifacts.get("best"))
    if first_process():
        write_json(json_path, res.report)
