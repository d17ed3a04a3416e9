import pytest
import torch

from yoloslim.boxes import box_iou
from yoloslim.eval.postprocess import batched_nms, nms, postprocess, scale_boxes


def _brute_nms(boxes, scores, thr):
    order = sorted(range(len(scores)), key=lambda i: -float(scores[i]))
    keep = []
    for i in order:
        if all(box_iou(boxes[i : i + 1], boxes[j : j + 1]).item() <= thr for j in keep):
            keep.append(i)
    return keep


def _random_boxes(n, g):
    xy = torch.rand(n, 2, generator=g) * 100
    wh = torch.rand(n, 2, generator=g) * 40 + 2
    return torch.cat([xy, xy + wh], 1)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("thr", [0.3, 0.5, 0.7])
def test_nms_matches_brute_force(seed, thr):
    g = torch.Generator().manual_seed(seed)
    n = 60
    boxes = _random_boxes(n, g)
    scores = torch.randperm(n, generator=g).float() / n  # distinct: no ties
    assert nms(boxes, scores, thr).tolist() == _brute_nms(boxes, scores, thr)


@pytest.mark.parametrize("seed", range(5))
def test_batched_nms_matches_per_class_brute_force(seed):
    g = torch.Generator().manual_seed(seed)
    n = 80
    boxes = _random_boxes(n, g)
    scores = torch.randperm(n, generator=g).float() / n
    classes = torch.randint(0, 3, (n,), generator=g)
    expected = []
    for c in range(3):
        idx = (classes == c).nonzero().flatten()
        expected += idx[_brute_nms(boxes[idx], scores[idx], 0.5)].tolist()
    got = batched_nms(boxes, scores, classes, 0.5).tolist()
    assert sorted(got) == sorted(expected)
    assert got == sorted(got, key=lambda i: -float(scores[i]))


def test_nms_empty_and_class_aware():
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.5).numel() == 0
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.5, 0.0, 10.5, 10.0]])
    scores = torch.tensor([0.9, 0.8])
    assert nms(boxes, scores, 0.5).tolist() == [0]
    assert sorted(batched_nms(boxes, scores, torch.tensor([0, 1]), 0.5).tolist()) == [0, 1]


def test_postprocess_filters_and_caps():
    preds = torch.zeros(2, 10, 4 + 3)
    for a in range(10):
        preds[:, a, :4] = torch.tensor([a * 20.0, 0.0, a * 20.0 + 10, 10.0])  # disjoint boxes
        preds[:, a, 4 + a % 3] = 0.1 * a
    out = postprocess(preds, conf=0.25, iou=0.5, max_det=4)
    assert len(out) == 2
    assert out[0].shape == (4, 6)
    assert (out[0][:, 4] > 0.25).all()
    assert out[0][:, 4].tolist() == sorted(out[0][:, 4].tolist(), reverse=True)
    assert out[0][0, 5].item() == 9 % 3
    assert postprocess(preds, conf=0.95)[0].shape == (0, 6)


def test_scale_boxes_inverts_letterbox():
    orig = torch.tensor([[10.0, 20.0, 110.0, 60.0]])
    ratio, pad = 0.5, (0.0, 30.0)  # 200x100 image -> 100x50, centred in 100x100
    boxed = orig * ratio + torch.tensor([pad[0], pad[1], pad[0], pad[1]])
    torch.testing.assert_close(scale_boxes(boxed, ratio, pad, (100, 200)), orig)
