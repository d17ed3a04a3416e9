"""NMS at val's settings (conf 0.001, iou 0.65, max_det 300): the capped pass against the
full NMS cut to max_det, on one batch of predictions, same detections required; and the
capped pass with postprocess's one-thread guard against it at all --threads.

    .venv/bin/python benchmarks/val_nms.py [--ckpt runs/demo/train/best.pt] [--images 100]
        [--threads 2]

The guard matters most when the cores are busy (data-loader workers, other processes), so
run it both on a quiet machine and beside a load to see both ends.

Without a checkpoint the model is an untrained damo-nano (every anchor a candidate, as in a
barely trained model's first validations). Prints one JSON object: ms per image of each,
medians of --repeats interleaved runs, with their ranges, and the candidates per image.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from common import positive_int

import yoloslim as ys
from yoloslim.data import DetectionDataset, load_data_config, load_samples

# the package re-exports a function named like this module
pp = importlib.import_module("yoloslim.eval.postprocess")
CONF, IOU, MAX_DET = 0.001, 0.65, 300


def full_then_cut(preds: torch.Tensor) -> list[torch.Tensor]:
    """What postprocess computed before the cap: every kept box, then the first MAX_DET.

    Its NMS runs under the one-thread guard ``batched_nms`` holds, its confidence filter
    outside it (``capped`` runs both inside), so ``speedup`` is mostly the cap's effect,
    not purely."""
    out = []
    for p in preds:
        scores, classes = p[:, 4:].max(1)
        keep = scores > CONF
        boxes, scores, classes = p[keep, :4], scores[keep], classes[keep]
        idx = pp.batched_nms(boxes, scores, classes, IOU)[:MAX_DET]
        out.append(torch.cat([boxes[idx], scores[idx, None], classes[idx, None].float()], 1))
    return out


def capped(preds: torch.Tensor) -> list[torch.Tensor]:
    return pp.postprocess(preds, conf=CONF, iou=IOU, max_det=MAX_DET)


@contextlib.contextmanager
def _all_threads(t: torch.Tensor):
    yield


def capped_all_threads(preds: torch.Tensor) -> list[torch.Tensor]:
    """postprocess without its one-thread guard: every op at torch's thread count."""
    guard, pp._one_thread = pp._one_thread, _all_threads
    try:
        return capped(preds)
    finally:
        pp._one_thread = guard


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--ckpt", default=None, help="a checkpoint; default: untrained damo-nano")
    ap.add_argument("--images", type=positive_int, default=100)
    ap.add_argument("--repeats", type=positive_int, default=5)
    ap.add_argument("--threads", type=positive_int, default=2, help="torch intra-op threads")
    args = ap.parse_args()
    if args.ckpt and not Path(args.ckpt).is_file():
        ap.error(f"--ckpt {args.ckpt}: no such file")
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        data = ys.synthesize(Path(tmp) / "d", images=args.images * 5, imgsz=320, seed=0)
        cfg = load_data_config(data)
        ds = DetectionDataset(load_samples(cfg, "val"), 320, augment=False, names=cfg.names)
        if args.ckpt:
            model = ys.load_checkpoint(args.ckpt)[0]
        else:
            torch.manual_seed(0)
            model = ys.build_model("damo-nano", names=cfg.names).eval()
        with torch.no_grad():
            preds = torch.cat([model(ds[i][0][None].float().div(255)) for i in range(len(ds))])
    ref = capped(preds)
    same = all(
        torch.equal(a, b) and torch.equal(a, c)
        for a, b, c in zip(full_then_cut(preds), ref, capped_all_threads(preds), strict=True)
    )
    runs = {
        "full_then_cut": full_then_cut,
        "capped": capped,
        "capped_all_threads": capped_all_threads,
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            t = time.perf_counter()
            fn(preds)
            times[name].append(1000 * (time.perf_counter() - t) / len(preds))
    candidates = (preds[..., 4:].max(-1).values > CONF).sum(1).float()
    report = {
        "images": len(preds),
        "model": args.ckpt or "damo-nano (untrained)",
        "threads": args.threads,
        "candidates_per_image_median": float(candidates.median()),
        "identical_detections": same,
        **{f"{k}_ms_per_image": round(statistics.median(v), 2) for k, v in times.items()},
        **{f"{k}_range": [round(min(v), 2), round(max(v), 2)] for k, v in times.items()},
    }
    report["speedup"] = round(
        report["full_then_cut_ms_per_image"] / report["capped_ms_per_image"], 2
    )
    report["one_thread_speedup"] = round(
        report["capped_all_threads_ms_per_image"] / report["capped_ms_per_image"], 2
    )
    print(json.dumps(report))


if __name__ == "__main__":
    main()
