"""End-to-end ONNX: append NonMaxSuppression to the exported graph.

Outputs (batch 1): ``num_dets`` (1,) int64, ``boxes`` (1, K, 4) xyxy in the letterboxed
input's pixels, clipped to it, ``scores`` (1, K), ``classes`` (1, K) int64, sorted by score,
K <= ``max_det``. Each anchor's top class is its candidate when it scores above ``conf``, and
NMS is class-aware, on the clipped boxes: what ``yoloslim predict`` computes on a square image
(:func:`yoloslim.eval.postprocess.postprocess` with ``multi_label=False``, of the boxes
clipped). The decode before NMS stays float.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import numpy as np
import torch

from yoloslim.errors import ConfigError, ExportError
from yoloslim.eval.postprocess import check_nms_settings, postprocess, scale_boxes
from yoloslim.fileio import staged

__all__ = [
    "E2E_OUTPUT_TEXT",
    "append_nms",
    "check_conf",
    "check_graph_nms",
    "nms_violation",
    "verify_nms",
]

E2E_OUTPUT_TEXT = (
    "num_dets (1,) int64; boxes (1, K, 4) x1, y1, x2, y2 in the letterboxed input's pixels, "
    "clipped to it; "
    "scores (1, K); classes (1, K) int64; sorted by score, the first num_dets valid. Each "
    "anchor's top class above nms_conf, class-aware NMS of the clipped boxes at nms_iou, at "
    "most nms_max_det "
    "(what yoloslim predict computes on a square image; on a padded one its NMS also takes "
    "boxes in the padding); original pixels: x = (x - left) / r, y = (y - top) / r"
)

logger = logging.getLogger(__name__)


def check_graph_nms(*, nms_conf: float, nms_iou: float, nms_max_det: int) -> None:
    """The end-to-end graph's settings, checked as predict checks its own
    (:func:`~yoloslim.eval.postprocess.check_nms_settings`).

    Raises:
        ConfigError: naming the setting.
    """
    check_nms_settings(nms_conf=nms_conf, nms_iou=nms_iou, nms_max_det=nms_max_det)
    _below_one(nms_iou, "nms_iou")


def _graph_iou(iou: float) -> np.float32:
    """The graph's IoU threshold: one float32 step over ``iou``. Predict drops a box at an
    IoU over ``iou``; ONNX Runtime's NonMaxSuppression drops it at an IoU over its threshold,
    OpenVINO's at one equal to it or over. With ``iou`` itself, OpenVINO dropped a box at an
    IoU of exactly ``iou`` (0.5 for boxes half over each other: audit46 export F1); one step
    up, both keep it, and the one IoU at which ONNX Runtime keeps a box that predict drops is
    that step over ``iou`` (0.50000006), no round number (audit46 review2 L)."""
    return np.nextafter(np.float32(iou), np.float32(2))


def _below_one(iou: float, name: str) -> None:
    """ConfigError for an IoU threshold whose graph threshold (:func:`_graph_iou`) is not
    below 1 (review L2: a value that rounds to 1 in float32 too)."""
    if _graph_iou(iou) >= 1:
        raise ConfigError(
            f"{name}={iou!r}: the graph's NonMaxSuppression threshold (one float32 step over "
            "it) would be 1 or more, where ONNX Runtime keeps identical boxes (or refuses it) "
            "and OpenVINO drops them; give a value below 0.9999999"
        )


def append_nms(
    src: Path,
    dst: Path,
    *,
    conf: float = 0.25,
    iou: float = 0.65,
    max_det: int = 300,
    check=None,
) -> Path:
    """Read the ONNX at ``src`` (output "preds", batch 1) and write the end-to-end graph to
    ``dst`` (``check``: run on it while it is staged, before it replaces ``dst``; see
    :func:`yoloslim.fileio.staged`).

    Raises:
        ConfigError: ``conf`` outside [0, 1], ``iou`` outside (0, 1), ``max_det`` not an
            integer >= 1.
        ExportError: ``src`` is not a plain batch-1 yoloslim graph.
    """
    check_nms_settings(conf=conf, iou=iou, max_det=max_det)
    _below_one(iou, "iou")
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(src)
    graph = model.graph
    if [o.name for o in graph.output] != ["preds"]:
        raise ExportError(f"{src}: expected a single output 'preds' to append NMS to")
    dims = graph.input[0].type.tensor_type.shape.dim
    if not dims[0].dim_value == 1:
        raise ExportError("NMS in the graph needs a static batch of 1 (export without --dynamic)")
    height, width = (d.dim_value for d in dims[2:]) if len(dims) == 4 else (0, 0)
    if not (height and width):
        raise ExportError(f"{src}: NMS in the graph needs a static (1, 3, H, W) input")

    def const(name, value, dtype):
        graph.initializer.append(numpy_helper.from_array(np.array(value, dtype=dtype), name))
        return name

    nc = graph.output[0].type.tensor_type.shape.dim[2].dim_value - 4
    if nc < 1:
        raise ExportError(f"{src}: 'preds' needs a static last axis of 4 + nc to append NMS to")
    c = {
        "classes": const("nms_class_ids", np.arange(nc).reshape(1, 1, nc), np.int64),
        "s0": const("nms_s0", [0], np.int64),
        "s4": const("nms_s4", [4], np.int64),
        "big": const("nms_big", [1 << 30], np.int64),
        "ax2": const("nms_ax2", [2], np.int64),
        "max_out": const("nms_max_out", [max_det], np.int64),
        "iou": const("nms_iou", [_graph_iou(iou)], np.float32),  # the metadata: ``iou``
        "conf": const("nms_conf", [conf], np.float32),
        "k": const("nms_k", [max_det], np.int64),
        "idx_ba": const("nms_idx_ba", [0, 2], np.int64),
        "one": const("nms_one", [1], np.int64),
        "ax0": const("nms_ax0", [0], np.int64),
        # boxes are clipped to the input before NMS, as predict clips them to the image
        # (two boxes past an edge that clip to one were both kept: audit49 cli F1)
        "lo": const("nms_lo", [0.0] * 4, np.float32),
        "hi": const("nms_hi", [width, height, width, height], np.float32),
    }
    n = helper.make_node
    graph.node.extend(
        [
            n("Slice", ["preds", c["s0"], c["s4"], c["ax2"]], ["nms_boxes_raw"]),
            n("Max", ["nms_boxes_raw", c["lo"]], ["nms_boxes_low"]),
            n("Min", ["nms_boxes_low", c["hi"]], ["nms_boxes"]),
            n("Slice", ["preds", c["s4"], c["big"], c["ax2"]], ["nms_cls_all"]),
            # each anchor's top class only (the first of equal ones, as torch's max): the
            # other classes' scores become 0, below any threshold
            n("ArgMax", ["nms_cls_all"], ["nms_top_class"], axis=2, keepdims=1),
            n("Equal", [c["classes"], "nms_top_class"], ["nms_is_top"]),
            n("Cast", ["nms_is_top"], ["nms_top_mask"], to=TensorProto.FLOAT),
            n("Mul", ["nms_cls_all", "nms_top_mask"], ["nms_cls"]),
            n("Transpose", ["nms_cls"], ["nms_scores_t"], perm=[0, 2, 1]),
            n(
                "NonMaxSuppression",
                ["nms_boxes", "nms_scores_t", c["max_out"], c["iou"], c["conf"]],
                ["nms_sel"],
                center_point_box=0,
            ),
            n("Gather", ["nms_sel", c["idx_ba"]], ["nms_sel_ba"], axis=1),
            n("GatherND", ["nms_boxes", "nms_sel_ba"], ["nms_all_boxes"]),
            n("GatherND", ["nms_scores_t", "nms_sel"], ["nms_all_scores"]),
            n("Gather", ["nms_sel", c["one"]], ["nms_all_cls2"], axis=1),
            n("Shape", ["nms_all_scores"], ["nms_count"]),
            n("Min", ["nms_count", c["k"]], ["nms_kk"]),
            n(
                "TopK",
                ["nms_all_scores", "nms_kk"],
                ["nms_top_scores", "nms_top_idx"],
                axis=0,
                largest=1,
                sorted=1,
            ),
            n("Gather", ["nms_all_boxes", "nms_top_idx"], ["nms_top_boxes"], axis=0),
            n("Gather", ["nms_all_cls2", "nms_top_idx"], ["nms_top_cls2"], axis=0),
            n("Squeeze", ["nms_top_cls2", c["one"]], ["nms_top_cls"]),
            n("Unsqueeze", ["nms_top_boxes", c["ax0"]], ["boxes"]),
            n("Unsqueeze", ["nms_top_scores", c["ax0"]], ["scores"]),
            n("Unsqueeze", ["nms_top_cls", c["ax0"]], ["classes"]),
            n("Identity", ["nms_kk"], ["num_dets"]),
        ]
    )
    del graph.output[:]
    graph.output.extend(
        [
            helper.make_tensor_value_info("num_dets", TensorProto.INT64, [1]),
            helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, "k", 4]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, "k"]),
            helper.make_tensor_value_info("classes", TensorProto.INT64, [1, "k"]),
        ]
    )
    meta = {
        "output": E2E_OUTPUT_TEXT,
        "nms_conf": conf,
        "nms_iou": iou,
        "nms_max_det": max_det,
        "nms_multi_label": "false",
    }
    kept = [p for p in model.metadata_props if p.key not in meta]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, str(value)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        raise ExportError(f"{dst}: the end-to-end NMS graph is invalid: {e}") from e
    with staged(dst, check=check) as tmp:
        onnx.save(model, str(tmp))
    return dst


def check_conf(preds: np.ndarray, conf: float, *, candidates: int = 20) -> float | None:
    """A score threshold below ``conf`` that lets about ``candidates`` anchors of ``preds``
    (the probe images' decoded outputs) through on their top class, placed midway between
    two scores at least 1e-5 apart so that no score sits on it; None when no such threshold
    is below ``conf`` (all scores flat, or ``conf`` already admits that many)."""
    scores = np.unique(preds[..., 4:].astype(np.float64).max(-1).ravel())[::-1]  # descending
    for i in range(candidates - 1, len(scores) - 1):
        if scores[i] - scores[i + 1] > 1e-5:
            threshold = float((scores[i] + scores[i + 1]) / 2)
            return threshold if threshold < conf else None
    return None


def _runners(e2e: Path, runtimes: tuple[str, ...]) -> tuple[dict, dict]:
    """``{runtime: run(images) -> (num_dets, boxes, scores, classes)}`` and their versions."""
    import onnxruntime as ort

    from yoloslim.runtime.backends import ort_cpu_session

    session = ort_cpu_session(str(e2e))
    runners = {"onnxruntime": lambda a: session.run(None, {"images": a})}
    versions = {"onnxruntime": ort.__version__}
    if "openvino" in runtimes:
        import openvino as ov

        from yoloslim.runtime.ov_core import openvino_core

        compiled = openvino_core().compile_model(
            str(e2e), "CPU", {"INFERENCE_PRECISION_HINT": "f32"}
        )
        runners["openvino"] = lambda a: [np.array(v) for v in compiled({0: a}).values()]
        versions["openvino"] = ov.get_version()
    return runners, versions


def nms_violation(preds: np.ndarray, dets: tuple, nms: dict, *, tol: float = 1e-4) -> str | None:
    """Why ``dets`` is not a greedy class-aware NMS of ``preds``; None when it is.

    ``preds`` is one image's decoded output ``(A, 4 + C)``; ``dets`` is ``(boxes (K, 4),
    scores (K,), classes (K,))``. An anchor's candidate is its top class (any class within
    ``tol`` of its best score may be the one a runtime picks) when it scores above ``conf``.
    The detections must be candidates (that class, score within ``tol``, box within 1e-2
    px) scoring above ``conf``, sorted by score, at most ``max_det``; no two of a class may
    overlap above ``iou``; and every anchor left out that scores above ``conf`` must be
    suppressed: one of its candidate classes overlaps a kept box of that class above ``iou``
    whose score is not lower (only anchors scoring above the last kept box when
    ``max_det`` is reached). With distinct scores exactly one set passes, greedy NMS's;
    ``tol`` lets scores within it (near ties, two runtimes' rounding, the threshold
    itself) and IoUs within it of ``iou`` go either way.
    """
    from yoloslim.boxes import box_iou

    boxes, scores, classes = (np.asarray(d, dtype=np.float64) for d in dets)
    cls = preds[:, 4:].astype(np.float64)
    best = cls.max(1)
    # (anchor, class) pairs a runtime may keep: near its anchor's best, near or above conf
    a, c = np.nonzero((cls >= best[:, None] - tol) & (cls > nms["conf"] - tol))
    cand_boxes, cand_scores = preds[a, :4].astype(np.float64), cls[a, c]
    if len(scores) > nms["max_det"]:
        return f"{len(scores)} detections, more than max_det {nms['max_det']}"
    if np.any(np.diff(scores) > tol):
        return "detections are not sorted by score"
    if np.any(scores <= nms["conf"] - tol):
        return f"a detection scores {scores.min():.6g}, not above conf {nms['conf']:.4g}"
    same = classes[:, None] == c[None, :]
    close = np.abs(scores[:, None] - cand_scores[None, :]) <= tol
    near = np.abs(boxes[:, None, :] - cand_boxes[None, :, :]).max(-1, initial=0) <= 1e-2
    match = same & close & near
    if not match.any(1).all():
        k = int(np.argmin(match.any(1)))
        return f"detection {k} (class {int(classes[k])}, score {scores[k]:.6g}) is no candidate"
    iou_dd = box_iou(torch.as_tensor(boxes), torch.as_tensor(boxes)).numpy()
    pairs = (classes[:, None] == classes[None, :]) & (iou_dd > nms["iou"] + tol)
    np.fill_diagonal(pairs, False)
    if pairs.any():
        i, j = np.argwhere(pairs)[0]
        return f"detections {i} and {j} (class {int(classes[i])}) overlap at IoU {iou_dd[i, j]:.4f}"
    iou_dc = box_iou(torch.as_tensor(boxes), torch.as_tensor(cand_boxes)).numpy()
    covers = same & (iou_dc > nms["iou"] - tol) & (scores[:, None] >= cand_scores[None, :] - tol)
    done = (match | covers).any(0)  # per pair: kept, or suppressed by a kept box
    # per anchor: one of its candidate pairs kept or suppressed, unless it may drop out
    floor = nms["conf"] + tol
    if len(scores) == nms["max_det"]:
        floor = max(floor, scores.min() + tol)
    for anchor in np.unique(a[best[a] > floor]):
        if not done[a == anchor].any():
            k = int(np.argmax(a == anchor))
            return (
                f"a candidate of class {int(c[k])} scoring {cand_scores[k]:.6g} is neither "
                "kept nor suppressed by a kept box"
            )
    return None


def _compare(e2e: Path, runners: dict, images: list, plain_out: list, nms: dict) -> dict:
    """Per runtime, one ``{detections, reference, passed, match}`` per image; raises on a mismatch.

    ``match`` is ``exact`` (the same detections as :func:`postprocess`, in order) or
    ``near_ties`` (a different but valid NMS, :func:`nms_violation`: scores within 1e-4
    were ordered the other way, as two runtimes' rounding may do)."""
    report: dict = {}
    for x, preds in zip(images, plain_out, strict=True):
        preds = _clipped(preds, x.shape[-2:])  # as the graph clips them before its NMS
        ref = postprocess(preds, **nms)[0]
        for name, run in runners.items():
            num, boxes, scores, classes = run(x)
            n = int(num[0])
            ok = n == len(ref) and np.allclose(scores[0], ref[:, 4].numpy(), atol=1e-4)
            # boxes and classes are compared where the score order is unambiguous
            distinct = np.diff(ref[:, 4].numpy()) < -1e-4
            mask = np.concatenate([[True], distinct]) & np.concatenate([distinct, [True]])
            if ok and len(ref) and mask.any():
                ok = bool(
                    np.allclose(boxes[0][mask], ref[mask, :4].numpy(), atol=1e-2)
                    and (classes[0][mask] == ref[mask, 5].numpy()).all()
                )
            match = "exact"
            if not ok:
                dets = (boxes[0][:n], scores[0][:n], classes[0][:n])
                why = nms_violation(np.asarray(preds[0], dtype=np.float64), dets, nms)
                if why is not None:
                    raise ExportError(
                        f"{e2e}: NMS in {name} at conf {nms['conf']:.4g} disagrees with the "
                        f"torch postprocess ({n} vs {len(ref)} detections): {why}"
                    )
                match = "near_ties"
            report.setdefault(name, []).append(
                {"detections": n, "reference": len(ref), "passed": True, "match": match}
            )
    return report


def _clipped(preds, shape: tuple[int, int]) -> torch.Tensor:
    """``(B, A, 4 + C)`` ``preds`` with their boxes clipped to an input of ``(h, w)``."""
    out = torch.as_tensor(preds).clone()
    out[..., :4] = scale_boxes(out[..., :4], 1.0, (0.0, 0.0), shape)  # no resize, no padding
    return out


# the graph's constants that hold its NMS settings, as append_nms names them
_SETTING_CONSTANTS = {
    "nms_conf": "conf",
    "nms_iou": "iou",
    "nms_max_out": "max_det",
    "nms_k": "max_det",
}


def _check_constants(e2e: Path, model, nms: dict) -> None:
    """ExportError unless the graph ``model`` (of the file ``e2e``) computes with the
    settings its metadata states (what the comparison takes as the reference's)."""
    from onnx import numpy_helper

    found = {
        t.name: numpy_helper.to_array(t).item()
        for t in model.graph.initializer
        if t.name in _SETTING_CONSTANTS
    }
    wrong = {
        name: value
        for name, value in found.items()
        if not np.isclose(value, nms[_SETTING_CONSTANTS[name]], rtol=1e-6, atol=0)
    }
    if len(found) != len(_SETTING_CONSTANTS) or wrong:
        raise ExportError(
            f"{e2e}: its NMS constants {found} are not the settings its metadata states "
            f"({nms}); re-export it with --nms"
        )


def _with_conf(model, dst: Path, conf: float) -> Path:
    """``dst``: a copy of the graph ``model`` whose score threshold is ``conf``, all else as
    shipped: the lower-threshold comparison runs the artifact itself, not a graph built
    anew."""
    import onnx
    from onnx import numpy_helper

    model = copy.deepcopy(model)
    for i, t in enumerate(model.graph.initializer):
        if t.name == "nms_conf":
            value = np.array([conf], dtype=numpy_helper.to_array(t).dtype)
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(value, "nms_conf"))
    onnx.save(model, dst)
    return dst


