"""compress with recipes/cpu-int8.yaml on damo-tiny trained on the synthetic set; one JSON object.

Goal (issue 9): final latency <= 1/3 of the baseline's OpenVINO float latency, size <= 10 %
of the float file, mAP50-95 drop <= 0.5 points.

    .venv/bin/python benchmarks/compress_synth.py [--finetune-epochs 3] [--ratio R] [--out DIR]

The baseline comes from benchmarks/common.py (trained once, reused).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import yaml
from common import synthetic_data, trained

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
    ap.add_argument("--base-epochs", type=int, default=6, help="baseline training (if not cached)")
    ap.add_argument("--finetune-epochs", type=int, default=3)
    ap.add_argument("--ratio", type=float, help="prune ratio (default: the recipe's)")
    ap.add_argument("--out", default="runs/bench_compress")
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args()

    data = synthetic_data()
    base = trained(args.model, args.base_epochs, data)
    recipe = yaml.safe_load(RECIPE.read_text())
    for stage in recipe["stages"]:
        if "prune" in stage:
            stage["prune"]["finetune_epochs"] = args.finetune_epochs
            if args.ratio is not None:
                stage["prune"]["ratio"] = args.ratio
    t0 = time.time()
    res = run_recipe(base, data, load_recipe(recipe), out=args.out, resume=args.resume)
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
                "baseline": _row(b),
                "final": _row(f),
                "all_rows": [_row(r) for r in rows],
                "speedup_vs_ov_float": round(speed, 3),
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
