"""Zero-shot NAS on the synthetic set: search at damo-nano's FLOPs, train both, rank correlation.

1. ``yoloslim.search`` at 320 px under damo-nano's deploy FLOPs (4 classes).
2. Train the found arch and damo-nano with the same recipe (benchmarks/common.py
   ``train_config``) on the synthetic set; validate both.
3. Kendall tau between the entropy score and the trained mAP over ``--tau-archs``
   architectures sampled from the space under the same budget, each trained
   ``--tau-epochs`` epochs.

Goal (issue 8): searched arch mAP >= damo-nano's at <= its FLOPs; tau as measured.
Heavy: run it under the lock. Each step's result is kept in ``OUT/<step>.json`` and reused, so
an interrupted run picks up where it stopped.

    flock /tmp/yoloslim-heavy.lock .venv/bin/python benchmarks/nas_synth.py [--epochs 6]

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import time
from pathlib import Path

import torch
from common import cached, synthetic_data, train_config

import yoloslim as ys
from yoloslim.models.registry import get_arch
from yoloslim.nas import Budget, SearchSpace, entropy_score, measure_cost
from yoloslim.nas.budget import meta_detector

NC = 4


def kendall_tau(x: list[float], y: list[float]) -> float | None:
    """Kendall's tau-b (ties in either list handled); None with fewer than 2 points."""
    conc = disc = tx = ty = 0
    for (a1, b1), (a2, b2) in itertools.combinations(zip(x, y, strict=True), 2):
        dx, dy = a1 - a2, b1 - b2
        if dx == 0 and dy == 0:
            continue
        if dx == 0:
            tx += 1
        elif dy == 0:
            ty += 1
        elif dx * dy > 0:
            conc += 1
        else:
            disc += 1
    denom = ((conc + disc + tx) * (conc + disc + ty)) ** 0.5
    return (conc - disc) / denom if denom else None


def train_eval(model, data: Path, epochs: int, out: Path) -> dict:
    t0 = time.time()
    torch.manual_seed(0)
    res = ys.train(model, data, config=train_config(epochs), out=out, progress=True)
    m = ys.validate(res.best, data)
    return {
        "map": round(m["map"], 4),
        "map50": round(m["map50"], 4),
        "train_s": round(time.time() - t0, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="runs/bench_nas")
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--population", type=int, default=24)
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--init-repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=6, help="epochs for the found arch and damo-nano")
    ap.add_argument(
        "--tau-archs", type=int, default=6, help="sampled archs for Kendall tau (0: skip)"
    )
    ap.add_argument("--tau-epochs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--widths",
        help="per-stage channel ranges min-max, stem first (default: SearchSpace's), "
        "e.g. 16-32,24-64,48-128,96-256,128-384",
    )
    args = ap.parse_args()
    out = Path(args.out)
    data = synthetic_data()

    nano = get_arch("damo-nano", NC)
    nano_cost = measure_cost(nano, args.imgsz)
    budget = Budget(flops=nano_cost.gflops)
    space, wtag = SearchSpace(), ""
    if args.widths:
        pairs = [tuple(int(v) for v in w.split("-")) for w in args.widths.split(",")]
        space = SearchSpace(widths=tuple(pairs))
        wtag = "_w" + "_".join(f"{a}-{b}" for a, b in pairs)

    def do_search() -> dict:
        res = ys.search(
            imgsz=args.imgsz,
            budget=budget,
            population=args.population,
            iterations=args.iterations,
            seed=args.seed,
            init_repeats=args.init_repeats,
            nc=NC,
            space=space,
            out=out / f"search{wtag}",
            progress=True,
        )
        return {"arch": res.arch, "score": res.score, "report": res.report, "best": res.best}

    tag = f"p{args.population}_i{args.iterations}_s{args.seed}{wtag}"
    res = cached(out, f"search_{tag}", do_search)  # reused when this search already ran
    found_cost = measure_cost(res["arch"], args.imgsz)
    arch_yaml = out / f"search{wtag}" / "arch.yaml"  # trained as a user would: --model arch.yaml
    nano_score = entropy_score(
        meta_detector(nano).backbone, args.imgsz, repeats=args.init_repeats, seed=args.seed
    )["score"]

    result = {
        "imgsz": args.imgsz,
        "budget_gflops": nano_cost.gflops,
        "space_widths": [list(w) for w in space.widths],
        "search": {
            "search_s": res["report"]["search_s"],
            "evaluated": res["report"]["evaluated"],
            "rejected": res["report"]["rejected"],
            "population": args.population,
            "iterations": args.iterations,
        },
        "found": {
            "score": round(res["score"], 3),
            "gflops": found_cost.gflops,
            "params_deploy": found_cost.params_deploy,
            "latency_ms_torch_1t": res["best"][0]["latency_ms"],
            "genome": res["best"][0]["genome"],
            "stages": [
                {k: st[k] for k in ("out", "depth", "kernel", "ratio")}
                for st in res["arch"]["backbone"]["stages"]
            ],
            "arch_yaml": str(arch_yaml),
        },
        "damo_nano": {
            "score": round(nano_score, 3),
            "gflops": nano_cost.gflops,
            "params_deploy": nano_cost.params_deploy,
        },
        "epochs": args.epochs,
    }
    if args.epochs > 0:
        e = args.epochs
        result["found"].update(
            cached(
                out,
                f"found_{tag}_e{e}",
                lambda: train_eval(str(arch_yaml), data, e, out / f"found{wtag}"),
            )
        )
        result["damo_nano"].update(
            cached(out, f"nano_e{e}", lambda: train_eval("damo-nano", data, e, out / "nano"))
        )
        result["goal_met"] = (
            result["found"]["map"] >= result["damo_nano"]["map"]
            and found_cost.gflops <= nano_cost.gflops
        )

    if args.tau_archs > 1:
        rng = random.Random(args.seed + 1)
        sampled, seen = [], set()
        while len(sampled) < args.tau_archs:
            g = space.sample(rng)
            arch = space.arch(g, NC)
            if g in seen or measure_cost(arch, args.imgsz).gflops > budget.flops:
                continue
            seen.add(g)
            score = entropy_score(
                meta_detector(arch).backbone,
                args.imgsz,
                repeats=args.init_repeats,
                seed=args.seed,
            )["score"]
            sampled.append((arch, score))
        rows = []
        for i, (arch, score) in enumerate(sampled):
            m = cached(
                out,
                f"tau_{i}_s{args.seed}_e{args.tau_epochs}{wtag}",
                lambda a=arch, i=i: train_eval(a, data, args.tau_epochs, out / f"tau{wtag}_{i}"),
            )
            rows.append(
                {
                    "score": round(score, 3),
                    "gflops": measure_cost(arch, args.imgsz).gflops,
                    **m,
                }
            )
        result["tau"] = {
            "archs": len(rows),
            "epochs": args.tau_epochs,
            "kendall_tau_map": kendall_tau([r["score"] for r in rows], [r["map"] for r in rows]),
            "rows": rows,
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
