"""Shared by the benchmark scripts: the synthetic set and a trained baseline, reused when present.

Every compression benchmark starts from "MODEL trained on the synthetic set at 320 px". Training
it once and reusing the checkpoint keeps the scripts runnable one after another on 2 cores:

    .venv/bin/python benchmarks/common.py --model damo-tiny --epochs 10   # trains runs/base/damo-tiny

Prints one JSON object (checkpoint path, mAP, training seconds).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import yoloslim as ys

ROOT = Path("runs/base")
DATA = ROOT / "data" / "data.yaml"


def synthetic_data(path: Path = DATA, images: int = 1000, imgsz: int = 320) -> Path:
    """The default synthetic set (1000 images, 4 classes, seed 0), generated once."""
    path = Path(path)
    if not path.exists():
        ys.synthesize(path.parent, images=images, imgsz=imgsz, classes=4, seed=0)
    return path


def train_config(epochs: int, imgsz: int = 320, **overrides) -> ys.TrainConfig:
    """The benchmarks' common recipe (the one train_synth.py measured)."""
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
    )
    base.update(overrides)
    return ys.TrainConfig(**base)


def trained(model: str, epochs: int, data: Path = DATA, root: Path = ROOT) -> Path:
    """best.pt of `model` trained `epochs` epochs on `data`; trained (resuming) unless finished."""
    out = Path(root) / model
    best, last = out / "best.pt", out / "last.pt"
    done = out / "done.json"
    if done.exists() and best.exists():
        return best
    t0 = time.time()
    ys.train(model, data, config=train_config(epochs), out=out, resume=last.exists(), progress=True)
    metrics = ys.validate(best, data)
    info = {
        "model": model,
        "epochs": epochs,
        "train_s": round(time.time() - t0, 1),
        "map": round(metrics["map"], 4),
        "map50": round(metrics["map50"], 4),
        "ckpt": str(best),
    }
    done.write_text(json.dumps(info))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="damo-tiny")
    ap.add_argument("--epochs", type=int, default=10)
    args = ap.parse_args()
    data = synthetic_data()
    ckpt = trained(args.model, args.epochs, data)
    print((ckpt.parent / "done.json").read_text())


if __name__ == "__main__":
    main()
