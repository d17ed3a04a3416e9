"""NMS at val's settings (conf 0.001, iou 0.65, max_det 300): the capped pass against the
full NMS cut to max_det, on one batch of predictions, same detections required.

    .venv/bin/python benchmarks/val_nms.py [--ckpt runs/demo/train/best.pt] [--images 100]

Without a checkpoint the model is an untrained damo-nano (every anchor a candidate, as in a
barely trained model's first validations). Prints one JSON object: ms per image of each,
medians of --repeats interleaved runs, with their ranges, and the candidates per image.
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

import yoloslim as ys
from yoloslim.data import DetectionDataset, load_data_config, load_samples

# the package re-exports a function named like this module
pp = importlib.import_module("yoloslim.eval.postprocess")
CONF, IOU, MAX_DET = 0.001, 0.65, 300


def full_then_cut(preds: torch.Tensor) -> list[torch.Tensor]:
    """What postprocess computed before the cap: every kept box, then the first MAX_DET."""
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--ckpt", default=None, help="a checkpoint; default: untrained damo-nano")
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
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
    same = all(torch.equal(a, b) for a, b in zip(full_then_cut(preds), capped(preds), strict=True))
    times: dict[str, list[float]] = {"full_then_cut": [], "capped": []}
    for _ in range(args.repeats):
        for name, fn in (("full_then_cut", full_then_cut), ("capped", capped)):
            t = time.perf_counter()
            fn(preds)
            times[name].append(1000 * (time.perf_counter() - t) / len(preds))
    candidates = (preds[..., 4:].max(-1).values > CONF).sum(1).float()
    report = {
        "images": len(preds),
        "model": args.ckpt or "damo-nano (untrained)",
        "candidates_per_image_median": float(candidates.median()),
        "identical_detections": same,
        **{f"{k}_ms_per_image": round(statistics.median(v), 2) for k, v in times.items()},
        **{f"{k}_range": [round(min(v), 2), round(max(v), 2)] for k, v in times.items()},
    }
    report["speedup"] = round(
        report["full_then_cut_ms_per_image"] / report["capped_ms_per_image"], 2
    )
    print(json.dumps(report))


if __name__ == "__main__":
    main()
