"""``make demo``: synthesize data, train a damo-nano baseline, run ``recipes/cpu-int8.yaml``.

Demo settings (400 images, few epochs) keep it to 5-10 minutes on 2 CPU cores (README's
measured runs: 281-586 s); every number it prints is measured, but a full run (more data,
more epochs) reaches more.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

RECIPE = "cpu-int8.yaml"


def _recipe_path() -> Path:
    from yoloslim.recipe import SHIPPED

    return SHIPPED / RECIPE  # the shipped one, whatever the working folder holds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="runs/demo")
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--epochs", type=int, default=12, help="baseline training epochs")
    parser.add_argument(
        "--finetune-epochs", type=int, default=6, help="prune+distil fine-tuning epochs"
    )
    parser.add_argument("--imgsz", type=int, default=320)
    args = parser.parse_args(argv)
    from yoloslim.cli.common import setup_logging, teardown_logging

    setup_logging()  # warnings on stderr as `warning: ...`, as the commands give them
    try:
        return _run(args)
    finally:
        teardown_logging()


def _run(args: argparse.Namespace) -> int:
    import yaml

    from yoloslim.bench.report import rich_table
    from yoloslim.cli.common import console, literal, print_table
    from yoloslim.data.synth import synthesize
    from yoloslim.pipeline import load_recipe, run_recipe
    from yoloslim.train import TrainConfig, train

    t_start = time.time()
    out = Path(args.out)
    data = out / "data" / "data.yaml"
    if not data.exists():
        with console.status(f"synthesizing {args.images} images at {args.imgsz} px"):
            synthesize(out / "data", images=args.images, imgsz=args.imgsz, seed=0)
    console.print(f"data: {literal(data)}", soft_wrap=True)

    run = out / "train"
    cfg = TrainConfig(epochs=args.epochs, imgsz=args.imgsz, batch=16, close_mosaic=2, cache=True)
    if not (run / "done").exists():
        console.rule(f"1/2 baseline: damo-nano, {args.epochs} epochs (demo settings)")
        resume = (run / "last.pt").exists()
        # the demo's own folder: what a stop left before the first last.pt is replaced
        train(
            "damo-nano",
            data,
            config=cfg,
            out=run,
            resume=resume,
            exist_ok=not resume,
            progress=True,
        )
        (run / "done").write_text("")
    baseline = run / "best.pt"

    # the shipped recipe, with the demo's shorter fine-tuning (written to DIR/recipe.yaml)
    recipe = yaml.safe_load(_recipe_path().read_text())
    for stage in recipe["stages"]:
        if "prune" in stage:
            stage["prune"]["finetune_epochs"] = args.finetune_epochs
            stage["prune"]["imgsz"] = args.imgsz
    rec = load_recipe(recipe)
    comp = out / "compress"
    console.rule(f"2/2 compress with recipes/{RECIPE} (fine-tuning {args.finetune_epochs} epochs)")
    res = run_recipe(
        baseline, data, rec, out=comp, resume=(comp / "recipe.yaml").exists(), progress=True
    )
    bench = res.report["bench"]
    print_table(rich_table(bench))
    base, final = bench["rows"][0], bench["rows"][-1]
    console.print(
        f"{literal(final['name'])} vs {literal(base['name'])}: "
        f"{base['latency_ms']['median'] / final['latency_ms']['median']:.2f}x faster, "
        f"{final['size_mb'] / base['size_mb']:.2f}x the size, "
        f"mAP50-95 {100 * base['map']:.1f} -> {100 * final['map']:.1f}. "
        f"Demo settings; total {time.time() - t_start:.0f} s. "
        f"Reports: {literal(comp / 'report.md')}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
