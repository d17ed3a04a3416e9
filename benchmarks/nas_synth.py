"""Zero-shot NAS on the synthetic set: search at damo-nano's FLOPs, train both, rank correlation.

1. ``yoloslim.search`` at 320 px under damo-nano's deploy FLOPs and (default) its layer
   count (4 classes). ``--keep-neck`` keeps damo-nano's neck and head and searches the
   backbone only; ``--init`` seeds the population with damo-nano.
2. Train the found arch and damo-nano with the same recipe (benchmarks/common.py
   ``train_config``, seeds ``--train-seeds``) on the synthetic set; validate both and
   compare them seed by seed (``paired_map``: differences, their mean, sd and paired t).
   ``--train-side found`` / ``damo_nano`` trains one side only, so that the two sides of
   each pair can run side by side (each at ``OMP_NUM_THREADS=1``) into the same cache.
   ``--latency nano`` adds a measured-latency budget: damo-nano's latency (slowest of 5) on
   ``--latency-runtime`` (DAMO-YOLO searches under a latency budget); the found arch and
   damo-nano are then timed again as the other benchmarks time artifacts: each saved
   (random weights; latency does not depend on them) and exported for that runtime (a .pt
   run by PyTorch in deploy form, an ONNX for onnxruntime, an IR for openvino), then timed
   by ``yoloslim.bench.latency.measure_latency``, one spawned worker per model, rounds
   interleaved, at the search's thread count; their medians, p90s and ratio are reported
   (``latency_method`` says how). The search's own budget check measures in process.
3. Kendall tau between the entropy score and the trained mAP over ``--tau-archs``
   architectures sampled from the same space under the same budget (``--tau-with-nano``:
   and damo-nano), each trained ``--tau-epochs`` epochs. ``--tau-shard K/N`` trains every
   N-th of them only (N shards side by side), printing their rows without a tau.
   ``--tau-archs`` is 0 (skip) or at least 2 (a tau needs two archs).

The flags (``--tau-shard``, ``--train-seeds``, ``--tau-archs``, ``--tau-with-nano``'s budget,
the numbers) are checked before the search and the trainings start; progress (the search,
each training) goes to stderr.

Goal (issue 8): searched arch mAP >= damo-nano's at <= its FLOPs; tau as measured.
Heavy: run it alone. Each step's result is kept in ``OUT/<step>.json`` (named by a hash of
the search settings) and reused, so an interrupted run picks up where it stopped.

    .venv/bin/python benchmarks/nas_synth.py --keep-neck --init --ratios 0.5,0.75,1

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import itertools
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import (
    cached,
    data_key,
    int_list,
    nonneg_int,
    paired,
    positive_int,
    recipe_tag,
    synthetic_data,
    train_config,
    train_resuming,
)

import yoloslim as ys
from yoloslim.bench.latency import LatencyConfig, measure_latency
from yoloslim.models import build_model
from yoloslim.models.checkpoint import save_checkpoint
from yoloslim.models.registry import get_arch
from yoloslim.nas import (
    Budget,
    LatencySettings,
    SearchSpace,
    entropy_score,
    genome_dict,
    genome_of,
    measure_cost,
    measure_latency_ms,
)
from yoloslim.nas.budget import meta_detector
from yoloslim.nas.latency import RUNTIMES
from yoloslim.nas.score import SCORE_METHODS

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


def train_eval(
    model, data: Path, epochs: int, out: Path, seed: int = 0, static_assigner: int = 0
) -> dict:
    t0 = time.time()
    torch.manual_seed(seed)
    cfg = train_config(epochs, seed=seed, static_assigner=static_assigner)
    # an interrupted run (hours on a CPU) goes on from its last.pt
    res = train_resuming(model, data, cfg, out, Path(out).name)
    m = ys.validate(res.best, data)
    return {
        "map": round(m["map"], 4),
        "map50": round(m["map50"], 4),
        "train_s": round(time.time() - t0, 1),
    }


def _tag(obj, n: int) -> str:
    """Short stable name of JSON-able settings, for the cache files of the runs they make."""
    return hashlib.sha1(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:n]


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(","))


def _space(args, nano: dict) -> SearchSpace:
    """The searched space: the default one, or damo-nano's neck and head kept fixed."""
    fields: dict = {}
    if args.widths:
        fields["widths"] = tuple(
            tuple(int(v) for v in w.split("-")) for w in args.widths.split(",")
        )
    if args.kernels:
        fields["kernels"] = tuple(int(k) for k in _floats(args.kernels))
    if args.ratios:
        fields["ratios"] = _floats(args.ratios)
    if args.keep_neck:
        return SearchSpace.from_template(nano, **fields)
    return SearchSpace(**fields)