def verify_nms(
    e2e: Path, plain: Path, *, runtimes: tuple[str, ...] = ("onnxruntime", "openvino")
) -> dict:
    """Check the end-to-end graph against :func:`postprocess` on the plain ONNX output.

    Detections are compared as sets ordered by score: same count, scores within 1e-4,
    classes equal and boxes within 1e-2 px wherever scores are not tied. Where they
    differ, the runtime's detections must still be a greedy NMS of the same candidates
    up to near ties (:func:`nms_violation`); such images say ``match: near_ties``. OpenVINO runs
    the graph with ``INFERENCE_PRECISION_HINT`` f32 here: this checks the NMS, not the
    plugin's bf16 default on AVX512-BF16/AMX CPUs (whose drift export's own check bounds).

    The probe images (noise and a gradient) rarely score above a deployment threshold
    such as 0.25, and 0 detections against 0 proves nothing. So a copy of the graph, in a
    temporary file, with only its score threshold lowered (:func:`check_conf`: about 20
    candidates on the probe images) is compared the same way (``low_conf_check``); the
    graph's constants must first equal the settings its metadata states. When
    neither comparison saw a detection the report says so (``warning``) and a warning is
    logged.
    """
    import tempfile

    import onnx

    from yoloslim.export.common import onnx_metadata
    from yoloslim.export.verify import probe_images
    from yoloslim.runtime.backends import load_backend

    shipped = onnx.load(e2e)  # read once: its metadata, its constants, its copy
    meta = onnx_metadata(shipped)
    nms = {
        "conf": float(meta["nms_conf"]),
        "iou": float(meta["nms_iou"]),
        "max_det": int(meta["nms_max_det"]),
    }
    _check_constants(e2e, shipped, nms)
    plain_backend = load_backend(plain)
    images = [img[None].numpy() for img in probe_images(plain_backend.imgsz, batch=2)]
    plain_out = [plain_backend(x) for x in images]
    runners, versions = _runners(e2e, runtimes)
    report = _compare(e2e, runners, images, plain_out, nms)
    seen = sum(r["reference"] for r in report["onnxruntime"])
    result: dict = {"runtimes": report}
    low = check_conf(np.concatenate([p.numpy() for p in plain_out]), nms["conf"])
    if low is not None:
        with tempfile.TemporaryDirectory(prefix="yoloslim-nms-") as tmp:
            check = _with_conf(shipped, Path(tmp) / "check.onnx", low)
            low_report = _compare(
                e2e, _runners(check, runtimes)[0], images, plain_out, {**nms, "conf": low}
            )
        result["low_conf_check"] = {"conf": low, "runtimes": low_report}
        seen += sum(r["reference"] for r in low_report["onnxruntime"])
    result["detections_compared"] = seen
    if not seen:
        result["warning"] = (
            "no detection was compared: the model scores nothing on the probe images, so "
            "this check cannot tell a working NMS graph from one that outputs no boxes"
        )
        logger.warning("%s: %s", e2e, result["warning"])
    return {
        **result,
        "runtime_versions": versions,
        "passed": True,
        "compared_with": "postprocess (each anchor's top class), as yoloslim predict",
        "openvino_precision_hint": "f32" if "openvino" in runtimes else None,
        **nms,
    }
