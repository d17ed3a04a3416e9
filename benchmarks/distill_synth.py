"""Distillation on the synthetic set: does a teacher help a student, and a pruned model recover?

Part 1: damo-nano trained from scratch with the same seed, epochs and recipe, with and
without distillation from the trained damo-tiny (benchmarks/common.py's baseline). The
issue asks for a damo-small teacher; training one is beyond this 2-core machine's
budget, so the damo-tiny baseline is the teacher (the JSON says so).

Part 2: that damo-tiny pruned by ~50 % of its channels (yoloslim.compress.prune, no
fine-tuning inside prune) and then recovered for the same epochs with plain
fine-tuning and with its unpruned self as teacher.

Every model is validated on the full validation split (200 images, 320 px). Training
can use a subset of the 800 training images (``--train-images``) to keep the run short.
Finished runs are reused (``OUT/<name>.json``), so an interrupted script picks up.

    flock /tmp/yoloslim-heavy.lock .venv/bin/python benchmarks/distill_synth.py --epochs 4

Prints one JSON object (mAP50-95 / mAP50 of each model, settings, seconds).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import yaml

import yoloslim as ys
from yoloslim.compress.distill_losses import FEATURE_LOSSES

sys.path.insert(0, str(Path(__file__).parent))
import common  # noqa: E402  (the benchmarks' shared helpers, not a package)


def _wait_for_baseline(timeout_s: float) -> Path:
    done = common.ROOT / "damo-tiny" / "done.json"
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
    return Path(json.loads(done.read_text())["ckpt"])  # the extended run's, after --extend


def _subset(data: Path, n: int, out: Path) -> Path:
    """A data.yaml over the first ``n`` training images of ``data`` (same val split)."""
    if n <= 0:
        return data
    root = data.parent
    images = sorted((root / "images" / "train").glob("*.jpg"))[:n]
    out.mkdir(parents=True, exist_ok=True)
    (out / f"train_{n}.txt").write_text("".join(f"{p.resolve()}\n" for p in images))
    cfg = yaml.safe_load(data.read_text())
    cfg.pop("synth", None)
    cfg.update(path=str(root.resolve()), train=str((out / f"train_{n}.txt").resolve()))
    path = out / f"data_{n}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _count(data: Path, split: str) -> int:
    """The images of a data.yaml's split: a folder's, or a list file's lines."""
    cfg = yaml.safe_load(Path(data).read_text())
    src = Path(cfg[split])
    src = src if src.is_absolute() else Path(cfg.get("path") or Path(data).parent) / src
    if not src.is_absolute():
        src = Path(data).parent / src
    if src.is_file():
        return sum(1 for line in src.read_text().splitlines() if line.strip())
    return sum(1 for p in src.iterdir() if p.is_file())


def _metrics(ckpt: Path, val_data: Path) -> dict:
    m = ys.validate(ckpt, val_data)
    return {"map": round(m["map"], 4), "map50": round(m["map50"], 4), "ckpt": str(ckpt)}


def _final(train_report: dict, ckpt: Path | None) -> dict:
    """The run's own validation after its last epoch (the same full val split)."""
    m = train_report["last"]
    return {"map": round(m["map"], 4), "map50": round(m["map50"], 4), "ckpt": str(ckpt)}


