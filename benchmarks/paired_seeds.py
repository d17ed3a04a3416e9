"""Two models trained on the same seeds, several runs at a time: their paired difference.

One pair of runs says little: on the synthetic set one recipe moves 2-5 mAP points from
seed to seed (train_seeds.py), more than most architecture changes. This trains ``--a`` and
``--b`` (registered names or arch.yaml files) at each of ``--seeds`` by running
train_seeds.py, ``--slots`` runs at a time, each in its own process at one thread (on the
GPU when torch sees one), in pair order so that pairs finish together. Runs are cached by
train_seeds.py (``OUT/<name>_e<E>[_sa<N>]_s<seed>.json``; ``<name>`` is a registered name, or
an arch.yaml's stem and the sha1 of its bytes, ``arch-1a2b3c4d``, see train_seeds.py) and an
interrupted one resumes. A cached row is used only when the inputs it records (the data
set's identity and, for an arch.yaml, the file's sha1) are this run's; any other is launched
again (train_seeds.py remakes it). Legacy rows filed under an arch.yaml's bare stem are used
only where train_seeds.py can confirm them (their run folder's best.pt holds this arch).
``--deadline`` stops the runs still going after that many seconds; the seeds with both runs
done are compared.

Prints one JSON object: each model's per-seed mAP50-95 and spread, ``paired``: the
differences a - b, their mean, sd, paired t and how often a is ahead, ``runs``: the two
models' cached row names, and the runs ``failed`` (exited non-zero, or left no row made from
this run's inputs; their logs under ``OUT/logs``) and ``stopped`` (by ``--deadline``).

    .venv/bin/python benchmarks/paired_seeds.py --a runs/nas/arch.yaml --b damo-nano \\
        --seeds 5-8 --slots 2
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from common import (
    data_key,
    kept_row,
    machines,
    model_name,
    model_problem,
    nonneg_int,
    paired,
    positive_int,
    recipe_tag,
    seed_run,
    synthetic_data,
)
from train_seeds import spread

HERE = Path(__file__).parent


def parse_seeds(text: str) -> list[int]:
    """``"5-8,11"`` -> ``[5, 6, 7, 8, 11]`` (argparse ``type=``)."""
    seeds: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        try:
            first, last = int(lo), int(hi or lo)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{part!r} is not a seed or a range like 5-8"
            ) from None
        if last < first:  # "8-5" was dropped without a word
            raise argparse.ArgumentTypeError(f"{part!r}: a range runs upwards, like 5-8")
        seeds += range(first, last + 1)
    if not seeds:
        raise argparse.ArgumentTypeError(f"{text!r} names no seed")
    twice = sorted({s for s in seeds if seeds.count(s) > 1})
    if twice:  # one pair counted twice inflated t
        raise argparse.ArgumentTypeError(f"{text!r}: seed(s) {twice} given twice")
    return seeds


def run_all(jobs: list[tuple[str, int]], args, deadline: float) -> tuple[list[str], list[str]]:
    """Run train_seeds.py for each (model, seed), ``args.slots`` at a time; the runs stopped
    by the deadline and the ones that failed (``<name>_s<seed>``)."""
    logs = Path(args.out) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    pending, running, stopped, failed = list(jobs), {}, [], []
    try:
        while pending or running:
            while pending and len(running) < args.slots:
                model, seed = pending.pop(0)
                cmd = [sys.executable, str(HERE / "train_seeds.py"), "--model", model]
                cmd += ["--seeds", str(seed), "--epochs", str(args.epochs), "--out", args.out]
                cmd += ["--static-assigner-epochs", str(args.static_assigner_epochs)]
                log = open(logs / f"{model_name(model)}_s{seed}.log", "w")  # noqa: SIM115
                running[(model, seed)] = (
                    subprocess.Popen(cmd, stdout=log, stderr=log, env=env),
                    log,
                )
                print(f"started {model} seed {seed} (log {log.name})", file=sys.stderr)
            for key, (proc, log) in list(running.items()):
                if proc.poll() is not None:
                    log.close()
                    del running[key]
                    if proc.returncode:
                        failed.append(f"{model_name(key[0])}_s{key[1]}")
                        print(f"{key[0]} seed {key[1]} failed: see {log.name}", file=sys.stderr)
                    else:
                        print(f"{key[0]} seed {key[1]} done", file=sys.stderr)
            if time.time() > deadline:
                stopped += [f"{model_name(m)}_s{s}" for m, s in running]
                break
            time.sleep(2)
    finally:  # the deadline, a failure here, Ctrl-C or a kill (SIGTERM): no training left behind
        for proc, log in running.values():
            if proc.poll() is None:
                proc.terminate()  # a training stops at its next step; rerun resumes it
                proc.wait()
            log.close()
    return stopped, failed


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--a", required=True, help="a registered model name or an arch.yaml")
    ap.add_argument("--b", default="damo-nano", help="the model to compare against")
    ap.add_argument("--seeds", type=parse_seeds, default="5-8", help="seeds, e.g. 5-8,11")
    ap.add_argument("--epochs", type=positive_int, default=16)
    ap.add_argument("--static-assigner-epochs", type=nonneg_int, default=4)
    ap.add_argument(
        "--slots", type=positive_int, default=2, help="runs at a time (one thread each)"
    )
    ap.add_argument("--deadline", type=float, default=0, help="seconds; 0: run every seed")
    ap.add_argument("--out", default="runs/bench_seeds")
    args = ap.parse_args()
    # a kill (timeout, CI cancel) unwinds like Ctrl-C: run_all stops its trainings on the way
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    for m in (args.a, args.b):
        if problem := model_problem(m):
            ap.error(problem)
    if model_name(args.a) == model_name(args.b):
        ap.error(f"--a and --b are the same model ({model_name(args.a)!r})")
    seeds = args.seeds
    tag = recipe_tag(args.epochs, args.static_assigner_epochs)
    out = Path(args.out)
    data_id = data_key(synthetic_data())  # as train_seeds.py records it in each row
    # each run's cached row name and inputs (a legacy arch.yaml row confirmed first)
    runs = {(m, s): seed_run(out, m, tag, s, data_id) for s in seeds for m in (args.a, args.b)}

    def row(model: str, seed: int) -> dict | None:
        """The run's cached row if it was made from this run's data and model, else None."""
        return kept_row(out, *runs[(model, seed)])

    jobs = [(m, s) for s in seeds for m in (args.a, args.b) if row(m, s) is None]
    t0 = time.time()
    stopped, failed = run_all(jobs, args, t0 + args.deadline if args.deadline else float("inf"))
    rows = {key: row(*key) for key in runs}
    # a launched run that exited 0 but left no matching row failed too
    failed += [
        f"{model_name(m)}_s{s}"
        for m, s in jobs
        if rows[(m, s)] is None and f"{model_name(m)}_s{s}" not in failed + stopped
    ]
    done = [s for s in seeds if rows[(args.a, s)] and rows[(args.b, s)]]
    if not done:
        raise SystemExit(
            f"no seed has both runs done (failed: {failed}, stopped: {stopped}; "
            f"logs in {args.out}/logs)"
        )
    maps = {m: [rows[(m, s)]["map"] for s in done] for m in (args.a, args.b)}
    print(
        json.dumps(
            {
                "a": args.a,
                "b": args.b,
                "recipe": tag,
                "seeds": done,
                "runs": {
                    "a": runs[(args.a, seeds[0])][0].removesuffix(f"_s{seeds[0]}"),
                    "b": runs[(args.b, seeds[0])][0].removesuffix(f"_s{seeds[0]}"),
                },
                "stopped": stopped,
                "failed": failed,
                "launched": len(jobs),
                "a_map": maps[args.a],
                "b_map": maps[args.b],
                "a_spread": spread(maps[args.a]),
                "b_spread": spread(maps[args.b]),
                "paired": paired(maps[args.a], maps[args.b]),
                "seconds": round(time.time() - t0, 1),
                "machines": machines([rows[(m, s)] for s in done for m in (args.a, args.b)]),
            }
        )
    )


if __name__ == "__main__":
    main()
