"""The CUDA paths, end to end, on a machine with a GPU (CI has none, so the tests cannot).

Trains damo-nano a few epochs on CUDA with mixed precision (and once without), checks the
checkpoint reloads with ``weights_only=True`` and that its raw predictions on CUDA match
those on the CPU, exports TorchScript and runs it on CUDA, validates the model on CUDA and on
the CPU (the same mAP), and distills a student on CUDA. Prints one JSON object; ``ok`` is
false when any check failed, and ``failures`` names them.

    python benchmarks/cuda_check.py --out runs/cuda_check

Differences are in pixels of box coordinates and in class probability. cuDNN may use TF32
for convolutions, so CUDA-vs-CPU differences of ~1e-2 px are expected; 0.5 px is the bound.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

import torch

import yoloslim as ys
from yoloslim.runtime.backends import load_backend

BOX_TOL_PX = 0.5
PROB_TOL = 0.01


def _diff(a: torch.Tensor, b: torch.Tensor) -> dict:
    """Largest box (px) and class-probability differences of two (B, A, 4 + nc) outputs."""
    return {
        "box_px": round(float((a[..., :4] - b[..., :4]).abs().max()), 6),
        "prob": round(float((a[..., 4:] - b[..., 4:]).abs().max()), 6),
    }


def _close(d: dict) -> bool:
    return d["box_px"] <= BOX_TOL_PX and d["prob"] <= PROB_TOL


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", default="runs/cuda_check")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--device", default="cuda", help="cpu only to try the script itself")
    args = ap.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("cuda_check: torch sees no CUDA device")
    dev = args.device
    out = Path(args.out)
    data = ys.synthesize(out / "data", images=args.images, imgsz=320, classes=4, seed=0)
    row: dict = {
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name() if dev != "cpu" else None,
        "checks": {},
    }
    failures: list[str] = []

    def check(name: str, fn) -> None:
        t0 = time.time()
        try:
            res = fn()
            ok = res.pop("ok", True)
        except Exception as e:  # a failed check is reported, the others still run
            res, ok = {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()}, False
        res["seconds"] = round(time.time() - t0, 1)
        row["checks"][name] = res
        if not ok:
            failures.append(name)

    def cfg(**kw) -> ys.TrainConfig:
        base = dict(epochs=args.epochs, imgsz=320, batch=16, workers=2, device=dev, val_interval=1)
        return ys.TrainConfig(**{**base, **kw})

    def train(amp: bool) -> dict:
        res = ys.train(
            "damo-nano", data, config=cfg(amp=amp), out=out / f"train_amp{int(amp)}", exist_ok=True
        )
        model = ys.load_checkpoint(res.best)[0]  # weights_only=True inside
        on_cuda = next(model.parameters()).is_cuda
        m = ys.validate(res.best, data)
        return {"map": round(m["map"], 4), "reloads_on_cpu": not on_cuda, "ok": not on_cuda}

    check("train_amp", lambda: train(True))
    check("train_fp32", lambda: train(False))
    best = out / "train_amp1" / "best.pt"
    x = torch.rand(2, 3, 320, 320, generator=torch.Generator().manual_seed(0))

    def backend_match(path: Path) -> dict:
        cpu = load_backend(path, device="cpu")(x)
        gpu = load_backend(path, device=dev)(x)
        d = _diff(gpu, cpu)
        return {
            **d,
            "on_cpu": gpu.device.type == "cpu",
            "ok": _close(d) and gpu.device.type == "cpu",
        }

    check("torch_backend", lambda: backend_match(best))

    def torchscript() -> dict:
        res = ys.export(best, out / "export", formats=["torchscript"])
        return backend_match(res.artifacts["torchscript"])

    check("torchscript", torchscript)

    def validate_on_cuda() -> dict:
        model = ys.load_checkpoint(best)[0]
        cpu = ys.validate(model, data)["map"]
        gpu = ys.validate(model.to(dev), data)["map"]
        # within 0.001 mAP (0.1 point): CUDA's kernels differ from the CPU's in the last bits
        return {"map_cpu": round(cpu, 4), "map_cuda": round(gpu, 4), "ok": abs(cpu - gpu) < 0.001}

    check("validate", validate_on_cuda)

    def distill() -> dict:
        dcfg = ys.DistillConfig(train=cfg())  # --epochs, as the other checks
        res = ys.distill("damo-nano", best, data, config=dcfg, out=out / "distill", exist_ok=True)
        return {"map": round(ys.validate(res.artifacts["best"], data)["map"], 4)}

    check("distill", distill)
    row["failures"] = failures
    row["ok"] = not failures
    print(json.dumps(row))
    if failures:  # a script or CI that reads the exit code sees the failure too
        sys.exit(1)


if __name__ == "__main__":
    main()