def _teacher_metrics(teacher: Path, full: Path) -> dict:
    info = common._info("damo-tiny")
    if info and Path(info["ckpt"]) == teacher:
        return {  # the baseline's own final validation, not measured again in this run
            "map": info["map"],
            "map50": info["map50"],
            "epochs": info.get("epochs"),
            "measured_by": "common.py (the baseline's training, done.json)",
        }
    return _metrics(teacher, full)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--epochs", type=common.positive_int, default=4, help="student epochs (part 1)")
    ap.add_argument(
        "--recover-epochs", type=common.positive_int, default=2, help="recovery epochs (part 2)"
    )
    ap.add_argument("--train-images", type=common.nonneg_int, default=200, help="0: all 800")
    ap.add_argument(
        "--loss", default="cwd", choices=FEATURE_LOSSES, help="feature loss: cwd, mimic, mgd, at"
    )
    ap.add_argument("--ratio", type=float, default=0.5, help="channel ratio pruned (part 2)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-prune", action="store_true")
    ap.add_argument("--wait", type=float, default=7200, help="seconds to wait for the baseline")
    ap.add_argument("--out", type=Path, default=Path("runs/bench_distill"))
    ap.add_argument("--teacher", type=Path, help="another teacher checkpoint (smoke tests)")
    args = ap.parse_args()
    if not 0 < args.ratio < 1:
        ap.error(f"--ratio {args.ratio}: give a fraction between 0 and 1")
    if args.teacher is not None and not args.teacher.is_file():
        ap.error(f"--teacher {args.teacher}: no such file")

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    full = common.synthetic_data()
    teacher = args.teacher or _wait_for_baseline(args.wait)
    data = _subset(full, args.train_images, out)
    tag = f"e{args.epochs}_n{args.train_images}_s{args.seed}"
    # kept rows are reused only for the same set, subset and (where it matters) teacher
    on_data = {"data": common.data_key(full), "train_images": args.train_images}
    with_teacher = {**on_data, "teacher": common.file_key(teacher)}
    default_teacher = args.teacher is None
    result: dict = {
        "teacher": {
            "model": "damo-tiny" if default_teacher else "given by --teacher",
            "note": (
                "the issue asks for damo-small; too costly on this 2-core machine, so the "
                "trained damo-tiny baseline (runs/base/damo-tiny) is the teacher"
                if default_teacher
                else "--teacher"
            ),
            "path": str(teacher),
            **common.cached(
                out, "teacher", lambda: _teacher_metrics(teacher, full), inputs=with_teacher
            ),
        },
        "settings": {
            "epochs": args.epochs,
            "recover_epochs": args.recover_epochs,
            "train_images": _count(data, "train"),
            "val_images": _count(full, "val"),
            "imgsz": 320,
            "seed": args.seed,
            "loss": args.loss,
        },
    }

    # one validation, after the last epoch (best.pt = last EMA): validation is costly here
    cfg = common.train_config(args.epochs, seed=args.seed, val_interval=args.epochs)
    dcfg = ys.DistillConfig(loss=args.loss, train=cfg)
    result["settings"]["distill"] = {k: v for k, v in dcfg.to_dict().items() if k != "train"}
    plain = common.cached(
        out,
        f"nano_plain_{tag}",
        lambda: (lambda r: _final(r.report, r.best))(
            ys.train("damo-nano", data, config=cfg, out=out / f"nano_plain_{tag}", exist_ok=True)
        ),
        inputs=on_data,
    )
    kd = common.cached(
        out,
        f"nano_kd_{args.loss}_{tag}",
        lambda: (lambda r: _final(r.report["train"], r.artifacts.get("best")))(
            ys.distill(
                "damo-nano",
                teacher,
                data,
                config=dcfg,
                out=out / f"nano_kd_{args.loss}_{tag}",
                exist_ok=True,
            )
        ),
        inputs=with_teacher,
    )
    result["student"] = {
        "model": "damo-nano",
        "plain": plain,
        "distilled": kd,
        "gain_map_points": round(100 * (kd["map"] - plain["map"]), 2),
        "goal": ">= +1.0 mAP50-95 points",
    }

    if args.skip_prune:
        result["pruned"] = {"skipped": "--skip-prune"}
    else:
        result["pruned"] = _prune_part(args, out, full, data, teacher, with_teacher)
    print(json.dumps(result, indent=2, default=str))


def _prune_part(args, out: Path, full: Path, data: Path, teacher: Path, inputs: dict) -> dict:
    try:
        from yoloslim.compress.prune import PruneConfig, prune
    except ImportError as e:
        return {"skipped": f"yoloslim.compress.prune is not available ({e})"}
    tag = f"r{args.ratio}_e{args.recover_epochs}_n{args.train_images}_s{args.seed}"
    pcfg = PruneConfig(ratio=args.ratio, finetune_epochs=0, latency=False, seed=args.seed)

    def do_prune() -> dict:
        res = prune(teacher, full, config=pcfg, out=out / f"pruned_r{args.ratio}")
        before, after = res.report["stages"]["before"], res.report["stages"]["pruned"]
        row = {
            "map": after["map"],
            "map50": after["map50"],
            "ckpt": str(res.artifacts["checkpoint"]),
        }
        row.update(map_before=before["map"])
        row.update(params_before=before.get("params"), params_after=after.get("params"))
        row.update(gflops_before=before.get("gflops"), gflops_after=after.get("gflops"))
        return row

    pruned = common.cached(out, f"pruned_r{args.ratio}", do_prune, inputs=inputs)
    student = ys.load_checkpoint(pruned["ckpt"])[0]
    # a fine-tuning recipe: half the from-scratch peak LR, short warm-up
    cfg = common.train_config(
        args.recover_epochs,
        seed=args.seed,
        lr0=0.002,
        warmup_epochs=0.5,
        val_interval=args.recover_epochs,
    )
    plain = common.cached(
        out,
        f"recover_plain_{tag}",
        lambda: (lambda r: _final(r.report, r.best))(
            ys.train(student, data, config=cfg, out=out / f"recover_plain_{tag}", exist_ok=True)
        ),
        inputs=inputs,
    )
    dcfg = ys.DistillConfig(loss=args.loss, train=cfg)
    kd = common.cached(
        out,
        f"recover_kd_{args.loss}_{tag}",
        lambda: (lambda r: _final(r.report["train"], r.artifacts.get("best")))(
            ys.distill(
                student,
                teacher,
                data,
                config=dcfg,
                out=out / f"recover_kd_{args.loss}_{tag}",
                exist_ok=True,
            )
        ),
        inputs=inputs,
    )
    return {
        "model": f"damo-tiny pruned (ratio {args.ratio}, l2, no fine-tuning inside prune)",
        "pruned_no_recovery": pruned,
        "recovered_plain": plain,
        "recovered_kd": kd,
        "gain_map_points": round(100 * (kd["map"] - plain["map"]), 2),
        "goal": "pruned+KD >= pruned+plain fine-tune",
    }


if __name__ == "__main__":
    main()
