"""Shared by the benchmark scripts: the synthetic set and a trained baseline, reused when present.

Every compression benchmark starts from "MODEL trained on the synthetic set at 320 px". Training
it once and reusing the checkpoint keeps the scripts runnable one after another on 2 cores:

    .venv/bin/python benchmarks/common.py --model damo-tiny --epochs 10   # trains runs/base/damo-tiny
    .venv/bin/python benchmarks/common.py --model damo-tiny --extend 8    # 8 epochs more

Prints one JSON object (checkpoint path, mAP, training seconds).
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


def trained(model: str, epochs: int, data: Path = DATA, root: Path = ROOT) -> Path:
    """The baseline checkpoint of `model` on `data`: trained `epochs` epochs (resuming) unless
    finished; after ``--extend`` it is the extended run's best.pt (done.json says which)."""
    out = Path(root) / model
    best = out / "best.pt"
    info = _info(model, root)
    if info and Path(info["ckpt"]).exists():
        return Path(info["ckpt"])
    t0 = time.time()
    cfg = train_config(epochs)
    ys.train(model, data, config=cfg, out=out, resume=resumable(out, cfg), progress=True)
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
    ys.train(start, data, config=cfg, out=out, resume=resumable(out, cfg), progress=True)
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


def model_name(model: str) -> str:
    """The name a model's runs are filed under: a registered name, or an arch.yaml's stem."""
    return Path(model).stem if model.endswith((".yaml", ".yml")) else model


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", default="damo-tiny")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--extend", type=int, default=0, help="then train this many epochs more")
    args = ap.parse_args()
    data = synthetic_data()
    trained(args.model, args.epochs, data)
    if args.extend:
        extend(args.model, args.extend, data)
    print(json.dumps(_info(args.model)))


if __name__ == "__main__":
    main()
