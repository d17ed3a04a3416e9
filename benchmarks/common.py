"""Shared by the benchmark scripts: the synthetic set and a trained baseline, reused when present.

Every compression benchmark starts from "MODEL trained on the synthetic set at 320 px". Training
it once and reusing the checkpoint keeps the scripts runnable one after another on 2 cores:

    .venv/bin/python benchmarks/common.py --model damo-tiny --epochs 10   # trains runs/base/damo-tiny
    .venv/bin/python benchmarks/common.py --model damo-tiny --extend 8    # 8 epochs more

A kept baseline (its done.json) is reused whatever ``--epochs`` says; a warning on stderr
says so when it was trained for another number of epochs. Training shows its progress bars
on stderr.

Prints one JSON object (done.json: checkpoint path, epochs, mAP, training seconds).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

import yaml

import yoloslim as ys
from yoloslim.errors import ConfigError
from yoloslim.fileio import atomic_write_text
from yoloslim.train.config import config_from_dict, resume_config

ROOT = Path("runs/base")
DATA = ROOT / "data" / "data.yaml"


def synthetic_data(path: Path = DATA, images: int = 1000, imgsz: int = 320) -> Path:
    """The default synthetic set (1000 images, 4 classes, seed 0), generated once."""
    path = Path(path)
    if not path.exists():
        ys.synthesize(path.parent, images=images, imgsz=imgsz, classes=4, seed=0)
    return path


def train_config(
    epochs: int, imgsz: int = 320, static_assigner: int = 0, **overrides
) -> ys.TrainConfig:
    """The benchmarks' common recipe (train_synth.py's, but for ``close_mosaic``,
    ``val_interval`` and the ATSS epochs, which train_synth leaves to the trainer).

    It pins ``loss.static_assigner_epochs`` to ``static_assigner``, by default 0, the recipe
    every cached run used; the library's default for a model trained from scratch is ATSS
    for the first ``min(4, epochs // 4)`` epochs (scripts take ``--static-assigner-epochs``).
    """
    base = dict(
        epochs=epochs,
        imgsz=imgsz,
        batch=16,
        lr0=0.004,
        workers=1,
        cache=True,
        augment={"mosaic": 0.5},
        close_mosaic=min(3, epochs),
        val_interval=max(1, epochs // 2),
        loss={"static_assigner_epochs": static_assigner},
    )
    base.update(overrides)
    return ys.TrainConfig(**base)


def epoch_log(label: str, epochs: int):
    """An ``on_epoch_end`` for ``ys.train``: one line per epoch on stderr (its seconds, losses
    and mAP when it validated), so that a run written to a pipe or a log shows progress as it
    goes (rich's bars draw live only on a terminal); None on a terminal, where the bar does."""
    if sys.stderr.isatty():
        return None

    def log(epoch: int, row: dict) -> None:
        parts = [
            f"{k} {row[k]:.4g}" for k in ("box", "cls", "dfl", "map") if row.get(k) is not None
        ]
        print(
            f"{label}: epoch {epoch + 1}/{epochs} done in {row.get('epoch_s')} s ({', '.join(parts)})",
            file=sys.stderr,
            flush=True,
        )

    return log


def train_resuming(model, data: Path, cfg: ys.TrainConfig, out: Path, label: str):
    """``ys.train`` of ``model`` into ``out``, going on from an interrupted run of ``cfg``
    there (the trainer's resume is exact), with a line per epoch on stderr (``label``)."""
    resume = resumable(out, cfg)
    return ys.train(
        None if resume else model,  # a resume continues the run's own model
        data,
        config=cfg,
        out=out,
        resume=resume,
        progress=True,
        on_epoch_end=epoch_log(label, cfg.epochs),
    )


def recipe_tag(epochs: int, static_assigner: int = 0) -> str:
    """``e<E>``, plus ``_sa<N>`` with ATSS first: cached runs' names (0 keeps the old names)."""
    return f"e{epochs}" + (f"_sa{static_assigner}" if static_assigner else "")


def resumable(out: Path, cfg: ys.TrainConfig) -> bool:
    """Whether ``out`` holds an interrupted run of ``cfg`` to resume (the trainer's resume is exact).

    Raises ValueError when ``out`` holds a run of another config, rather than resume or
    overwrite it.
    """
    out = Path(out)
    if not (out / "last.pt").exists():
        return False
    saved = config_from_dict(yaml.safe_load((out / "train_config.yaml").read_text()))
    try:
        resume_config(saved, cfg, str(out))  # settings saved before a field existed: defaults
    except ConfigError as e:
        raise ValueError(
            f"{out} holds a run of another training config; move it or pick --out ({e})"
        ) from e
    return True


def cached(out: Path, name: str, fn, inputs: dict | None = None) -> dict:
    """``fn()`` (a JSON-able dict, ``seconds`` added) computed once and kept in ``out/name.json``.

    ``inputs`` (what the row was made from: :func:`data_key`, :func:`file_key`) is kept with it;
    a kept row made from other inputs is made again (its run folder ``out/name``, which the
    scripts name as the row, moved to ``out/name.stale`` first, so that nothing resumes it),
    so another data set or teacher never reuses it. A kept row without recorded inputs (made before they were, or a pooled copy
    from another host) is used as it is. A row read back carries ``"cached": true``.
    """
    path = Path(out) / f"{name}.json"
    if path.exists():
        row = json.loads(path.read_text())
        if inputs is None or row.get("inputs", inputs) == inputs:
            return {**row, "cached": True}
        # its run folder (the scripts name it as the row) would be resumed as finished
        run = Path(out) / name
        if run.is_dir():
            stale = run.with_name(f"{name}.stale")
            shutil.rmtree(stale, ignore_errors=True)
            run.rename(stale)
        print(f"{path} was made from other inputs; making it again", file=sys.stderr)
    t0 = time.time()
    row = fn()
    row["seconds"] = round(time.time() - t0, 1)
    row["machine"] = machine()  # rows pooled from several machines are named as such
    if inputs is not None:
        row["inputs"] = inputs
    atomic_write_text(path, json.dumps(row, default=str))
    return row


def file_key(path: Path) -> dict:
    """A file's identity on any host: its name and a digest of its bytes."""
    return {"name": Path(path).name, "sha1": hashlib.sha1(Path(path).read_bytes()).hexdigest()}


def data_key(data: Path) -> dict:
    """A YOLO-layout set's identity on any host: its image count and a digest of its labels."""
    root = Path(data).parent
    labels = sorted(root.rglob("labels/**/*.txt"))
    digest = hashlib.sha1()
    for f in labels:
        digest.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes())
    images = sum(1 for p in root.rglob("images/**/*") if p.is_file())
    return {"images": images, "labels_sha1": digest.hexdigest()}


def baseline_ckpt(model: str = "damo-tiny", root: Path = ROOT) -> Path:
    """The baseline checkpoint done.json names (the extended run's after ``--extend``), else
    ``root/model/best.pt``."""
    info = _info(model, root)
    return Path(info["ckpt"]) if info else Path(root) / model / "best.pt"


def _info(model: str, root: Path = ROOT) -> dict | None:
    done = Path(root) / model / "done.json"
    return json.loads(done.read_text()) if done.exists() else None


def baseline_training(model: str = "damo-tiny", root: Path = ROOT) -> dict | None:
    """How the kept baseline was trained, from its done.json (None when there is none):
    ``ckpt``, ``epochs`` (in all, ``--extend`` included), ``first_epochs`` (the first
    training's, which ``--epochs`` / ``--base-epochs`` set), ``extended_by``, ``map``,
    ``map50`` (measured on val when it finished) and ``train_s``."""
    info = _info(model, root)
    if info is None:
        return None
    history = info.get("history") or []
    first = history[0]["epochs"] if history else info["epochs"]
    return {
        "done_json": str(Path(root) / model / "done.json"),
        "ckpt": info["ckpt"],
        "epochs": info["epochs"],
        "first_epochs": first,
        "extended_by": info["epochs"] - first,
        "map": info.get("map"),
        "map50": info.get("map50"),
        "train_s": info.get("train_s"),
    }


def trained(model: str, epochs: int, data: Path = DATA, root: Path = ROOT) -> Path:
    """The baseline checkpoint of `model` on `data`: trained `epochs` epochs (resuming) unless
    finished; after ``--extend`` it is the extended run's best.pt (done.json says which).

    A finished baseline is reused whatever ``epochs`` says: when its first training had
    another number of epochs, a warning on stderr says so (move ``root/model`` to retrain).
    """
    out = Path(root) / model
    best = out / "best.pt"
    info = _info(model, root)
    if info and Path(info["ckpt"]).exists():
        kept = baseline_training(model, root)
        if kept["first_epochs"] != epochs:
            print(
                f"warning: reusing the baseline {kept['ckpt']} trained {kept['first_epochs']} "
                f"epochs (+{kept['extended_by']} extended, mAP50-95 {kept['map']}), not the "
                f"{epochs} asked for; move {out} away to train it again",
                file=sys.stderr,
            )
        return Path(info["ckpt"])
    t0 = time.time()
    cfg = train_config(epochs)
    train_resuming(model, data, cfg, out, f"baseline {model}")
    metrics = ys.validate(best, data)
    info = {
        "model": model,
        "epochs": epochs,
        "train_s": round(time.time() - t0, 1),
        "map": round(metrics["map"], 4),
        "map50": round(metrics["map50"], 4),
        "ckpt": str(best),
    }
    (out / "done.json").write_text(json.dumps(info))
    return best


def extend(model: str, more: int, data: Path = DATA, root: Path = ROOT) -> Path:
    """Train the finished baseline `more` epochs further (fine-tuning recipe: lr0 0.002, half an
    epoch of warm-up) into ``root/model/ext<E>``; done.json then points at that best.pt."""
    info = _info(model, root)
    if info is None:
        raise SystemExit(f"{Path(root) / model / 'done.json'} missing: train the baseline first")
    out = Path(root) / model / f"ext{info['epochs'] + more}"
    if (out / "done").exists():
        return out / "best.pt"
    t0 = time.time()
    cfg = train_config(more, lr0=0.002, warmup_epochs=0.5)
    start = ys.load_checkpoint(info["ckpt"])[0]
    train_resuming(start, data, cfg, out, f"extending {model}")
    metrics = ys.validate(out / "best.pt", data)
    history = info.pop("history", []) + [dict(info)]
    info.update(
        epochs=info["epochs"] + more,
        train_s=round(info["train_s"] + time.time() - t0, 1),
        map=round(metrics["map"], 4),
        map50=round(metrics["map50"], 4),
        ckpt=str(out / "best.pt"),
        history=history,
    )
    (Path(root) / model / "done.json").write_text(json.dumps(info))
    (out / "done").write_text("")
    return out / "best.pt"


def paired(a: list[float], b: list[float]) -> dict:
    """Per-seed differences a - b: their mean, sample sd, paired t and how often a is ahead.

    ``sd`` needs two seeds and ``t`` a nonzero sd; each is None otherwise.
    """
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    if not diffs:
        raise ValueError("paired: no runs to compare")
    mean = statistics.fmean(diffs)
    sd = statistics.stdev(diffs) if len(diffs) > 1 else None
    t = mean / (sd / len(diffs) ** 0.5) if sd else None
    return {
        "seeds": len(diffs),
        "diffs": [round(d, 4) for d in diffs],
        "diff_mean": round(mean, 4),
        "diff_sd": None if sd is None else round(sd, 4),
        "t": None if t is None else round(t, 2),
        "ahead": sum(d > 0 for d in diffs),
    }


def is_arch_yaml(model: str) -> bool:
    """Whether ``model`` names an arch file rather than a registered model."""
    return str(model).endswith((".yaml", ".yml"))


def model_name(model: str) -> str:
    """The name a model's runs are filed under: a registered name, or for an arch.yaml its
    stem and the first 8 hex digits of the sha1 of its bytes (``arch-1a2b3c4d``), so that two
    searches' ``arch.yaml`` files are two models, and an edited file a new one."""
    if not is_arch_yaml(model):
        return model
    return f"{Path(model).stem}-{file_key(Path(model))['sha1'][:8]}"


def model_problem(model: str) -> str | None:
    """Why ``model`` is neither a registered name nor an existing arch file, or None."""
    if is_arch_yaml(model):
        return None if Path(model).is_file() else f"{model}: no such file"
    if model not in ys.list_models():
        return (
            f"{model!r} is not a registered model ({', '.join(ys.list_models())}) or an arch.yaml"
        )
    return None


def run_inputs(model: str, data_id: dict) -> dict:
    """What a seed run's cached row is made from: the data set (:func:`data_key`) and, for an
    arch.yaml, the file (:func:`file_key`). A registered name's identity is its name, which
    is in the row's file name (rows made before this function have the same inputs)."""
    return {**data_id, "model": file_key(Path(model))} if is_arch_yaml(model) else dict(data_id)


def _same_arch(ckpt: Path, model: str) -> bool:
    """Whether the checkpoint ``ckpt`` holds the architecture that the arch.yaml ``model``
    builds (for the checkpoint's classes): the full arch dict, every conv's shape included."""
    from yoloslim.models.arch import arch_of
    from yoloslim.models.checkpoint import read_checkpoint
    from yoloslim.models.registry import build_model

    try:
        saved = read_checkpoint(ckpt)
        return arch_of(build_model(model, names=saved["names"])) == saved["arch"]
    except Exception as e:  # noqa: BLE001 - an unreadable old run cannot be confirmed
        print(f"{ckpt}: cannot compare its arch with {model} ({e})", file=sys.stderr)
        return False


def adopt_legacy_row(out: Path, model: str, run: str, legacy: str, inputs: dict) -> bool:
    """Keep a seed run filed the old way, under an arch.yaml's bare stem (``legacy``, e.g.
    ``arch_e16_s5``), as ``run`` (``arch-1a2b3c4d_e16_s5``) when it is confirmed to be this
    file's: its run folder's best.pt holds the arch this yaml builds and the row was made on
    the same data (or records no data, as :func:`cached` accepts). Writes ``out/run.json``
    with ``inputs`` and ``adopted_from``; the old files stay. Returns whether it did.

    A legacy row whose run folder is gone (a pooled JSON copied without its folder) cannot be
    confirmed and is not used: that seed is trained again.
    """
    out = Path(out)
    old, new = out / f"{legacy}.json", out / f"{run}.json"
    if new.exists() or not old.exists() or not is_arch_yaml(model):
        return False
    row = json.loads(old.read_text())
    data_id = {k: v for k, v in inputs.items() if k != "model"}
    if row.get("inputs", data_id) != data_id:
        return False
    best = out / legacy / "best.pt"
    if not best.is_file() or not _same_arch(best, model):
        print(
            f"{old} (filed under the stem {Path(model).stem!r} only) is not confirmed to be "
            f"{model}'s run: not used",
            file=sys.stderr,
        )
        return False
    row.pop("cached", None)
    row.update(inputs=inputs, adopted_from=old.name)
    atomic_write_text(new, json.dumps(row, default=str))
    print(f"{old}: its run holds {model}'s arch; kept as {new.name}", file=sys.stderr)
    return True


def seed_run(out: Path, model: str, tag: str, seed: int, data_id: dict) -> tuple[str, dict]:
    """The name (``<model_name>_<tag>_s<seed>``) and the inputs of one seed run of
    train_seeds.py, after adopting its legacy row (:func:`adopt_legacy_row`) if there is one."""
    run = f"{model_name(model)}_{tag}_s{seed}"
    inputs = run_inputs(model, data_id)
    if is_arch_yaml(model):
        adopt_legacy_row(out, model, run, f"{Path(model).stem}_{tag}_s{seed}", inputs)
    return run, inputs


def machine() -> str:
    """Where a row was made: host, CPU or GPU, torch's version (a seed's CPU and GPU runs
    differ: NAS.md)."""
    import platform

    import torch

    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor()
    return f"{platform.node()} / {dev or platform.machine()} / torch {torch.__version__}"


def machines(rows: list[dict]) -> list[str]:
    """The distinct machines ``rows`` were made on (``unrecorded`` for rows from before
    they said), with a warning on stderr when there are several: paired or pooled, their
    differences mix the machines' with the models'."""
    seen = sorted({str(r.get("machine", "unrecorded")) for r in rows})
    if len(seen) > 1:
        print(f"warning: these rows come from {len(seen)} machines: {seen}", file=sys.stderr)
    return seen


def kept_row(out: Path, run: str, inputs: dict) -> dict | None:
    """``out/run.json`` if it was made from ``inputs`` (the rule of :func:`cached`: a row
    recording no inputs is taken as it is), else None."""
    path = Path(out) / f"{run}.json"
    if not path.exists():
        return None
    row = json.loads(path.read_text())
    return row if row.get("inputs", inputs) == inputs else None


def _int_at_least(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"{value} must be >= {low}")
    return value


def positive_int(text: str) -> int:
    """argparse ``type=``: an integer >= 1."""
    return _int_at_least(text, 1)


def nonneg_int(text: str) -> int:
    """argparse ``type=``: an integer >= 0."""
    return _int_at_least(text, 0)


def int_list(text: str) -> list[int]:
    """argparse ``type=``: comma-separated integers, e.g. ``0,1,2``."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give comma-separated integers") from None
    twice = sorted({v for v in values if values.count(v) > 1})
    if twice:  # a seed given twice counted twice in a spread
        raise argparse.ArgumentTypeError(f"{text!r}: {twice} given twice")
    return values


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", default="damo-tiny")
    ap.add_argument(
        "--epochs",
        type=positive_int,
        default=10,
        help="training epochs when the baseline is not kept yet (a kept one is reused)",
    )
    ap.add_argument("--extend", type=nonneg_int, default=0, help="then train this many epochs more")
    args = ap.parse_args()
    problem = model_problem(args.model)  # before the set is made (a traceback after it was)
    if problem:
        ap.error(f"--model {problem}")
    data = synthetic_data()
    kept = _info(args.model) is not None  # an earlier run's baseline: its figures reused
    trained(args.model, args.epochs, data)
    if args.extend:
        extend(args.model, args.extend, data)
    print(json.dumps({**_info(args.model), "reused": kept}))


if __name__ == "__main__":
    main()
