"""Evaluation: decode-side post-processing (NMS) and COCO mAP."""

from yoloslim.eval.coco import coco_map
from yoloslim.eval.evaluator import evaluate
from yoloslim.eval.postprocess import batched_nms, nms, postprocess, scale_boxes

__all__ = ["batched_nms", "coco_map", "evaluate", "nms", "postprocess", "scale_boxes"]
