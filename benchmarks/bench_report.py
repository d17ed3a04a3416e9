"""Train (or reuse) damo-nano on the synthetic set, export ONNX and OpenVINO, bench all three.

    .venv/bin/python benchmarks/bench_report.py [--ckpt runs/bench_train/train/best.pt]

Prints the report JSON (one object) and writes report.md / pareto.png under --out.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yoloslim as ys
from yoloslim.bench.latency import LatencyConfig
from yoloslim.bench.measure import benchmark
from yoloslim.bench.report import write_report


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--ckpt", default="runs/bench_train/train/best.pt", help="reused when it exists"
    )
    ap.add_argument("--data", default="runs/bench_train/data/data.yaml")
    ap.add_argument("--out", default="runs/bench_report")
    ap.add_argument("--epochs", type=int, default=13, help="training epochs when --ckpt is missing")
    args = ap.parse_args()
    out = Path(args.out)
    ckpt, data = Path(args.ckpt), Path(args.data)
    if not data.exists():
        data = ys.synthesize(data.parent, images=1000, imgsz=320, seed=0)
    if not ckpt.exists():
        cfg = ys.TrainConfig(
            epochs=args.epochs,
            imgsz=320,
            batch=16,
            cache=True,
            augment={"mosaic": 0.5},
            close_mosaic=3,
            val_interval=2,
        )
        ckpt = ys.train("damo-nano", data, config=cfg, out=out / "train", exist_ok=True).best
    exp = ys.export(ckpt, out / "export", formats=["onnx", "openvino"])
    res = benchmark(
        [ckpt, exp.artifacts["onnx"], exp.artifacts["openvino"]],
        data,
        batches=(1, 8),
        latency=LatencyConfig(rounds=10, runs_per_round=10),
    )
    write_report(res.report, out)
    print(json.dumps(res.report, default=str))


if __name__ == "__main__":
    main()
