"""Two models trained on the same seeds, several runs at a time: their paired difference.

One pair of runs says little: on the synthetic set one recipe moves 2-5 mAP points from
seed to seed (train_seeds.py), more than most architecture changes. This trains ``--a`` and
``--b`` (registered names or arch.yaml files) at each of ``--seeds`` by running
train_seeds.py, ``--slots`` runs at a time, each in its own process at one thread (on the
GPU when torch sees one), in pair order so that pairs finish together. Runs are cached by
train_seeds.py (``OUT/<name>_e<E>[_sa<N>]_s<seed>.json``) and an interrupted one resumes.
``--deadline`` stops the runs still going after that many seconds; the seeds with both runs
done are compared.

Prints one JSON object: each model's per-seed mAP50-95 and spread, and ``paired``: the
differences a - b, their mean, sd, paired t and how often a is ahead.

    .venv/bin/python benchmarks/paired_seeds.py --a runs/nas/arch.yaml --b damo-nano \\
        --seeds 5-8 --slots 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from common import model_name, paired, recipe_tag
from train_seeds import spread

HERE = Path(__file__).parent


def parse_seeds(text: str) -> list[int]:
    """``"5-8,11"`` -> ``[5, 6, 7, 8, 11]``."""
    seeds: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        try:
            seeds += range(int(lo), int(hi or lo) + 1)
        except ValueError:
            raise SystemExit(f"--seeds: {part!r} is not a seed or a range like 5-8") from None
    return seeds


def run_all(jobs: list[tuple[str, int]], args, deadline: float) -> list[str]:
    """Run train_seeds.py for each (model, seed), ``args.slots`` at a time; the ones stopped."""
    logs = Path(args.out) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    pending, running, stopped = list(jobs), {}, []
    while pending or running:
        while pending and len(running) < args.slots:
            model, seed = pending.pop(0)
            cmd = [sys.executable, str(HERE / "train_seeds.py"), "--model", model]
            cmd += ["--seeds", str(seed), "--epochs", str(args.epochs), "--out", args.out]
            cmd += ["--static-assigner-epochs", str(args.static_assigner_epochs)]
            log = open(logs / f"{model_name(model)}_s{seed}.log", "w")  # noqa: SIM115
            running[(model, seed)] = (subprocess.Popen(cmd, stdout=log, stderr=log, env=env), log)
        for key, (proc, log) in list(running.items()):
            if proc.poll() is not None:
                log.close()
                del running[key]
                if proc.returncode:
                    print(f"{key[0]} seed {key[1]} failed: see {log.name}", file=sys.stderr)
        if time.time() > deadline:
            for (model, seed), (proc, log) in running.items():
                proc.terminate()
                proc.wait()
                log.close()
                stopped.append(f"{model_name(model)}_s{seed}")
            break
        time.sleep(2)
    return stopped


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--a", required=True, help="a registered model name or an arch.yaml")
    ap.add_argument("--b", default="damo-nano", help="the model to compare against")
    ap.add_argument("--seeds", default="5-8", help="seeds, e.g. 5-8,11")
    ap.add_argument("--epochs", type=int, default=16)
    ap.add_argument("--static-assigner-epochs", type=int, default=4)
    ap.add_argument("--slots", type=int, default=2, help="runs at a time (one thread each)")
    ap.add_argument("--deadline", type=float, default=0, help="seconds; 0: run every seed")
    ap.add_argument("--out", default="runs/bench_seeds")
    args = ap.parse_args()
    if model_name(args.a) == model_name(args.b):
        raise SystemExit(f"--a and --b are both filed as {model_name(args.a)!r}: rename one")
    seeds = parse_seeds(args.seeds)
    tag = recipe_tag(args.epochs, args.static_assigner_epochs)

    def result(model: str, seed: int) -> Path:
        return Path(args.out) / f"{model_name(model)}_{tag}_s{seed}.json"

    jobs = [(m, s) for s in seeds for m in (args.a, args.b) if not result(m, s).exists()]
    t0 = time.time()
    stopped = run_all(jobs, args, t0 + args.deadline if args.deadline else float("inf"))
    done = [s for s in seeds if result(args.a, s).exists() and result(args.b, s).exists()]
    if not done:
        raise SystemExit(f"no seed has both runs done (logs in {args.out}/logs)")
    maps = {
        m: [json.loads(result(m, s).read_text())["map"] for s in done] for m in (args.a, args.b)
    }
    print(
        json.dumps(
            {
                "a": args.a,
                "b": args.b,
                "recipe": tag,
                "seeds": done,
                "stopped": stopped,
                "a_map": maps[args.a],
                "b_map": maps[args.b],
                "a_spread": spread(maps[args.a]),
                "b_spread": spread(maps[args.b]),
                "paired": paired(maps[args.a], maps[args.b]),
                "seconds": round(time.time() - t0, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