def _sample_archs(
    space: SearchSpace, budget: Budget, n: int, seed: int, imgsz: int, start: dict
) -> list[dict]:
    """``n`` distinct archs within ``budget``, each a random walk of 2-8 mutations from
    ``start`` (damo-nano): the near-budget candidates the search itself compares. Plain
    ``space.sample`` under a tight budget keeps only the smallest corner of the space."""
    rng = random.Random(seed + 1)
    origin = genome_of(start)
    archs, seen = [], {origin}
    for _ in range(100000):
        if len(archs) == n:
            break
        g = origin
        for _ in range(rng.randint(2, 8)):
            g = space.mutate(g, rng)
        arch = space.arch(g, NC)
        if g in seen or budget.violations(measure_cost(arch, imgsz)):
            continue
        seen.add(g)
        archs.append(arch)
    return archs


def _shard(spec: str | None, ap: argparse.ArgumentParser) -> tuple[int, int] | None:
    """``"K/N"`` as (K, N) with 0 <= K < N; None for no sharding."""
    if spec is None:
        return None
    try:
        k, n = (int(v) for v in spec.split("/"))
    except ValueError:
        ap.error(f"--tau-shard {spec!r}: give K/N, e.g. 0/2")
    if not 0 <= k < n:
        ap.error(f"--tau-shard {spec!r}: K must be in 0..N-1")
    return k, n


