"""INT8 on the synthetic set: float vs FP16 vs plain NNCF INT8 vs yoloslim INT8 (OpenVINO, ONNX Runtime).

From damo-tiny trained on the synthetic set at 320 px (benchmarks/common.py), one run measures:

- float: OpenVINO IR, the plugin's default precision (f32 on AVX2-only CPUs);
- fp16: OpenVINO IR with FP16 weights;
- int8_plain: NNCF defaults (preset performance, no ignored scope, no accuracy control);
- int8_yoloslim_ov: yoloslim on OpenVINO (decode float, preset mixed, accuracy-aware);
- int8_yoloslim_ov_perf: the same with symmetric activations (preset performance);
- int8_yoloslim_ort: yoloslim on ONNX Runtime (QDQ, decode float, accuracy-aware);
- float_ort: the float ONNX in ONNX Runtime (the ORT artifact's own reference).

mAP50-95 on val for each; latency of all artifacts in one interleaved measurement (one
worker process per artifact, yoloslim.bench.latency); OpenVINO per-layer kernel times
(PERF_COUNT) of float, plain and yoloslim INT8. Goal: INT8-yoloslim within 0.5 mAP of
float and >= 1.5x faster than the OpenVINO "float" row. Prints one JSON object.

The "float" row is the float IR run at the OpenVINO CPU plugin's default inference
precision: f32 on AVX2-only CPUs, bf16 on CPUs with AVX512-BF16 or AMX (its ``precision``
says which). Each row's ``speedup_vs_ov_baseline`` is that row's latency against it (called
``speedup_vs_ov_float`` before, which claimed float where it ran in bf16);
``baseline_precision`` repeats the float row's precision.

Without ``--ckpt`` the checkpoint is the baseline benchmarks/common.py kept; the JSON's
``baseline_training`` says how it was trained (epochs, mAP50-95 when it finished; null for
a ``--ckpt`` that is not that baseline). ``--skip`` names are checked before any work.

    flock /tmp/yoloslim-heavy.lock .venv/bin/python benchmarks/quant_synth.py
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import common
from common import positive_int

import yoloslim as ys
from yoloslim.bench.latency import LatencyConfig, measure_latency, system_info
from yoloslim.compress.quant_config import AdvancedQuantConfig
from yoloslim.compress.quant_perf import perf_counters

RUNS = ("int8_yoloslim_ov", "int8_plain", "int8_yoloslim_ov_perf", "int8_yoloslim_ort")


def _wait(done: Path, seconds: float) -> None:
    t0 = time.time()
    while not done.exists() and time.time() - t0 < seconds:
        time.sleep(20)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--ckpt", help="default: the baseline runs/base/damo-tiny/done.json names (common.py)"
    )
    ap.add_argument("--data", default="runs/base/data/data.yaml")
    ap.add_argument("--out", default="runs/quant_synth")
    ap.add_argument("--imgsz", type=positive_int, default=320)
    ap.add_argument("--calib", type=positive_int, default=300)
    ap.add_argument("--max-drop", type=float, default=0.5)
    ap.add_argument("--sens-images", type=positive_int, default=32)
    ap.add_argument("--max-steps", type=positive_int, default=12)
    ap.add_argument(
        "--rounds", type=positive_int, default=15, help="interleaved latency rounds of 10 runs"
    )
    ap.add_argument(
        "--threads",
        type=positive_int,
        default=len(os.sched_getaffinity(0)),
        help="threads of every runtime timed (default: the cores usable): one count for all",
    )
    ap.add_argument("--wait", type=float, default=0, help="seconds to wait for done.json")
    ap.add_argument(
        "--skip",
        default="",
        help="comma-separated variants to skip (not int8_yoloslim_ov: the float rows are its)",
    )
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    if "int8_yoloslim_ov" in skip:
        ap.error("--skip int8_yoloslim_ov: the float and fp16 rows come from its report")
    unknown = sorted(skip - set(RUNS))
    if unknown:
        ap.error(f"--skip {','.join(unknown)}: not a variant; skippable: {', '.join(RUNS[1:])}")

    # what was given is checked before any work (a missing --data failed after the export)
    if args.ckpt is not None and not Path(args.ckpt).is_file():
        ap.error(f"--ckpt {args.ckpt}: no such file")
    if not Path(args.data).is_file():
        ap.error(
            f"--data {args.data}: no such file (benchmarks/common.py makes the synthetic set "
            "runs/base/data as it trains the baseline)"
        )
    _wait(common.ROOT / "damo-tiny" / "done.json", args.wait if args.ckpt is None else 0)
    ckpt = Path(args.ckpt) if args.ckpt else common.baseline_ckpt()
    if not ckpt.is_file():
        raise SystemExit(
            f"{ckpt} does not exist: train the baseline first "
            "(benchmarks/common.py --model damo-tiny --epochs 6 --extend 8) or give --ckpt"
        )
    out = Path(args.out)
    t0 = time.time()
    exp = ys.export(ckpt, out / "export", formats=["onnx"], imgsz=args.imgsz)
    onnx_path = Path(exp.artifacts["onnx"])
    imgsz = int(exp.report["imgsz"])

    adv = dict(
        latency=False,
        perf_counters=False,
        sensitivity_images=args.sens_images,
        max_steps=args.max_steps,
    )
    runs = {  # in the order of RUNS
        "int8_yoloslim_ov": dict(
            backend="openvino", max_drop=args.max_drop, float_variants=["fp16"]
        ),
        "int8_plain": dict(
            backend="openvino", ignored_scope=[], advanced={"preset": "performance"}
        ),
        "int8_yoloslim_ov_perf": dict(
            backend="openvino", max_drop=args.max_drop, advanced={"preset": "performance"}
        ),
        "int8_yoloslim_ort": dict(backend="onnxruntime", max_drop=args.max_drop),
    }
    reports, timings = {}, {}
    for name, kw in runs.items():
        if name in skip:
            continue
        kw = dict(kw)
        kw["advanced"] = AdvancedQuantConfig(**{**adv, **kw.get("advanced", {})})
        cfg = ys.QuantConfig(calib=args.calib, **kw)
        t = time.time()
        print(f"quantizing: {name}", file=sys.stderr)
        reports[name] = ys.quantize(onnx_path, args.data, config=cfg, out=out / name).report
        timings[name] = round(time.time() - t, 1)

    main_rep = reports["int8_yoloslim_ov"]
    entries = {"float": main_rep["float"], "fp16": main_rep["fp16"]}
    for name, rep in reports.items():
        entries[name] = rep["int8"]
    if "int8_yoloslim_ort" in reports:
        entries["float_ort"] = reports["int8_yoloslim_ort"]["float"]
    paths = {k: e["path"] for k, e in entries.items()}
    print(f"timing {len(paths)} artifacts, one worker each", file=sys.stderr)
    # one thread count for every runtime: each one's own default is not the same
    cfg = LatencyConfig(imgsz=imgsz, rounds=args.rounds, threads=args.threads)
    lat = measure_latency(list(paths.values()), cfg)
    results = {}
    base_ms = lat[paths["float"]]["median"]
    for k, e in entries.items():
        m = lat[e["path"]]
        # ONNX Runtime's INT8 against its own float model, the OpenVINO rows against the IR's
        ref = "float_ort" if k == "int8_yoloslim_ort" and "float_ort" in entries else "float"
        results[k] = {
            "map": round(e["map"], 4),
            "map50": round(e["map50"], 4),
            "map_drop_points": round(100 * (entries[ref]["map"] - e["map"]), 2),
            "map_drop_reference": ref,
            "latency_ms": {"median": round(m["median"], 3), "p90": round(m["p90"], 3)},
            # against the "float" row: the IR at OpenVINO's default precision (bf16 or f32)
            "speedup_vs_ov_baseline": round(base_ms / m["median"], 3),
            "size_mb": e["size_mb"],
            "runtime": m["kind"],
            "precision": m["precision"],
            "path": e["path"],
        }
    perf = {
        k: perf_counters(paths[k], imgsz)
        for k in ("float", "int8_plain", "int8_yoloslim_ov", "int8_yoloslim_ov_perf")
        if k in paths
    }
    for p in perf.values():
        p["by_kernel"] = dict(list(p["by_kernel"].items())[:8])
    goal = {}
    for k in ("int8_yoloslim_ov", "int8_yoloslim_ov_perf", "int8_yoloslim_ort"):
        if k in results:
            r = results[k]
            goal[k] = {
                "within_0.5_map": r["map_drop_points"] <= 0.5,
                "at_least_1.5x": r["speedup_vs_ov_baseline"] >= 1.5,
            }
    accuracy = {
        k: {
            "kept_float": rep.get("accuracy_aware", {}).get("kept_float", []),
            "steps": [
                (s["step"], s["kept_float"], s["map"], s["drop_points"])
                for s in rep.get("accuracy_aware", {}).get("steps", [])
            ],
            "met": rep.get("accuracy_aware", {}).get("met"),
            "scope_nodes_float": rep["layers_in_float"]["scope_nodes"],
        }
        for k, rep in reports.items()
    }
    is_baseline = (
        common.baseline_ckpt().resolve() == ckpt.resolve()
        and (common.ROOT / "damo-tiny" / "done.json").exists()
    )
    print(
        json.dumps(
            {
                "ckpt": str(ckpt),
                # the baseline's training finished and this is the checkpoint it names
                "baseline_done": is_baseline,
                "baseline_training": common.baseline_training() if is_baseline else None,
                "baseline_precision": results["float"]["precision"],
                "imgsz": imgsz,
                "data": {"path": args.data, **common.data_key(Path(args.data))},
                "threads": args.threads,
                "calib_images": main_rep["calibration"]["images"],
                "max_drop_points": args.max_drop,
                "results": results,
                "goal": goal,
                "accuracy_aware": accuracy,
                "perf_counters": perf,
                "quantize_s": timings,
                "total_s": round(time.time() - t0, 1),
                "system": system_info(),
            },
            indent=1,
            default=str,
        )
    )


if __name__ == "__main__":
    main()
