"""Whether the EMA's warm-up length matters on a short run: train damo-nano with the demo's
settings (the synthetic set of ``--images`` images at ``--imgsz``, ``--epochs`` epochs, batch
16, mosaic closed for the last 2) once per ``--taus`` x ``--seeds`` and print one JSON object
with each run's mAP50-95 / mAP50 of best.pt on val (x100), and per tau their mean.

The default ``ema_tau`` (2000 steps, YOLOv5/YOLOv8's) leaves a 240-step run's average at decay
0.11: nearly its last step's weights. A tau of a fifth of the run averages over its last steps.

    .venv/bin/python benchmarks/ema_tau.py --taus 2000,50 --seeds 0,1
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from common import int_list, machine, positive_int

import yoloslim as ys
from yoloslim.data.synth import synthesize
from yoloslim.train import TrainConfig


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--taus", default="2000,50", help="comma-separated ema_tau values (steps)")
    ap.add_argument("--seeds", type=int_list, default=[0, 1])
    ap.add_argument("--epochs", type=positive_int, default=12)
    ap.add_argument("--images", type=positive_int, default=400)
    ap.add_argument("--imgsz", type=positive_int, default=320)
    ap.add_argument("--out", default="runs/bench_ema_tau")
    args = ap.parse_args()
    taus = [float(t) for t in args.taus.split(",")]
    out = Path(args.out)
    data = out / "data" / "data.yaml"
    if not data.exists():
        synthesize(out / "data", images=args.images, imgsz=args.imgsz, seed=0)
    runs, t0 = [], time.time()
    for tau in taus:
        for seed in args.seeds:
            cfg = TrainConfig(
                epochs=args.epochs,
                imgsz=args.imgsz,
                batch=16,
                close_mosaic=2,
                cache=True,
                seed=seed,
                ema_tau=tau,
            )
            run = out / f"tau{tau:g}_s{seed}"
            res = ys.train("damo-nano", data, config=cfg, out=run, exist_ok=True, progress=False)
            m = ys.validate(res.best, data, imgsz=args.imgsz)
            runs.append(
                {
                    "ema_tau": tau,
                    "seed": seed,
                    "map": round(100 * m["map"], 2),
                    "map50": round(100 * m["map50"], 2),
                }
            )
    means = {
        f"{tau:g}": round(statistics.fmean(r["map"] for r in runs if r["ema_tau"] == tau), 2)
        for tau in taus
    }
    print(
        json.dumps(
            {
                "settings": vars(args),
                "runs": runs,
                "mean_map_by_tau": means,
                "seconds": round(time.time() - t0),
                "machine": machine(),
            }
        )
    )


if __name__ == "__main__":
    main()
