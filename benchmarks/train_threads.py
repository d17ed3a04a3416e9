"""Training speed by torch intra-op threads and data-loader workers, each setting in its own process.

Trains ``--model`` for ``--epochs`` epochs on the default synthetic set (the benchmarks' recipe,
benchmarks/common.py ``train_config``) once per ``THREADS:WORKERS`` pair of ``--grid``
(``THREADS`` 0: torch's default, all cores) and reports each setting's per-epoch seconds
(the trainer's ``epoch_s``, validation excluded), their median over the epochs after the first
(the first fills the image cache), and its speed relative to the first setting. The settings
run one after another, each in a fresh process, so none competes with another; each setting's
epochs are reported on stderr as they end (the worker's stderr is passed through).

    .venv/bin/python benchmarks/train_threads.py [--grid 0:1,1:1,1:0,2:0] [--epochs 3]

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from common import positive_int, synthetic_data, train_config

import yoloslim as ys


def _grid(text: str) -> list[tuple[int, int]]:
    """argparse ``type=``: THREADS:WORKERS pairs, comma-separated (checked as the flags are
    read, before the data set is made)."""
    pairs = []
    for item in text.split(","):
        threads, sep, workers = item.partition(":")
        if not sep or not threads.isdigit() or not workers.isdigit():
            raise argparse.ArgumentTypeError(f"{item!r} is not THREADS:WORKERS (e.g. 1:1)")
        pairs.append((int(threads), int(workers)))
    return pairs


def worker(model: str, epochs: int, threads: int, workers: int, out: Path) -> dict:
    """One training in this process; the per-epoch times from its metrics.jsonl."""
    data = synthetic_data()
    cfg = train_config(epochs, threads=threads or None, workers=workers, val_interval=epochs)
    t0 = time.time()
    used: list[int] = []  # read while it trains: train() gives the caller its count back

    def epoch_end(epoch: int, row: dict) -> None:
        used.append(torch.get_num_threads())
        print(
            f"setting {threads}:{workers}: epoch {epoch + 1}/{epochs} in {row['epoch_s']} s",
            file=sys.stderr,
            flush=True,
        )

    ys.train(model, data, config=cfg, out=out, exist_ok=True, on_epoch_end=epoch_end)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    epoch_s = [r["epoch_s"] for r in rows]
    return {
        "threads": threads,
        "torch_threads": sorted(set(used)) if len(set(used)) > 1 else used[0],
        "workers": workers,
        "epoch_s": epoch_s,
        "epoch_s_median": round(statistics.median(epoch_s[1:] or epoch_s), 2),
        "train_s": round(time.time() - t0, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", default="runs/bench_threads")
    ap.add_argument("--model", default="damo-nano")
    ap.add_argument("--epochs", type=positive_int, default=3)
    ap.add_argument(
        "--grid", type=_grid, default="0:1,1:1,1:0,2:0", help="THREADS:WORKERS pairs; 0: default"
    )
    # THREADS:WORKERS, run one setting here
    ap.add_argument("--worker", type=_grid, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.epochs < 2:
        ap.error("--epochs must be >= 2 (the first epoch fills the cache and is not counted)")
    out = Path(args.out)
    if args.worker:
        ((threads, workers),) = args.worker
        row = worker(args.model, args.epochs, threads, workers, out / f"t{threads}_w{workers}")
        print(json.dumps(row))
        return

    synthetic_data()  # generated once, before the timed processes
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    rows = []
    for threads, workers in args.grid:
        cmd = [sys.executable, __file__, "--worker", f"{threads}:{workers}", "--out", str(out),
               "--model", args.model, "--epochs", str(args.epochs)]  # fmt: skip
        print(f"setting {threads}:{workers} (threads:workers)", file=sys.stderr, flush=True)
        # its stderr (progress, or the error) goes straight to ours; stdout is its JSON row
        proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True, check=False)
        if proc.returncode:
            raise SystemExit(f"setting {threads}:{workers} failed (its stderr is above)")
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    ref = rows[0]["epoch_s_median"]
    for r in rows:
        r["speedup_vs_first"] = round(ref / r["epoch_s_median"], 3)
    print(
        json.dumps(
            {
                "model": args.model,
                "epochs": args.epochs,
                "cpu_count": os.cpu_count(),
                "note": "threads 0: torch's default (all cores); epoch_s excludes validation",
                "rows": rows,
            }
        )
    )


if __name__ == "__main__":
    main()
