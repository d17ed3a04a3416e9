"""Median latency of one model across runtimes: PyTorch eager, TorchScript, ONNX Runtime,
OpenVINO FP32 and FP16 weights; each artifact in its own worker process, rounds interleaved.

    .venv/bin/python benchmarks/export_latency.py [--model damo-tiny] [--imgsz 320]

Prints one JSON object. Weights are random (latency does not depend on them).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from yoloslim.bench.latency import LatencyConfig, measure_latency, system_info
from yoloslim.export import export
from yoloslim.models import build_model
from yoloslim.models.checkpoint import save_checkpoint


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="damo-tiny")
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        ckpt = save_checkpoint(out / "model.pt", build_model(args.model, nc=80), imgsz=args.imgsz)
        fp32 = export(ckpt, out, formats=["onnx", "torchscript", "openvino"])
        fp16 = export(ckpt, out, formats=["openvino"], half=True)
        arts = {
            "pytorch": ckpt,
            "torchscript": fp32.artifacts["torchscript"],
            "onnxruntime": fp32.artifacts["onnx"],
            "openvino_fp32": fp32.artifacts["openvino"],
            "openvino_fp16": fp16.artifacts["openvino"],
        }
        cfg = LatencyConfig(imgsz=args.imgsz, rounds=args.rounds, runs_per_round=args.runs)
        lat = measure_latency([str(p) for p in arts.values()], cfg)
        by_name = {name: lat[str(p)] for name, p in arts.items()}
    base = by_name["pytorch"]["median"]
    print(
        json.dumps(
            {
                "model": args.model,
                "imgsz": args.imgsz,
                "batch": 1,
                "method": f"one spawned worker per artifact, {args.rounds} interleaved rounds x {args.runs} runs, warm-up excluded",
                "latency_ms": {
                    k: {"median": round(v["median"], 3), "p90": round(v["p90"], 3)}
                    for k, v in by_name.items()
                },
                "speedup_vs_pytorch": {k: round(base / v["median"], 2) for k, v in by_name.items()},
                "runtime_precision": {k: v["precision"] for k, v in by_name.items()},
                "threads": "runtime defaults",
                "system": system_info(),
            }
        )
    )


if __name__ == "__main__":
    main()
