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

``--variants`` is checked before any work. A variant's folder ``OUT/<variant>`` that holds a
pruned model is refused (as ``prune`` refuses it) unless ``--exist-ok`` (prune it again,
replacing it) or ``--resume``: a variant that finished with the same baseline checkpoint
(sha1), data and prune settings (``OUT/<variant>/prune_synth.json`` records them) is reused,
the others are pruned again; the JSON's ``reused_variants`` lists the reused ones (their
``seconds`` are the earlier run's). The timing is always new. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import time
from pathlib import Path

import common
from common import nonneg_int, positive_int

import yoloslim as ys
from yoloslim.bench.flops import model_profile
from yoloslim.bench.latency import LatencyConfig, measure_latency, system_info
from yoloslim.compress.prune import PruneConfig, prune
from yoloslim.fileio import atomic_write_text

BASE = Path("runs/base/damo-tiny")
VARIANTS = ("width", "depth", "both")
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
    ap.add_argument("--epochs", type=nonneg_int, default=3, help="fine-tuning epochs per variant")
    ap.add_argument("--flops-frac", type=float, default=0.5)
    ap.add_argument("--criterion", default="l2")
    ap.add_argument("--depth-ratio", type=float, default=0.5)
    ap.add_argument("--both-depth-ratio", type=float, default=0.5)
    ap.add_argument("--variants", default="width,depth,both", help="of width, depth, both")
    ap.add_argument("--imgsz", type=positive_int, default=320)
    ap.add_argument("--rounds", type=positive_int, default=15)
    ap.add_argument(
        "--threads",
        type=positive_int,
        default=len(os.sched_getaffinity(0)),
        help="OpenVINO threads for the latency (default: this machine's usable cores)",
    )
    ap.add_argument("--wait", type=float, default=5400, help="seconds to wait for the baseline")
    again = ap.add_mutually_exclusive_group()
    again.add_argument(
        "--exist-ok", action="store_true", help="prune every variant again, replacing OUT/<v>"
    )
    again.add_argument(
        "--resume",
        action="store_true",
        help="reuse the variants that finished with the same inputs; prune the others again",
    )
    args = ap.parse_args()
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or len(set(variants)) < len(variants):
        ap.error(f"--variants {args.variants}: give distinct names of {', '.join(VARIANTS)}")
    held = [v for v in variants if (args.out / v / "pruned.pt").exists()]
    if held and not (args.exist_ok or args.resume):
        ap.error(
            f"{args.out} already holds pruned {', '.join(held)}: pass --resume (reuse finished "
            "variants), --exist-ok (prune them again) or another --out"
        )
    if args.ckpt is not None and not args.ckpt.is_file():
        ap.error(f"--ckpt {args.ckpt}: no such file")
    if not args.data.is_file():  # found by prune after the baseline was loaded before
        ap.error(
            f"--data {args.data}: no such file (benchmarks/common.py makes the default, the "
            "synthetic set, as it trains the baseline; a --ckpt needs its --data)"
        )
    if not 0 < args.flops_frac < 1:
        ap.error(f"--flops-frac {args.flops_frac}: give a fraction between 0 and 1")
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
    results, ckpts, seconds, reused = {}, {"baseline": args.ckpt}, {}, []
    base_sha1 = hashlib.sha1(Path(args.ckpt).read_bytes()).hexdigest()
    for name in variants:
        cfg = PruneConfig(**shared, **plans[name])
        inputs = {"ckpt_sha1": base_sha1, "data": str(args.data), "config": cfg.to_dict()}
        record = args.out / name / "prune_synth.json"
        if args.resume and record.exists():
            kept = json.loads(record.read_text())
            if kept["inputs"] == inputs and Path(kept["checkpoint"]).exists():
                print(f"{name}: reusing {kept['checkpoint']}", file=sys.stderr)
                results[name] = json.loads((args.out / name / "prune_report.json").read_text())
                ckpts[name], seconds[name] = kept["checkpoint"], kept["seconds"]
                reused.append(name)
                continue
        print(f"{name}: pruning and fine-tuning {args.epochs} epochs", file=sys.stderr)
        record.unlink(missing_ok=True)
        t0 = time.time()
        res = prune(
            args.ckpt,
            args.data,
            config=cfg,
            out=args.out / name,
            exist_ok=args.exist_ok or args.resume,
            progress=True,
        )
        seconds[name] = round(time.time() - t0, 1)
        results[name] = res.report
        ckpts[name] = res.artifacts["checkpoint"]
        row = {"inputs": inputs, "checkpoint": str(ckpts[name]), "seconds": seconds[name]}
        atomic_write_text(record, json.dumps(row, default=str))

    arts = {}
    print("exporting and timing the baseline and the variants", file=sys.stderr)
    for name, ck in ckpts.items():
        exp = ys.export(ck, args.out / "openvino" / name, formats=["openvino"], imgsz=args.imgsz)
        arts[name] = exp.artifacts["openvino"]
    # threads fixed and reported, as every other latency script's (OpenVINO's default varies)
    lat_cfg = LatencyConfig(
        imgsz=args.imgsz, rounds=args.rounds, runs_per_round=10, threads=args.threads
    )
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
                "threads": args.threads,
                "finetune_epochs": args.epochs,
                "reused_variants": reused,
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
