"""Train (or reuse) damo-nano on the synthetic set, export ONNX and OpenVINO, bench all three.

    .venv/bin/python benchmarks/bench_report.py [--epochs 13] [--ckpt CKPT] [--retrain]

Without ``--ckpt`` it trains damo-nano ``--epochs`` epochs into ``OUT/train`` once (an
interrupted training resumes) and reuses that checkpoint on later runs; ``OUT/train/
bench_report_train.json`` records how it was trained. A later ``--epochs`` other than the
kept run's is reported on stderr and the kept checkpoint is still used: ``--retrain``
trains it again. ``--ckpt`` benches a given checkpoint instead (e.g. train_synth.py's
``runs/bench_train/train/best.pt``; it is never retrained). The data set is the benchmarks'
synthetic set (benchmarks/common.py: ``runs/base/data``, 1000 images, 4 classes, 320 px,
seed 0; the same generator settings as train_synth.py's copy) unless ``--data`` is given.

Prints one JSON object: the bench report, plus ``ckpt`` (the checkpoint benched) and
``ckpt_training`` (how it was trained: by this script or given, its epochs, the epoch of its
best.pt, its data), and writes report.md / pareto.png under --out.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from common import data_key, epoch_log, positive_int, resumable, synthetic_data

import yoloslim as ys
from yoloslim.bench.latency import LatencyConfig
from yoloslim.bench.measure import benchmark
from yoloslim.bench.report import write_report
from yoloslim.fileio import atomic_write_text
from yoloslim.models.checkpoint import read_checkpoint


def _own_training(out: Path, data: Path, epochs: int, retrain: bool) -> tuple[Path, dict]:
    """``out/train/best.pt``, trained here unless a finished run of this script is kept."""
    run = out / "train"
    record = run / "bench_report_train.json"
    if record.exists() and (run / "best.pt").exists() and not retrain:
        info = json.loads(record.read_text())
        if info["epochs"] != epochs:
            print(
                f"warning: reusing {run / 'best.pt'} trained {info['epochs']} epochs, not the "
                f"{epochs} asked for (--retrain trains it again)",
                file=sys.stderr,
            )
        return run / "best.pt", {**info, "reused": True}
    cfg = ys.TrainConfig(
        epochs=epochs,
        imgsz=320,
        batch=16,
        cache=True,
        augment={"mosaic": 0.5},
        close_mosaic=min(3, epochs),
        val_interval=2,
    )
    try:  # an interrupted run of this recipe goes on; anything else there is replaced
        resume = not retrain and resumable(run, cfg)
    except ValueError:
        resume = False
    record.unlink(missing_ok=True)
    t0 = time.time()
    res = ys.train(
        None if resume else "damo-nano",  # a resume continues the run's own model
        data,
        config=cfg,
        out=run,
        resume=resume,
        exist_ok=not resume,
        progress=True,
        on_epoch_end=epoch_log("damo-nano", epochs),
    )
    info = {
        "by": "bench_report.py",
        "model": "damo-nano",
        "epochs": epochs,
        "train_s": round(time.time() - t0, 1),
        "resumed": resume,
        "data": str(data),
        "config": cfg.to_dict(),
    }
    atomic_write_text(record, json.dumps(info, default=str))
    return Path(res.best), {**info, "reused": False}


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--ckpt", help="bench this checkpoint (default: train one into OUT/train)")
    ap.add_argument("--data", help="default: the benchmarks' synthetic set (runs/base/data)")
    ap.add_argument("--out", default="runs/bench_report")
    ap.add_argument(
        "--epochs", type=positive_int, default=13, help="training epochs without --ckpt"
    )
    ap.add_argument(
        "--retrain", action="store_true", help="train OUT/train again even when it is kept"
    )
    ap.add_argument(
        "--threads",
        type=positive_int,
        default=len(os.sched_getaffinity(0)),
        help="threads of every runtime timed (default: the cores usable): one count for all",
    )
    args = ap.parse_args()
    if args.ckpt and not Path(args.ckpt).is_file():
        ap.error(f"--ckpt {args.ckpt}: no such file")
    if args.ckpt and args.retrain:
        ap.error("--retrain trains OUT/train; it does not apply to a given --ckpt")
    if args.data and not Path(args.data).is_file():
        ap.error(f"--data {args.data}: no such file")
    out = Path(args.out)
    data = Path(args.data) if args.data else synthetic_data()
    if args.ckpt:
        ckpt, training = Path(args.ckpt), {"by": "given (--ckpt)"}
    else:
        ckpt, training = _own_training(out, data, args.epochs, args.retrain)
    meta = read_checkpoint(ckpt).get("meta") or {}
    trains = [h for h in meta.get("history") or [] if h.get("stage") == "train"]
    training.update(
        ckpt_best_epoch=meta.get("epoch"),  # 0-based epoch of the saved best.pt
        ckpt_history_epochs=[h.get("epochs") for h in trains],
        ckpt_data=meta.get("data"),
    )
    print(f"benching {ckpt} (export, then latency and mAP)", file=sys.stderr)
    exp = ys.export(ckpt, out / "export", formats=["onnx", "openvino"])
    res = benchmark(
        [ckpt, exp.artifacts["onnx"], exp.artifacts["openvino"]],
        data,
        batches=(1, 8),
        # one thread count for torch, ONNX Runtime and OpenVINO (their defaults differ)
        latency=LatencyConfig(rounds=10, runs_per_round=10, threads=args.threads),
    )
    write_report(res.report, out)
    print(
        json.dumps(
            {
                "ckpt": str(ckpt),
                "ckpt_training": training,
                "data": {"path": str(data), **data_key(data)},
                "threads": args.threads,
                **res.report,
            },
            default=str,
        )
    )


if __name__ == "__main__":
    main()
