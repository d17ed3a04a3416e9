"""Median latency of one model across runtimes: PyTorch eager, TorchScript, ONNX Runtime,
OpenVINO FP32 and FP16 weights; each artifact in its own worker process, rounds interleaved.

    .venv/bin/python benchmarks/export_latency.py [--model damo-tiny] [--imgsz 320]

Prints one JSON object. Weights are random (latency does not depend on them). The
"pytorch_eager" row runs the checkpoint in eager PyTorch in its deploy form (RepConv and
Conv+BN folded, as the torch backend runs every checkpoint), so every row is the same
re-parameterised network and the speedups are the runtimes' alone, not the folding's
(``yoloslim export``'s reparam report measures that). OpenVINO's CPU plugin picks its
own inference precision (bf16 on AMX CPUs even for FP32 IR): the JSON reports the
INFERENCE_PRECISION_HINT each compiled model actually used.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
from pathlib import Path

import torch
from common import positive_int

from yoloslim.bench.latency import LatencyConfig, measure_latency, system_info
from yoloslim.export import export
from yoloslim.models import build_model, list_models
from yoloslim.models.checkpoint import save_checkpoint


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", default="damo-tiny", choices=list_models())
    ap.add_argument("--imgsz", type=positive_int, default=320)
    ap.add_argument("--rounds", type=positive_int, default=12)
    ap.add_argument("--runs", type=positive_int, default=10)
    ap.add_argument("--threads", type=positive_int, default=len(os.sched_getaffinity(0)))
    args = ap.parse_args()
    if args.imgsz % 32:
        ap.error(f"--imgsz {args.imgsz}: give a multiple of 32")
    logging.basicConfig(level=logging.WARNING)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        ckpt = save_checkpoint(out / "model.pt", build_model(args.model, nc=80), imgsz=args.imgsz)
        fp32 = export(ckpt, out, formats=["onnx", "torchscript", "openvino"])
        fp16 = export(ckpt, out / "fp16", formats=["openvino"], half=True)
        arts = {
            "pytorch_eager": ckpt,
            "torchscript": fp32.artifacts["torchscript"],
            "onnxruntime": fp32.artifacts["onnx"],
            "openvino_fp32": fp32.artifacts["openvino"],
            "openvino_fp16": fp16.artifacts["openvino"],
        }
        cfg = LatencyConfig(
            imgsz=args.imgsz, rounds=args.rounds, runs_per_round=args.runs, threads=args.threads
        )
        lat = measure_latency([str(p) for p in arts.values()], cfg)
        by_name = {name: lat[str(p)] for name, p in arts.items()}
        # boxes (px), scores and log scores apart: max_abs_diff is their largest, the boxes'
        # on any model, which showed the FP16 IR as close as the FP32 one (audit47 bench F5)
        keys = ("max_abs_diff_boxes_px", "max_abs_diff_scores", "max_abs_diff_log_scores")
        verified = {
            **{k: {d: v[d] for d in keys} for k, v in fp32.report["formats"].items()},
            "openvino_fp16": {d: fp16.report["formats"]["openvino"][d] for d in keys},
        }
    base = by_name["pytorch_eager"]["median"]
    result = {
        "benchmark": "export_latency",
        "model": args.model,
        "imgsz": args.imgsz,
        "batch": 1,
        "method": (
            f"one spawned worker per artifact, {args.rounds} interleaved rounds x {args.runs} "
            f"runs ({args.rounds * args.runs} timed calls each), {cfg.warmup} warm-up calls excluded"
        ),
        "latency_ms": {
            k: {"median": round(v["median"], 3), "p90": round(v["p90"], 3)}
            for k, v in by_name.items()
        },
        "speedup_vs_pytorch_eager": {k: round(base / v["median"], 2) for k, v in by_name.items()},
        "runtime_precision": {k: v["precision"] for k, v in by_name.items()},
        "openvino_inference_precision_hint": {
            k: by_name[k]["precision"] for k in ("openvino_fp32", "openvino_fp16")
        },
        "export_max_abs_diff_vs_pytorch": verified,
        "threads": args.threads,
        "system": system_info(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
