"""``yoloslim train``."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import typer

from yoloslim.cli.common import console, handle_errors, layered, resume_overrides, write_json
from yoloslim.configs import load_mapping


@handle_errors
def train(
    ctx: typer.Context,
    model: str = typer.Option(
        "damo-nano", help="Registered name (see `yoloslim models`) or arch.yaml."
    ),
    data: Path = typer.Option(None, help="data.yaml (with --resume: default, the run's own)."),
    epochs: int = typer.Option(30, help="Epochs."),
    imgsz: int = typer.Option(320, help="Input size (multiple of 32)."),
    batch: int = typer.Option(16, help="Global batch size."),
    out: Path = typer.Option(Path("runs/train"), help="Output folder."),
    optimizer: str = typer.Option("adamw", help="adamw or sgd."),
    lr0: float = typer.Option(None, help="Peak learning rate (default: the config's)."),
    workers: int = typer.Option(1, help="Data-loader workers."),
    seed: int = typer.Option(0, help="Random seed."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    config: Path = typer.Option(
        None, help="YAML file of TrainConfig fields (flags given override it)."
    ),
    resume: Path = typer.Option(
        None,
        help="Resume the run in this folder from its last.pt, with its saved settings "
        "(--device, --workers and --data may change).",
    ),
    json_path: Path = typer.Option(None, "--json", help="Write the training report as JSON."),
) -> None:
    """Train a detector; writes last.pt, best.pt, metrics.jsonl and train_config.yaml."""
    from yoloslim.errors import ConfigError
    from yoloslim.train import config_from_dict
    from yoloslim.train import train as run_train

    if resume is not None:
        runtime = resume_overrides(ctx)
        state = _resume_state(resume)
        saved = config_from_dict(state.get("train_state", {}).get("config", {}))
        res = run_train(
            None,
            data or _resume_data(resume, state),
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
        )
        values = layered(ctx, load_mapping(config, "TrainConfig") if config else None, flags)
        cfg = config_from_dict(values)
        res = run_train(model, data, config=cfg, out=out, progress=True)
    console.print(f"best mAP50-95 {res.report.get('best_map')}  ->  {res.best}")
    write_json(json_path, res.report)


def _resume_state(run_dir: Path) -> dict:
    """The checkpoint dict of ``run_dir/last.pt``, the run ``--resume`` continues."""
    from yoloslim.errors import ConfigError
    from yoloslim.models.checkpoint import read_checkpoint

    last = Path(run_dir) / "last.pt"
    if not last.is_file():
        raise ConfigError(f"--resume {run_dir}: {last} does not exist")
    state = read_checkpoint(last)
    if "train_state" not in state:
        raise ConfigError(f"--resume {run_dir}: {last} has no training state")
    return state


def _resume_data(run_dir: Path, state: dict) -> str:
    from yoloslim.errors import ConfigError

    data = state.get("meta", {}).get("data")
    if not data:
        raise ConfigError(
            f"--resume {run_dir}: {run_dir}/last.pt does not record its data.yaml; pass --data"
        )
    return data
