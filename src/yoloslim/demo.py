"""``make demo``: synthesize data, train damo-nano briefly, evaluate, print a table.

Demo settings (few epochs, small set) keep it to a few minutes on 2 CPU cores;
the numbers it prints are measured, but they are not what a full run reaches.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="runs/demo")
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--imgsz", type=int, default=320)
    args = parser.parse_args(argv)

    from yoloslim.bench.flops import model_profile
    from yoloslim.data.synth import synthesize
    from yoloslim.eval.val import validate
    from yoloslim.train import TrainConfig, train

    console = Console()
    out = Path(args.out)
    data = out / "data" / "data.yaml"
    if not data.exists():
        with console.status(f"synthesizing {args.images} images at {args.imgsz} px"):
            synthesize(out / "data", images=args.images, imgsz=args.imgsz, seed=0)
    console.print(f"data: {data}")
    t0 = time.time()
    cfg = TrainConfig(epochs=args.epochs, imgsz=args.imgsz, batch=16, close_mosaic=2)
    res = train("damo-nano", data, config=cfg, out=out / "train", progress=True)
    train_s = time.time() - t0
    metrics = validate(res.best, data)
    prof = model_profile(res.model, imgsz=args.imgsz, nc=res.model.nc)

    table = Table(title=f"damo-nano on the synthetic set (demo settings: {args.epochs} epochs)")
    for col in ("metric", "value"):
        table.add_column(col)
    table.add_row("params (M, deploy form)", f"{prof['params_deploy'] / 1e6:.2f}")
    table.add_row(f"GFLOPs at {args.imgsz} (2 x MACs)", f"{prof['gflops']:.2f}")
    table.add_row("train time (s)", f"{train_s:.0f}")
    table.add_row("mAP50-95 (val)", f"{100 * metrics['map']:.1f}")
    table.add_row("mAP50 (val)", f"{100 * metrics['map50']:.1f}")
    for name, ap in metrics["per_class"].items():
        table.add_row(f"  AP50-95 {name}", f"{100 * ap:.1f}")
    table.add_row("checkpoint", str(res.best))
    console.print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
