"""compress with recipes/cpu-int8.yaml on damo-tiny trained on the synthetic set; one JSON object.

Goal (issue 9): final latency <= 1/3 of the baseline's OpenVINO latency, size <= 10 %
of the float file, mAP50-95 drop <= 0.5 points.

    .venv/bin/python benchmarks/compress_synth.py [--finetune-epochs 3] [--ratio R] [--out DIR]

The baseline comes from benchmarks/common.py (trained once, reused): ``--base-epochs`` only
applies when ``runs/base/MODEL`` holds no finished baseline yet; a kept baseline trained for
another number of epochs is used anyway, with a warning on stderr. The JSON's
``baseline_training`` says which checkpoint was compressed and how it was trained (epochs in
all and of its first training, mAP50-95 when it finished): goals met on a barely trained
baseline say little.

``speedup_vs_ov_baseline`` is the baseline row's median latency over the final artifact's:
the baseline is the float checkpoint's OpenVINO IR run at the plugin's default inference
precision, which is f32 on AVX2-only CPUs but bf16 on CPUs with AVX512-BF16 or AMX (the
row's ``precision`` says which). It was called ``speedup_vs_ov_float`` before, which
claimed float where the baseline ran in bf16.

``--resume`` replays the stages the run in ``--out`` already finished; the JSON's
``resumed`` lists them (``bench_replayed``: the figures come from that earlier run, and
``wall_s`` is this run's only). Progress (stage by stage, progress bars) goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

import yaml
from common import (
    baseline_training,
    data_key,
    nonneg_int,
    positive_int,
    synthetic_data,
    trained,
)

from yoloslim.errors import YoloslimError
from yoloslim.pipeline import load_recipe, run_recipe

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "cpu-int8.yaml"


def _row(r: dict) -> dict:
    return {
        "name": r["name"],
        "params": r.get("params"),
        "gflops": r.get("gflops"),
        "size_mb": r["size_mb"],
        "latency_ms_median": r["latency_ms"]["median"],
        "latency_ms_p90": r["latency_ms"]["p90"],
        "precision": r.get("precision"),
        "map": r.get("map"),
        "map50": r.get("map50"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", default="damo-tiny")
    ap.add_argument(
        "--base-epochs",
        type=positive_int,
        default=6,
        help="baseline training (if not kept yet; a kept one is used, with a warning)",
    )
    ap.add_argument("--finetune-epochs", type=nonneg_int, default=3)
    ap.add_argument("--ratio", type=float, help="prune ratio (default: the recipe's)")
    ap.add_argument("--out", default="runs/bench_compress")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument(
        "--threads",
        type=positive_int,
        default=len(os.sched_getaffinity(0)),
        help="threads of the bench stage's runtimes (default: the cores usable)",
    )
    args = ap.parse_args()
    if args.ratio is not None and not 0 < args.ratio < 1:
        ap.error(f"--ratio {args.ratio}: give a fraction between 0 and 1")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("yoloslim.pipeline").setLevel(logging.INFO)  # "stage 2/4: export"

    data = synthetic_data()
    base = trained(args.model, args.base_epochs, data)  # warns when the kept one differs
    base_info = baseline_training(args.model)
    recipe = yaml.safe_load(RECIPE.read_text())
    for stage in recipe["stages"]:
        if "prune" in stage:
            stage["prune"]["finetune_epochs"] = args.finetune_epochs
            if args.ratio is not None:
                stage["prune"]["ratio"] = args.ratio
        if "bench" in stage:  # pinned: each runtime's own default is not the same
            stage["bench"]["threads"] = args.threads
    # which stages a resume replays: their stage.json is not written again
    before = {p: p.stat().st_mtime_ns for p in Path(args.out).glob("[0-9][0-9]-*/stage.json")}
    t0 = time.time()
    try:
        res = run_recipe(
            base, data, load_recipe(recipe), out=args.out, resume=args.resume, progress=True
        )
    except YoloslimError as e:  # e.g. --out holds a run: one line, not a traceback
        raise SystemExit(f"compress_synth: {type(e).__name__}: {e}") from None
    replayed = sorted(
        p.parent.name for p, t in before.items() if p.exists() and p.stat().st_mtime_ns == t
    )
    rows = res.report["bench"]["rows"]
    b, f = rows[0], rows[-1]
    speed = b["latency_ms"]["median"] / f["latency_ms"]["median"]
    size = f["size_mb"] / b["size_mb"]
    drop = 100 * (b["map"] - f["map"])
    print(
        json.dumps(
            {
                "recipe": "cpu-int8",
                "model": args.model,
                "finetune_epochs": args.finetune_epochs,
                "prune_ratio": next(  # the ratio the recipe ran (--ratio, else the recipe's)
                    (st["prune"].get("ratio") for st in recipe["stages"] if "prune" in st), None
                ),
                "wall_s": round(time.time() - t0, 1),
                "baseline_training": base_info,
                "data": {"path": str(data), **data_key(data)},
                "threads": args.threads,
                "resumed": {
                    "replayed_stages": replayed,
                    "bench_replayed": any(n.endswith("-bench") for n in replayed),
                }
                if args.resume
                else None,
                "baseline": _row(b),
                "final": _row(f),
                "all_rows": [_row(r) for r in rows],
                # against the baseline row: OpenVINO at the plugin's default precision
                "speedup_vs_ov_baseline": round(speed, 3),
                "baseline_precision": b.get("precision"),
                "size_ratio": round(size, 4),
                "map_drop_points": round(drop, 2),
                "goals": {
                    "latency_le_1_3": speed >= 3.0,
                    "size_le_10pct": size <= 0.10,
                    "drop_le_0_5": drop <= 0.5,
                },
                "system": res.report["bench"]["system"],
            },
            default=str,
        )
    )


if __name__ == "__main__":
    main()
