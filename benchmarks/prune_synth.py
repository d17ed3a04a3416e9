"""Pruning damo-tiny (trained on the synthetic set) to about half its FLOPs: width, depth, both.

    flock /tmp/yoloslim-heavy.lock .venv/bin/python benchmarks/prune_synth.py [--epochs 3]

Starts from the damo-tiny baseline (benchmarks/common.py; waits for its done.json and takes the
checkpoint it names, the extended run's after ``--extend``),
prunes it three ways, fine-tunes each ``--epochs`` epochs, then exports the baseline and
the three pruned models to OpenVINO and times all four together at batch 1 (one worker
process per artifact, interleaved rounds). Prints one JSON object.

- width: channel pruning (Torch-Pruning DepGraph, ``--criterion``) to ``--flops-frac`` of the FLOPs.
- depth: removal of ``--depth-ratio`` of the residual blocks (the lowest skip-loss first);
  damo-tiny's blocks hold only ~43 % of its FLOPs, so depth alone cannot reach ~50 %.
- both: ``--both-depth-ratio`` of the blocks, then channels to ``--flops-frac`` of the FLOPs.

Goal (issue 5): mAP50-95 drop <= 1.0 point after fine-tuning and OpenVINO latency -35 %
at 320 px, batch 1. The JSON states whether each variant met it; figures are measured.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import common

import yoloslim as ys
from yoloslim.bench.flops import model_profile
from yoloslim.bench.latency import LatencyConfig, measure_latency, system_info
from yoloslim.compress.prune import PruneConfig, prune

BASE = Path("runs/base/damo-tiny")
DATA = Path("runs/base/data/data.yaml")


def _wait(done: Path, timeout_s: float) -> None:
    t0 = time.time()
    if not done.exists():
        print(
            f"waiting up to {timeout_s:.0f} s for {done} (benchmarks/common.py trains the "
            "baseline; --wait sets the wait)",
            file=sys.stderr,
        )
    while not done.exists():
        if time.time() - t0 > timeout_s:
            raise SystemExit(f"{done} did not appear within {timeout_s:.0f} s")
        time.sleep(30)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--ckpt", type=Path, help="default: the baseline BASE/done.json names (common.py)"
    )
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--out", type=Path, default=Path("runs/prune_synth"))
    ap.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs per variant")
    ap.add_argument("--flops-frac", type=float, default=0.5)
    ap.add_argument("--criterion", default="l2")
    ap.add_argument("--depth-ratio", type=float, default=0.5)
    ap.add_argument("--both-depth-ratio", type=float, default=0.5)
    ap.add_argument("--variants", default="width,depth,both")
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--wait", type=float, default=5400, help="seconds to wait for the baseline")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.ckpt is None:  # the extended run's after common.py --extend, as the others use
        _wait(BASE / "done.json", args.wait)
        args.ckpt = common.baseline_ckpt()

    finetune = {"cache": True, "augment": {"mosaic": 0.5}, "workers": 1}
    shared = dict(
        criterion=args.criterion,
        finetune_epochs=args.epochs,
        imgsz=args.imgsz,
        latency=False,  # timed below, all artifacts in one run
        advanced={"finetune": finetune},
    )
    base_gflops = model_profile(ys.load_checkpoint(args.ckpt)[0], args.imgsz)["gflops"]
    target = round(base_gflops * args.flops_frac, 4)
    plans = {
        "width": dict(target_flops=target),
        "depth": dict(method="depth", depth_ratio=args.depth_ratio),
        "both": dict(target_flops=target, depth_ratio=args.both_depth_ratio),
    }
    results, ckpts, seconds = {}, {"baseline": args.ckpt}, {}
    for name in args.variants.split(","):
        t0 = time.time()
        res = prune(
            args.ckpt,
            args.data,
            config=PruneConfig(**shared, **plans[name]),
            out=args.out / name,
        )
        seconds[name] = round(time.time() - t0, 1)
        results[name] = res.report
        ckpts[name] = res.artifacts["checkpoint"]

    arts = {}
    for name, ck in ckpts.items():
        exp = ys.export(ck, args.out / "openvino" / name, formats=["openvino"], imgsz=args.imgsz)
        arts[name] = exp.artifacts["openvino"]
    lat_cfg = LatencyConfig(imgsz=args.imgsz, rounds=args.rounds, runs_per_round=10)
    lat = measure_latency([str(p) for p in arts.values()], lat_cfg)
    lat = {name: lat[str(p)] for name, p in arts.items()}

    before = next(iter(results.values()))["stages"]["before"]
    base_ms = lat["baseline"]["median"]
    rows = {
        "baseline": {
            "params": before["params"],
            "gflops": round(before["gflops"], 4),
            "map": round(before["map"], 4),
            "map50": round(before["map50"], 4),
            "openvino_ms": round(base_ms, 3),
            "precision": lat["baseline"]["precision"],
        }
    }
    for name, rep in results.items():
        st = rep["stages"]
        final = st.get("finetuned", st["pruned"])
        ms = lat[name]["median"]
        drop = 100 * (before["map"] - final["map"])
        cut = 1 - ms / base_ms
        rows[name] = {
            "params": final["params"],
            "gflops": round(final["gflops"], 4),
            "gflops_frac": round(final["gflops"] / before["gflops"], 3),
            "map_pruned_before_finetune": round(st["pruned"]["map"], 4),
            "map": round(final["map"], 4),
            "map50": round(final["map50"], 4),
            "map_drop_points": round(drop, 2),
            "openvino_ms": round(ms, 3),
            "openvino_p90_ms": round(lat[name]["p90"], 3),
            "latency_reduction": round(cut, 3),
            "blocks_removed": sum(
                len(s.get("depth", {}).get("removed", [])) for s in rep["schedule"]["steps"]
            ),
            "width_ratio": [s["width"]["ratio"] for s in rep["schedule"]["steps"] if "width" in s],
            # the goal is after fine-tuning: without it there is nothing to judge
            "goal_met": drop <= 1.0 and cut >= 0.35 if args.epochs > 0 else None,
            "seconds": seconds[name],
        }
    print(
        json.dumps(
            {
                "benchmark": "prune_synth",
                "model": "damo-tiny",
                "baseline_ckpt": str(args.ckpt),
                "imgsz": args.imgsz,
                "finetune_epochs": args.epochs,
                "criterion": args.criterion,
                "target_gflops": target,
                "results": rows,
                "goal": "mAP50-95 drop <= 1.0 point and OpenVINO latency -35 % (320 px, batch 1)",
                "latency_method": (
                    f"OpenVINO, one spawned worker per artifact, {lat_cfg.rounds} interleaved rounds x "
                    f"{lat_cfg.runs_per_round} runs, {lat_cfg.warmup} warm-up runs excluded"
                ),
                "note": "FLOPs are not speed: latency is measured, never inferred from GFLOPs.",
                "system": system_info(),
            }
        )
    )


if __name__ == "__main__":
    main()
