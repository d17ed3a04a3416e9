"""Train damo-nano on the default synthetic set at 320 px and print one JSON object.

Goal (issue 2): mAP50-95 >= 0.60 within 15 minutes on a 2-core CPU.

    .venv/bin/python benchmarks/train_synth.py [--epochs 14] [--out runs/bench_train]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import yoloslim as ys
from yoloslim.bench.flops import model_profile


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", default="runs/bench_train")
    ap.add_argument("--epochs", type=int, default=14)
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr0", type=float, default=0.004)
    ap.add_argument("--mosaic", type=float, default=0.5)
    ap.add_argument(
        "--val-interval", type=int, default=7, help="validate every N epochs (and at the end)"
    )
    args = ap.parse_args()

    out = Path(args.out)
    data = out / "data" / "data.yaml"
    if not data.exists():
        ys.synthesize(out / "data", images=1000, imgsz=args.imgsz, classes=4, seed=0)
    cfg = ys.TrainConfig(
        epochs=args.epochs,
        imgsz=args.imgsz,
        batch=args.batch,
        lr0=args.lr0,
        workers=1,
        cache=True,
        augment={"mosaic": args.mosaic},
        close_mosaic=3,
        val_interval=args.val_interval,
    )
    t0 = time.time()
    res = ys.train("damo-nano", data, config=cfg, out=out / "train", exist_ok=True)
    train_s = time.time() - t0
    metrics = ys.validate(res.best, data)
    prof = model_profile(res.model, imgsz=args.imgsz, nc=res.model.nc)
    print(
        json.dumps(
            {
                "model": "damo-nano",
                "params": prof["params_deploy"],
                "params_train_form": prof["params"],
                "gflops": round(prof["gflops"], 3),
                "gflops_convention": "2 x MACs at imgsz",
                "imgsz": args.imgsz,
                "epochs": args.epochs,
                "train_s_includes": "data loading, validation every --val-interval epochs, checkpoints",
                "train_s": round(train_s, 1),
                "images_per_s": res.report.get("images_per_s"),
                "map": round(metrics["map"], 4),
                "map50": round(metrics["map50"], 4),
                "threads": torch.get_num_threads(),
            }
        )
    )


if __name__ == "__main__":
    main()
