"""The export check's NMS specification: greedy NMS of each anchor's top class, and only it,
up to near ties."""

import numpy as np
import pytest
import torch

from yoloslim.eval.postprocess import postprocess
from yoloslim.export.nms import nms_violation

NMS = {"conf": 0.5, "iou": 0.5, "max_det": 300}


def _preds(seed, anchors=150, nc=3):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(anchors, 2, generator=g) * 80
    wh = torch.rand(anchors, 2, generator=g) * 50 + 4
    scores = torch.rand(anchors, nc, generator=g)
    return torch.cat([xy, xy + wh, scores], 1).numpy().astype(np.float64)


def _greedy(preds, **overrides):
    ref = postprocess(torch.as_tensor(preds)[None], **{**NMS, **overrides})[0]
    return ref[:, :4].numpy(), ref[:, 4].numpy(), ref[:, 5].numpy()


@pytest.mark.parametrize("seed", range(6))
def test_greedy_nms_passes_and_each_kind_of_wrong_answer_is_named(seed):
    preds = _preds(seed)
    boxes, scores, classes = _greedy(preds)
    assert len(scores) > 5
    assert nms_violation(preds, (boxes, scores, classes), NMS) is None
    # one detection dropped: a candidate is left that nothing suppresses
    drop = [np.delete(a, 2, 0) for a in (boxes, scores, classes)]
    assert "neither kept nor suppressed" in nms_violation(preds, drop, NMS)
    # a suppressed candidate kept as well: two of a class overlap
    loose = _greedy(preds, iou=0.9)
    assert len(loose[1]) > len(scores)
    assert "overlap at IoU" in nms_violation(preds, loose, NMS)
    # a stricter IoU threshold suppresses too much
    tight = _greedy(preds, iou=0.2)
    assert "neither kept nor suppressed" in nms_violation(preds, tight, NMS)
    # a wrong class, a shifted box, a score below conf, the wrong order
    wrong = classes.copy()
    wrong[0] = (wrong[0] + 1) % 3
    assert "is no candidate" in nms_violation(preds, (boxes, scores, wrong), NMS)
    shifted = boxes.copy()
    shifted[1] += 0.5
    assert "is no candidate" in nms_violation(preds, (shifted, scores, classes), NMS)
    low = _greedy(preds, conf=0.3)
    assert "not above conf" in nms_violation(preds, low, NMS)
    flipped = [a[::-1] for a in (boxes, scores, classes)]
    assert "not sorted" in nms_violation(preds, flipped, NMS)


def test_a_near_tie_may_go_either_way_but_a_real_gap_may_not():
    # A overlaps B, B overlaps C, A and C apart: greedy keeps A and C when A > B, B alone when B > A
    preds = np.array(
        [
            [0, 0, 10, 10, 0.8, 0],  # A
            [4, 0, 14, 10, 0.8, 0],  # B: IoU(A, B) = 0.43, IoU(B, C) = 0.43
            [8, 0, 18, 10, 0.7, 0],  # C: IoU(A, C) = 0.11
        ],
        np.float64,
    )
    nms = {"conf": 0.5, "iou": 0.4, "max_det": 10}

    def kept(rows):
        return preds[rows, :4], preds[rows, 4], preds[rows, 5]

    preds[1, 4] = 0.8 + 5e-5  # B a hair above A: either answer is a valid NMS
    assert nms_violation(preds, kept([0, 2]), nms) is None
    assert nms_violation(preds, kept([1]), nms) is None
    preds[1, 4] = 0.79  # B clearly below A: only greedy's answer
    assert nms_violation(preds, kept([0, 2]), nms) is None
    assert "neither kept nor suppressed" in nms_violation(preds, kept([1]), nms)


def test_max_det_caps_the_detections_and_excuses_lower_candidates():
    preds = _preds(7)
    boxes, scores, classes = _greedy(preds, max_det=4)
    cap = {**NMS, "max_det": 4}
    assert len(scores) == 4 and nms_violation(preds, (boxes, scores, classes), cap) is None
    more = _greedy(preds, max_det=5)
    assert "more than max_det" in nms_violation(preds, more, cap)
    three = [a[:3] for a in (boxes, scores, classes)]
    assert "neither kept nor suppressed" in nms_violation(preds, three, cap)


def test_the_export_check_accepts_a_near_tie_order_and_names_a_wrong_answer():
    from pathlib import Path

    from yoloslim.errors import ExportError
    from yoloslim.export.nms import _compare

    preds = torch.tensor(
        [[[0, 0, 10, 10, 0.8, 0], [4, 0, 14, 10, 0.8 + 5e-5, 0], [8, 0, 18, 10, 0.7, 0]]]
    )
    nms = {"conf": 0.5, "iou": 0.4, "max_det": 10}
    image = [np.zeros((1, 3, 32, 32), np.float32)]  # the boxes are inside it: none clipped

    def runner(rows):  # what a runtime's end-to-end graph returns for these rows of preds
        p = preds[0, rows].numpy()
        return lambda x: (np.array([len(rows)]), p[None, :, :4], p[None, :, 4], p[None, :, 5])

    # greedy keeps B alone; A and C is what a runtime that sees A a hair higher keeps
    report = _compare(
        Path("e2e.onnx"), {"a": runner([1]), "b": runner([0, 2])}, image, [preds], nms
    )
    assert [r[0]["match"] for r in report.values()] == ["exact", "near_ties"]
    with pytest.raises(ExportError, match=r"NMS in c .* \(2 vs 1 detections\): .*overlap"):
        _compare(Path("e2e.onnx"), {"c": runner([1, 2])}, image, [preds], nms)


def test_an_anchors_near_tied_classes_may_be_its_top_class_in_either_runtime():
    preds = np.array([[0, 0, 10, 10, 0.6, 0.6 + 5e-8, 0.55]], np.float64)  # classes 0, 1 tie
    nms = {"conf": 0.5, "iou": 0.5, "max_det": 10}

    def one(cls):
        return preds[:, :4], np.array([preds[0, 4 + cls]]), np.array([cls])

    assert nms_violation(preds, one(0), nms) is None  # what one runtime's argmax says
    assert nms_violation(preds, one(1), nms) is None  # and the other's
    assert "is no candidate" in nms_violation(preds, one(2), nms)  # 0.55 is no top class
    empty = (np.zeros((0, 4)), np.zeros(0), np.zeros(0))
    assert "neither kept nor suppressed" in nms_violation(preds, empty, nms)