def _time_artifacts(archs: dict[str, dict], imgsz: int, latency: LatencySettings) -> dict:
    """Each arch saved with random weights and exported for ``latency.runtime``, then all
    timed together by measure_latency (one spawned worker each, rounds interleaved)."""
    fmt = {"onnxruntime": "onnx", "openvino": "openvino"}.get(latency.runtime)
    cfg = LatencyConfig(imgsz=imgsz, rounds=10, runs_per_round=10, threads=latency.threads)
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for key, arch in archs.items():
            torch.manual_seed(0)
            ckpt = save_checkpoint(
                Path(tmp) / key / "model.pt", build_model(arch, nc=NC), imgsz=imgsz
            )
            if fmt is None:  # torch: the checkpoint, run in deploy form
                paths[key] = str(ckpt)
            else:
                exp = ys.export(ckpt, Path(tmp) / key, formats=[fmt], imgsz=imgsz)
                paths[key] = str(exp.artifacts[fmt])
        lat = measure_latency(list(paths.values()), cfg)
    method = (
        f"{latency.runtime} ({fmt or 'checkpoint, deploy form'}), one spawned worker per model, "
        f"{cfg.rounds} interleaved rounds x {cfg.runs_per_round} runs, {cfg.warmup} warm-up "
        f"runs excluded, {latency.threads} thread(s), batch 1, random weights"
    )
    return {"method": method, **{k: lat[p] for k, p in paths.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", default="runs/bench_nas")
    ap.add_argument(
        "--imgsz",
        type=int,
        default=320,
        help="the search's size (its FLOPs and latency); the trainings are at 320, the "
        "benchmarks' recipe",
    )
    ap.add_argument("--population", type=positive_int, default=32)
    ap.add_argument("--iterations", type=nonneg_int, default=500)
    ap.add_argument("--init-repeats", type=positive_int, default=3)
    ap.add_argument(
        "--polish",
        type=nonneg_int,
        default=0,
        help="rounds of steepest ascent over the best's one- and two-gene neighbours (0: none)",
    )
    ap.add_argument(
        "--epochs", type=nonneg_int, default=8, help="epochs for the found arch and damo-nano"
    )
    ap.add_argument(
        "--tau-archs",
        type=nonneg_int,
        default=6,
        help="sampled archs for Kendall tau (0: skip; else at least 2)",
    )
    ap.add_argument("--tau-epochs", type=positive_int, default=6)
    ap.add_argument(
        "--tau-shard",
        help="K/N: train only the tau archs whose index is K mod N (run the N shards side by "
        "side, each at one thread, then without --tau-shard to print tau from the cache)",
    )
    ap.add_argument(
        "--tau-with-nano",
        action="store_true",
        help="add damo-nano itself to the tau archs (it is within its own budget)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--widths",
        help="per-stage channel ranges min-max, stem first (default: SearchSpace's), "
        "e.g. 16-32,24-64,48-128,96-256,128-384",
    )
    ap.add_argument("--kernels", help="kernel choices, e.g. 3 or 3,5 (default: the space's)")
    ap.add_argument("--ratios", help="bottleneck ratio choices, e.g. 0.5,0.75,1")
    ap.add_argument(
        "--stage-weights", default="0,0,1,1,6", help="alpha_i of the score (DAMO-YOLO: 0,0,1,1,16)"
    )
    ap.add_argument(
        "--score-method",
        default="gaussian",
        choices=SCORE_METHODS,
        help="gaussian (MAE-DET's random forward) or analytic (TinyNAS madnas closed form)",
    )
    ap.add_argument(
        "--layers",
        type=int,
        default=-1,
        help="layer budget (deploy backbone convs); -1: damo-nano's, as DAMO-YOLO bounds depth; "
        "0: none",
    )
    ap.add_argument(
        "--effectiveness",
        help="bound on DeepMAD's effectiveness rho (Budget.effectiveness): a number, or 'nano' "
        "for damo-nano's (0.766); default: none",
    )
    ap.add_argument(
        "--latency",
        help="latency budget (ms), or 'nano' for damo-nano's slowest of 5 measurements; "
        "default: none",
    )
    ap.add_argument(
        "--latency-runtime",
        default="torch",
        choices=RUNTIMES,
        help="torch, onnxruntime or openvino (1 thread)",
    )
    ap.add_argument(
        "--keep-neck",
        action="store_true",
        help="keep damo-nano's neck and head, search the backbone only (DAMO-YOLO style)",
    )
    ap.add_argument("--init", action="store_true", help="seed the population with damo-nano")
    ap.add_argument(
        "--train-seeds",
        type=int_list,
        default=[0],
        help="training seeds for the found arch and damo-nano (mean and each reported), e.g. 0,1",
    )
    ap.add_argument(
        "--train-side",
        choices=("both", "found", "damo_nano"),
        default="both",
        help="train only one side (run found and damo_nano side by side, each at one thread, "
        "then both to print the comparison from the cache)",
    )
    ap.add_argument(
        "--static-assigner-epochs",
        type=nonneg_int,
        default=0,
        help="train the pairs and the tau archs with ATSS for this many first epochs "
        "(LossConfig.static_assigner_epochs); their runs are kept under _sa<N> names",
    )
    args = ap.parse_args()
    # checked here, not after the search and the trainings
    shard = _shard(args.tau_shard, ap)
    if args.tau_archs == 1:
        ap.error("--tau-archs 1: a rank correlation needs at least 2 archs (0 skips it)")
    if shard and not args.tau_archs:
        ap.error("--tau-shard without --tau-archs: there is nothing to shard")
    seeds = args.train_seeds
    out = Path(args.out)
    data = synthetic_data()
    data_id = data_key(data)  # cached training rows are reused only on this same set

    nano = get_arch("damo-nano", NC)
    nano_cost = measure_cost(nano, args.imgsz)
    layers = nano_cost.layers if args.layers < 0 else (args.layers or None)
    rho = nano_cost.effectiveness if args.effectiveness == "nano" else args.effectiveness
    try:
        rho = None if rho is None else float(rho)
    except ValueError:
        ap.error(f"--effectiveness {args.effectiveness!r}: give a number or 'nano'")
    latency = LatencySettings(runtime=args.latency_runtime)
    if args.latency not in (None, "nano"):
        try:
            float(args.latency)
        except ValueError:
            ap.error(f"--latency {args.latency!r}: give milliseconds or 'nano'")

    def nano_latency_ms() -> float:
        """The slowest of 5 measurements: the top of damo-nano's own noise band, so that
        damo-nano meets its own budget when the search measures it once more."""
        return max(measure_latency_ms(nano, args.imgsz, latency) for _ in range(5))

    budget = Budget(flops=nano_cost.gflops, layers=layers, effectiveness=rho)
    if args.tau_archs and args.tau_with_nano and budget.violations(nano_cost):
        ap.error(f"--tau-with-nano: damo-nano is over the budget {budget.to_dict()}")
    space = _space(args, nano)
    weights = _floats(args.stage_weights)
    budget_d = budget.to_dict()
    if budget.effectiveness is None:  # keeps the tags of runs from before this budget existed
        del budget_d["effectiveness"]
    static_budget_d = dict(budget_d)
    if args.latency:  # the spec, not the measured number, names the run (the number is noisy)
        budget_d["latency_ms"] = args.latency
        budget_d["latency"] = dataclasses.asdict(latency)
    settings = {
        "imgsz": args.imgsz,
        "budget": budget_d,
        "space": space.to_dict(),
        "stage_weights": list(weights),
        "population": args.population,
        "iterations": args.iterations,
        "init_repeats": args.init_repeats,
        "seed": args.seed,
        "init": ["damo-nano"] if args.init else [],
    }
    if args.score_method != "gaussian":  # absent from the tags of runs from before the option
        settings["score_method"] = args.score_method
    if args.polish:  # likewise: the runs from before polishing existed had none
        settings["polish"] = args.polish
    tag = _tag(settings, 10)

    def do_search() -> dict:
        lat_ms = None
        if args.latency:
            lat_ms = nano_latency_ms() if args.latency == "nano" else float(args.latency)
        res = ys.search(
            imgsz=args.imgsz,
            budget=dataclasses.replace(budget, latency_ms=lat_ms),
            latency=latency,
            population=args.population,
            iterations=args.iterations,
            seed=args.seed,
            init_repeats=args.init_repeats,
            nc=NC,
            space=space,
            stage_weights=weights,
            init="damo-nano" if args.init else None,
            score_method=args.score_method,
            polish=args.polish,
            out=out / f"search_{tag}",
            progress=True,
        )
        return {"arch": res.arch, "score": res.score, "report": res.report, "best": res.best}

    res = cached(out, f"search_{tag}", do_search)  # reused when this search already ran
    found_cost = measure_cost(res["arch"], args.imgsz)
    arch_yaml = out / f"search_{tag}" / "arch.yaml"  # trained as a user would: --model arch.yaml

    def score(arch: dict) -> float:
        bb = meta_detector(arch).backbone
        return entropy_score(
            bb,
            args.imgsz,
            stage_weights=weights,
            repeats=args.init_repeats,
            seed=args.seed,
            method=args.score_method,
        )["score"]

    result = {
        "settings": settings,
        "tag": tag,
        "search": {
            **{
                k: res["report"].get(k)
                for k in ("search_s", "evaluated", "feasible", "rejected", "polish")
            },
            "cached": bool(res.get("cached")),  # read from an earlier run's search_<tag>.json
        },
        "found": {
            "score": round(res["score"], 3),
            "gflops": found_cost.gflops,
            "params_deploy": found_cost.params_deploy,
            "layers": found_cost.layers,
            "effectiveness": round(found_cost.effectiveness, 4),
            "latency_ms": res["best"][0]["latency_ms"],
            "latency_runtime": f"{latency.runtime}, {latency.threads} thread",
            "genome": res["best"][0]["genome"],
            "neck": res["arch"]["neck"]["out"],
            "head_width": res["arch"]["head"]["width"][0],
            "arch_yaml": str(arch_yaml),
        },
        "damo_nano": {
            "score": round(score(nano), 3),
            "gflops": nano_cost.gflops,
            "params_deploy": nano_cost.params_deploy,
            "layers": nano_cost.layers,
            "effectiveness": round(nano_cost.effectiveness, 4),
        },
        "epochs": args.epochs,
    }
    if args.latency:
        result["search"]["latency_budget_ms"] = res["report"]["budget"]["latency_ms"]
        # both timed again as artifacts, one spawned worker each, rounds interleaved
        print("timing the found arch and damo-nano (one worker each)", file=sys.stderr)
        lat = _time_artifacts({"found": res["arch"], "damo_nano": nano}, args.imgsz, latency)
        result["latency_method"] = lat["method"]
        for key in ("found", "damo_nano"):
            result[key]["latency_ms_median"] = round(lat[key]["median"], 3)
            result[key]["latency_ms_p90"] = round(lat[key]["p90"], 3)
            result[key]["latency_precision"] = lat[key]["precision"]
        result["latency_ratio_found_to_nano"] = round(
            result["found"]["latency_ms_median"] / result["damo_nano"]["latency_ms_median"], 3
        )
    if args.epochs > 0:
        e = args.epochs
        sa = args.static_assigner_epochs
        rec = "_" + recipe_tag(e, sa)
        for key, model, name in (
            ("found", str(arch_yaml), f"found_{tag}"),
            ("damo_nano", "damo-nano", "nano"),
        ):
            if args.train_side not in ("both", key):
                continue
            runs = []
            for sd in seeds:
                sfx = f"_s{sd}" if sd else ""  # seed 0 keeps the names of earlier runs
                runs.append(
                    cached(
                        out,
                        f"{name}{rec}{sfx}",
                        lambda m=model, n=name, sd=sd, sfx=sfx: train_eval(
                            m, data, e, out / f"{n}{rec}{sfx}", seed=sd, static_assigner=sa
                        ),
                        inputs=data_id,
                    )
                )
            result[key]["runs"] = [dict(r, seed=sd) for r, sd in zip(runs, seeds, strict=True)]
            for k in ("map", "map50"):
                result[key][k] = round(sum(r[k] for r in runs) / len(runs), 4)
    if args.epochs > 0 and args.train_side == "both":
        # found - damo-nano, seed by seed (each pair trained with the same seed)
        result["paired_map"] = paired(
            [r["map"] for r in result["found"]["runs"]],
            [r["map"] for r in result["damo_nano"]["runs"]],
        )
        result["goal_met"] = (
            result["found"]["map"] >= result["damo_nano"]["map"]
            and found_cost.gflops <= nano_cost.gflops
        )

    if args.tau_archs > 1:
        # sampled from the same space under the same budget; the tag covers both
        # sampled under the static budgets only (latency is not measured for them)
        ttag = _tag([settings["space"], static_budget_d, args.seed], 8)
        rows = []
        archs = _sample_archs(space, budget, args.tau_archs, args.seed, args.imgsz, nano)
        names = [f"tau_{ttag}_{i}" for i in range(len(archs))]
        if args.tau_with_nano:  # its own name: damo-nano's run does not depend on the space
            archs, names = [*archs, nano], [*names, "tau_nano"]
        sa, te = args.static_assigner_epochs, args.tau_epochs
        for i, (arch, name) in enumerate(zip(archs, names, strict=True)):
            if shard and i % shard[1] != shard[0]:
                continue
            run = f"{name}_{recipe_tag(te, sa)}"  # e<E> as before; _sa<N> with ATSS first
            m = cached(
                out,
                run,
                lambda a=arch, r=run: train_eval(a, data, te, out / r, static_assigner=sa),
                inputs=data_id,
            )
            rows.append(
                {
                    "name": "damo-nano" if name == "tau_nano" else name,
                    "score": round(score(arch), 3),
                    "gflops": measure_cost(arch, args.imgsz).gflops,
                    "genome": genome_dict(genome_of(arch)),
                    **m,
                }
            )
        maps = [r["map"] for r in rows]

        def tau_against(key: str) -> float | None:  # a shard's rows are a part: no tau
            return None if shard else kendall_tau([r[key] for r in rows], maps)

        result["tau"] = {
            "archs": len(rows),
            "epochs": te,
            "static_assigner_epochs": sa,
            "shard": args.tau_shard,
            "kendall_tau_map": tau_against("score"),
            # context: how much of the ranking FLOPs alone would give
            "kendall_tau_gflops_map": tau_against("gflops"),
            "rows": rows,
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
