"""How much one training recipe's result moves with the seed: train a model once per seed.

Every comparison of two architectures (``nas_synth.py``) or two recipes is only as sharp as
this spread. Trains ``--model`` on the default synthetic set (benchmarks/common.py
``train_config``, 320 px) for ``--epochs`` epochs at each of ``--seeds``, validates each best.pt
and prints one JSON object: per-seed mAP50-95 / mAP50, their mean, sd, min and max.

Each run's result is kept in ``OUT/<name>_e<E>[_sa<N>]_s<seed>.json`` (its run folder beside
it) and reused; run several seeds side by side with ``--seeds 0,2`` and ``--seeds 1,3`` (with
``OMP_NUM_THREADS=1``), then once more with all the seeds to print the summary from the cache.
``<name>`` is a registered model's name, or for an arch.yaml its stem and the first 8 hex
digits of the sha1 of the file's bytes (``arch-1a2b3c4d``): every search writes an
``arch.yaml``, and two of them are two models. A kept row records what it was made from
(``inputs``: the data set, and for an arch.yaml the file's sha1) and is made again when
those differ.

Rows kept before yaml models were named by content (``arch_e16_s5.json``, under the bare
stem) are used only where they are confirmed to be this file's: their run folder's best.pt
must hold the arch the yaml builds (they are then copied under the new name with
``adopted_from``). A legacy row without its run folder (a JSON copied from another host)
cannot be confirmed: that seed is trained again. Rows of registered names keep their names.

    .venv/bin/python benchmarks/train_seeds.py --epochs 16 --seeds 0,1,2,3
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from common import (
    cached,
    data_key,
    int_list,
    machines,
    model_problem,
    nonneg_int,
    positive_int,
    recipe_tag,
    seed_run,
    synthetic_data,
    train_config,
    train_resuming,
)

import yoloslim as ys
from yoloslim.train.trainer import resolve_device


def spread(values: list[float]) -> dict:
    """mean, sample sd (None for one value), min and max, rounded to 4 places."""
    if not values:
        raise ValueError("spread: no values")
    sd = statistics.stdev(values) if len(values) > 1 else None
    return {
        "mean": round(statistics.fmean(values), 4),
        "sd": None if sd is None else round(sd, 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--model",
        default="damo-nano",
        help="a registered name or an arch.yaml (filed as <stem>-<sha1 of its bytes, 8 digits>)",
    )
    ap.add_argument("--epochs", type=positive_int, default=16)
    ap.add_argument(
        "--seeds", type=int_list, default=[0, 1, 2, 3], help="comma-separated training seeds"
    )
    ap.add_argument("--out", default="runs/bench_seeds")
    ap.add_argument(
        "--static-assigner-epochs",
        type=nonneg_int,
        default=0,
        help="LossConfig.static_assigner_epochs (ATSS first); runs kept under a _sa<N> name",
    )
    args = ap.parse_args()
    seeds = args.seeds
    if problem := model_problem(args.model):
        ap.error(f"--model {problem}")
    out = Path(args.out)
    data = synthetic_data()

    sa = args.static_assigner_epochs
    tag = recipe_tag(args.epochs, sa)
    data_id = data_key(data)  # a kept run is reused only on this same set (and yaml file)
    runs = {s: seed_run(out, args.model, tag, s, data_id) for s in seeds}

    def run(seed: int) -> dict:
        torch.manual_seed(seed)
        cfg = train_config(args.epochs, seed=seed, static_assigner=sa)
        t0 = time.time()
        folder = out / runs[seed][0]
        res = train_resuming(args.model, data, cfg, folder, runs[seed][0])
        m = ys.validate(res.best, data)
        curve = [
            json.loads(line)
            for line in (folder / "metrics.jsonl").read_text().splitlines()
            if line.strip()
        ]
        return {
            "map": round(m["map"], 4),
            "map50": round(m["map50"], 4),
            "train_s": round(time.time() - t0, 1),
            "val_curve": [[r["epoch"], r["map"]] for r in curve if r.get("map") is not None],
        }

    rows = {}
    for s in seeds:
        name, inputs = runs[s]
        rows[s] = cached(out, name, lambda s=s: run(s), inputs=inputs)
    print(
        json.dumps(
            {
                "model": args.model,
                "runs": [runs[s][0] for s in seeds],  # the cached rows' names under --out
                "device": str(resolve_device("auto")),  # this run's; each row's below
                "machines": machines(list(rows.values())),
                "epochs": args.epochs,
                "recipe": train_config(args.epochs, static_assigner=sa).to_dict(),
                "seeds": seeds,
                "map": [rows[s]["map"] for s in seeds],
                "map50": [rows[s]["map50"] for s in seeds],
                "map_spread": spread([rows[s]["map"] for s in seeds]),
                "map50_spread": spread([rows[s]["map50"] for s in seeds]),
                "train_s": [rows[s]["train_s"] for s in seeds],
                "cached_seeds": [s for s in seeds if rows[s].get("cached")],
                "adopted_seeds": [s for s in seeds if rows[s].get("adopted_from")],
            }
        )
    )


if __name__ == "__main__":
    main()
