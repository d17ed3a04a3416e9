"""End-to-end ONNX: append NonMaxSuppression to the exported graph.

Outputs (batch 1): ``num_dets`` (1,) int64, ``boxes`` (1, K, 4) xyxy input pixels,
``scores`` (1, K), ``classes`` (1, K) int64, sorted by score, K <= ``max_det``.
NMS is class-aware and multi-label (every class score above ``conf`` is a
candidate), which is what :func:`yoloslim.eval.postprocess.postprocess` computes
with ``multi_label=True``. The decode before NMS stays float.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from yoloslim.errors import ExportError

__all__ = ["append_nms", "verify_nms"]


def append_nms(
    src: Path, dst: Path, *, conf: float = 0.25, iou: float = 0.65, max_det: int = 300
) -> Path:
    """Read the ONNX at ``src`` (output "preds", batch 1) and write the end-to-end graph to ``dst``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(src)
    graph = model.graph
    if [o.name for o in graph.output] != ["preds"]:
        raise ExportError(f"{src}: expected a single output 'preds' to append NMS to")
    dims = graph.input[0].type.tensor_type.shape.dim
    if not dims[0].dim_value == 1:
        raise ExportError("NMS in the graph needs a static batch of 1 (export without --dynamic)")

    def const(name, value, dtype):
        graph.initializer.append(numpy_helper.from_array(np.array(value, dtype=dtype), name))
        return name

    c = {
        "s0": const("nms_s0", [0], np.int64),
        "s4": const("nms_s4", [4], np.int64),
        "big": const("nms_big", [1 << 30], np.int64),
        "ax2": const("nms_ax2", [2], np.int64),
        "max_out": const("nms_max_out", [max_det], np.int64),
        "iou": const("nms_iou", [iou], np.float32),
        "conf": const("nms_conf", [conf], np.float32),
        "k": const("nms_k", [max_det], np.int64),
        "idx_ba": const("nms_idx_ba", [0, 2], np.int64),
        "one": const("nms_one", [1], np.int64),
        "ax0": const("nms_ax0", [0], np.int64),
    }
    n = helper.make_node
    graph.node.extend(
        [
            n("Slice", ["preds", c["s0"], c["s4"], c["ax2"]], ["nms_boxes"]),
            n("Slice", ["preds", c["s4"], c["big"], c["ax2"]], ["nms_cls"]),
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
    for key, value in {"nms_conf": conf, "nms_iou": iou, "nms_max_det": max_det}.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, str(value)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        raise ExportError(f"the end-to-end NMS graph is invalid: {e}") from e
    onnx.save(model, dst)
    return dst


def verify_nms(
    e2e: Path, plain: Path, *, runtimes: tuple[str, ...] = ("onnxruntime", "openvino")
) -> dict:
    """Check the end-to-end graph against :func:`postprocess` on the plain ONNX output.

    Detections are compared as sets ordered by score: same count, scores within 1e-4,
    classes equal and boxes within 1e-2 px wherever scores are not tied. OpenVINO runs
    the graph with ``INFERENCE_PRECISION_HINT`` f32 here: this checks the NMS, not the
    plugin's bf16 default on AVX512-BF16/AMX CPUs (whose drift export's own check bounds).
    """
    import onnxruntime as ort

    from yoloslim.eval.postprocess import postprocess
    from yoloslim.export.common import onnx_metadata
    from yoloslim.export.verify import probe_images
    from yoloslim.runtime.backends import load_backend

    meta = onnx_metadata(e2e)
    conf, iou, max_det = float(meta["nms_conf"]), float(meta["nms_iou"]), int(meta["nms_max_det"])
    plain_backend = load_backend(plain)
    session = ort.InferenceSession(str(e2e), providers=["CPUExecutionProvider"])
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
    report: dict = {}
    for img in probe_images(plain_backend.imgsz, batch=2):
        x = img[None].numpy()
        ref = postprocess(plain_backend(x), conf=conf, iou=iou, max_det=max_det, multi_label=True)
        ref = ref[0]
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
            report.setdefault(name, []).append(
                {"detections": n, "reference": len(ref), "passed": bool(ok)}
            )
            if not ok:
                raise ExportError(
                    f"{e2e}: NMS in {name} disagrees with the torch postprocess "
                    f"({n} vs {len(ref)} detections)"
                )
    return {
        "runtimes": report,
        "runtime_versions": versions,
        "passed": True,
        "compared_with": "postprocess(multi_label=True)",
        "openvino_precision_hint": "f32" if "openvino" in runtimes else None,
        "conf": conf,
        "iou": iou,
        "max_det": max_det,
    }
