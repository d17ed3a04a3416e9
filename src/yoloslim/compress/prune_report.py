"""Measurements for the prune report: params, GFLOPs, mAP, exported size and latency.

Latency comes from the runtime, never from FLOPs: the model before and after
pruning are exported (re-parameterised) and timed side by side, each in its own
worker process with interleaved rounds (:func:`yoloslim.bench.latency.measure_latency`).
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from yoloslim.compress.prune_width import profile
from yoloslim.export.common import path_size_mb

__all__ = ["measure", "measure_latency_pair", "summary_rows"]

_FORMAT = {"openvino": "openvino", "onnxruntime": "onnx"}


def measure(model: nn.Module, data, cfg, is_detector: bool, progress: bool = False) -> dict:
    """Params (deploy form), GFLOPs at ``cfg.imgsz``, the size of its FP32 weights (the
    exported file's, once :func:`measure_latency_pair` has one) and, with data, mAP50-95 /
    mAP50 (``progress``: the validation's bar)."""
    from yoloslim.bench.measure import WEIGHTS_SIZE_SOURCE, weights_size_mb

    row = profile(model, cfg.imgsz)
    row.update(size_mb=round(weights_size_mb(row["params"]), 3), size_source=WEIGHTS_SIZE_SOURCE)
    if data is not None and is_detector:
        from yoloslim.eval.val import validate

        was_training = model.training
        res = validate(model.eval(), data, imgsz=cfg.imgsz, batch=cfg.batch, progress=progress)
        model.train(was_training)
        row["map"], row["map50"] = res["map"], res["map50"]
    return row


def measure_latency_pair(before: nn.Module, after: nn.Module, work: Path, cfg) -> dict:
    """Export both models with ``cfg.backend`` and time them together at batch 1.

    Returns:
        ``{"before": {...}, "after": {...}, "info": {...}}``; each side holds
        ``size_mb`` (artifact on disk) and ``latency_ms`` {median, p90}.
    """
    from yoloslim.bench.latency import LatencyConfig, measure_latency
    from yoloslim.export import export

    fmt = _FORMAT[cfg.backend]
    arts = {}
    for name, model in (("before", before), ("after", after)):
        res = export(model, Path(work) / name, formats=[fmt], imgsz=cfg.imgsz)
        arts[name] = Path(res.artifacts[fmt])
    lat_cfg = LatencyConfig(imgsz=cfg.imgsz, rounds=cfg.advanced.latency_rounds, runs_per_round=10)
    lat = measure_latency([str(p) for p in arts.values()], lat_cfg)
    out: dict = {}
    for name, p in arts.items():
        m = lat[str(p)]
        out[name] = {
            "size_mb": path_size_mb(p),
            "size_source": "file",
            "latency_ms": {"median": round(m["median"], 3), "p90": round(m["p90"], 3)},
        }
    b, a = out["before"]["latency_ms"]["median"], out["after"]["latency_ms"]["median"]
    out["info"] = {
        "backend": cfg.backend,
        "precision": lat[str(arts["after"])]["precision"],
        "batch": 1,
        "imgsz": cfg.imgsz,
        "latency_change": round(a / b - 1, 4) if b else None,
        "artifacts": {k: str(v) for k, v in arts.items()},
        "note": "every stage after pruning shares one architecture, hence one size and latency",
        "method": (
            f"one spawned worker per artifact, {lat_cfg.rounds} interleaved rounds x "
            f"{lat_cfg.runs_per_round} runs, {lat_cfg.warmup} warm-up runs excluded"
        ),
    }
    return out


def summary_rows(stages: dict) -> list[dict]:
    """One flat row per stage for tables: params (M), GFLOPs, size, latency, mAP (%)."""
    rows = []
    for name, s in stages.items():
        lat = s.get("latency_ms") or {}
        rows.append(
            {
                "stage": name,
                "params_m": round(s["params"] / 1e6, 3),
                "gflops": round(s["gflops"], 3),
                "size_mb": s.get("size_mb"),
                "latency_ms": lat.get("median"),
                "map50_95": round(100 * s["map"], 2) if s.get("map") is not None else None,
                "map50": round(100 * s["map50"], 2) if s.get("map50") is not None else None,
            }
        )
    return rows
