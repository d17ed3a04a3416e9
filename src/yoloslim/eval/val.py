"""``validate``: COCO mAP of a checkpoint, an exported artifact, a module or a Predictor on a
dataset split (val by default)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from yoloslim.data import DetectionDataset, load_data_config, load_samples
from yoloslim.data.config import check_class_count
from yoloslim.errors import ConfigError, DataError, ModelError
from yoloslim.eval.evaluator import evaluate
from yoloslim.progress import shown
from yoloslim.torch_state import keeps_caller_state

__all__ = ["require_boxes", "validate"]

log = logging.getLogger(__name__)


def require_boxes(data: str | Path, split: str = "val") -> None:
    """Raise DataError when ``split`` has no labelled box: its mAP is undefined (None), and
    a tool that compares mAPs (quantize, bench, compress) cannot work without one."""
    cfg = load_data_config(data)
    if not any(len(s.boxes) for s in load_samples(cfg, split)):
        raise DataError(
            f"{data}: the {split} split has no labelled box, so mAP is undefined; "
            "check its labels folder"
        )


#: above it, val warns that mAP is lower than at the COCO threshold (0.001)
LOW_CONF = 0.01


@keeps_caller_state
@torch.no_grad()
def validate(
    model: str | Path | nn.Module,
    data: str | Path,
    *,
    imgsz: int | None = None,
    batch: int = 16,
    conf: float = 0.001,
    iou: float = 0.65,
    split: str = "val",
    progress: bool = False,
    ov_precision: str | None = None,
    max_det: int = 300,
) -> dict:
    """Evaluate a model, checkpoint or exported artifact (.onnx, .xml, .torchscript), or a
    Predictor of one, on ``split``.

    Each artifact runs in its own runtime: an OpenVINO IR at the plugin's default precision
    (bf16 on AVX512-BF16/AMX CPUs), so its mAP can differ a little from the checkpoint's. A
    Predictor is evaluated as it was loaded (its device, threads, OpenVINO precision and
    input size; a ``.pt`` in its deploy form); its ``conf`` and ``iou`` are not used (mAP
    wants the low ``conf`` below).

    ``imgsz`` defaults to the size the model was trained (or exported) at: the checkpoint's,
    the artifact's, or a Detector's ``imgsz`` attribute (set when it is loaded from a
    checkpoint); a module without one is evaluated at 320, with a warning.

    Args:
        model: a Detector (or any module giving the decoded ``(B, A, 4 + nc)`` output), a
            checkpoint path, an exported artifact, or a Predictor.
        data: the data.yaml.
        imgsz: the input size, a multiple of 32 (default: the model's, see above).
        batch: images per forward pass.
        conf: the score threshold (COCO mAP wants it low: 0.001).
        iou: the NMS IoU threshold, in (0, 1].
        split: ``"val"`` or ``"train"``.
        progress: show a progress bar.
        ov_precision: what OpenVINO computes an ``.xml`` in (``"f32"``, ``"bf16"``,
            ``"f16"``; default: the plugin's choice). A ConfigError for another artifact.
        max_det: detections kept per image (an image that gives this many is warned about:
            the lower-scored ones were not scored).

    A model whose class names are the data's in another order is scored by name (warned);
    other names, by index (warned).

    Returns:
        ``{"map", "map50", "map75", "per_class", "map_by_size", "images", "detections",
        "speed_ms_per_image", "imgsz", "model", "runtime", "precision", "conf", "iou",
        "max_det", "capped_images", "capped_dense_images"}`` (mAP as fractions;
        ``map_by_size`` is COCO's small / medium / large split; None where undefined: see
        :func:`~yoloslim.eval.coco.coco_map`; ``runtime`` is torch, onnxruntime, openvino
        or torchscript; ``precision`` what it computed in, as ``bench`` reports it: an IR's
        ``bf16`` where the plugin chose it, ``int8+bf16`` for a quantized one).

    Raises:
        ConfigError: ``imgsz`` is not a multiple of 32; ``conf`` outside [0, 1] or ``iou``
            outside (0, 1].
        ModelError: the model's class count differs from the data's.

    Example:
        >>> metrics = validate("runs/nano/best.pt", "data/synth/data.yaml")
        >>> mAP = metrics["map"]  # mAP50-95 as a fraction; metrics["map50"], ["per_class"]
    """
    from yoloslim.compress.reparam import deploy_form
    from yoloslim.configs import DEFAULT_IMGSZ, brief, check_flags, check_imgsz, int_problem
    from yoloslim.eval.postprocess import check_nms_settings
    from yoloslim.models.checkpoint import load_checkpoint
    from yoloslim.runtime.backends import (
        check_ov_precision,
        check_static_imgsz,
        load_backend,
        refuse_end_to_end,
        say_loaded,
    )
    from yoloslim.runtime.predictor import Predictor, as_artifact

    check_imgsz(imgsz)
    check_nms_settings(conf=conf, iou=iou, max_det=max_det)
    check_flags(progress=progress)
    problem = int_problem(batch)
    if problem:
        raise ConfigError(f"batch={batch!r} {problem}")
    loaded = model.backend if isinstance(model, Predictor) else None
    if loaded is not None and ov_precision is not None:
        raise ConfigError(
            f"ov_precision={ov_precision!r}: a Predictor computes in the precision it was "
            f"loaded with ({loaded.precision}); load it with ov_precision=, or pass its path"
        )
    pred_imgsz = model.imgsz if loaded is not None else None
    model = as_artifact(model)
    if model is None or isinstance(model, dict):
        raise ConfigError(
            f"model={brief(model)}: expected a checkpoint or artifact path, a model or a Predictor"
        )
    name = str(model) if not isinstance(model, nn.Module) else type(model).__name__
    if (
        isinstance(model, nn.Module) or Path(model).suffix.lower() == ".pt"
    ):  # others: load_backend's
        check_ov_precision(ov_precision, name, openvino=False)
    runtime, precision, checkpoint = "torch", "fp32", None
    if isinstance(model, nn.Module):
        net, ck_imgsz = model, getattr(model, "imgsz", None)
        if not imgsz and not ck_imgsz:
            log.warning(
                "%s does not record the size it was trained at; evaluating at imgsz=%d "
                "(pass imgsz= to choose)",
                name,
                DEFAULT_IMGSZ,
            )
    elif Path(model).suffix.lower() == ".pt" and loaded is None:
        net, ckpt = load_checkpoint(model)
        # in its deploy form, as predict, bench and a Predictor run it (audit45 reparam F1:
        # the training form here, the deploy form with --threads)
        net = deploy_form(net)[0]
        ck_imgsz, checkpoint = ckpt["imgsz"], model
    else:  # a Predictor's own backend: its device, threads, precision and input size
        backend = loaded or load_backend(model, hint=ov_precision)
        refuse_end_to_end(backend, "val")
        net, ck_imgsz, runtime = _BackendModule(backend), backend.imgsz, backend.kind
        ck_imgsz = pred_imgsz or ck_imgsz
        precision = str(backend.precision)
        check_static_imgsz(backend, imgsz or None)
    imgsz = imgsz or ck_imgsz or DEFAULT_IMGSZ
    cfg = load_data_config(data)
    if hasattr(net, "nc"):
        check_class_count(net.nc, name, cfg)
    model_names = [str(n) for n in getattr(net, "names", cfg.names)]
    order = None  # the model's score channel of each of the data's classes
    if model_names != list(cfg.names) and sorted(model_names) == sorted(cfg.names):
        # the same classes in another order: matched by name (by index, a "cat" detection
        # was scored against the data's class 0 whatever it is: mAP 10.5 for 16.5)
        order = [model_names.index(n) for n in cfg.names]
        log.warning(
            "%s names its classes %s and %s %s: the same classes in another order, matched by name",
            name,
            model_names,
            data,
            list(cfg.names),
        )
    elif model_names != list(cfg.names):
        log.warning(
            "%s was trained with class names %s but %s names them %s; its class i is scored "
            "as the data's class i (the per-class APs use the data's names)",
            name,
            model_names,
            data,
            list(cfg.names),
        )
    if conf > LOW_CONF:
        log.warning(
            "conf=%g: mAP counts only the detections above it, so it is lower than at COCO's "
            "0.001 (the default); a deployment threshold is no mAP threshold",
            conf,
        )
    with shown(progress):
        samples = load_samples(cfg, split)
    ds = DetectionDataset(samples, imgsz, augment=False, names=cfg.names)
    was_training = net.training
    net.eval()
    first = next(net.parameters(), torch.empty(0))
    # a module on CUDA, or in half precision, gets its images on its device and in its dtype
    device = first.device
    dtype = first.dtype if first.dtype.is_floating_point else torch.float32
    if runtime == "torch":
        precision = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float64: "fp64"}.get(
            first.dtype, "fp32"
        )
    if checkpoint is not None:  # as load_backend says a model it loads (audit46 cli F3: -v
        # said nothing of a .pt that val loaded)
        say_loaded(checkpoint, "torch", torch.__version__, device, precision, imgsz)

    def infer(x: torch.Tensor) -> torch.Tensor:
        out = net(x.to(device, dtype))
        if not (isinstance(out, torch.Tensor) and out.ndim == 3 and out.shape[-1] >= 5):
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ModelError(
                f"model: {name} gives {got}, not a detector's decoded output (batch, anchors, "
                "4 + classes)"
            )
        return out if order is None else torch.cat([out[..., :4], out[..., 4:][..., order]], -1)

    try:
        res = evaluate(
            infer,
            ds,
            batch_size=batch,
            conf=conf,
            iou=iou,
            max_det=max_det,
            progress=progress,
        )
    finally:
        net.train(was_training)
    if res["capped_dense_images"]:  # (at conf 0.001 most images hit it, harmlessly)
        log.warning(
            "%d image(s) holding many objects (a third of max_det=%d or more) gave max_det "
            "detections, the cap: their lower-scored ones were not scored, so mAP may be "
            "lower than COCO's rule gives (raise max_det, --max-det)",
            res["capped_dense_images"],
            max_det,
        )
    res.update(
        imgsz=imgsz,
        model=name,
        runtime=runtime,
        precision=precision,
        conf=conf,
        iou=iou,
        max_det=max_det,
    )
    log.info(
        "%s: %d %s images at %d px (%s, %s): mAP50-95 %s, %d detections, %.1f ms per image",
        name,
        res["images"],
        split,
        imgsz,
        runtime,
        precision,
        "-" if res["map"] is None else f"{res['map']:.4f}",
        res["detections"],
        res["speed_ms_per_image"],
    )
    return res


class _BackendModule(nn.Module):
    """Lets an exported artifact stand where validate() expects a module."""

    def __init__(self, backend) -> None:
        super().__init__()
        self.backend = backend
        self.nc = len(backend.names)
        self.names = list(backend.names)

    def forward(self, x):
        return self.backend(x)
