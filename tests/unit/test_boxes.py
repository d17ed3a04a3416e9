import pytest
import torch

from yoloslim.boxes import bbox_iou, box_iou, clip_boxes, xywh2xyxy, xyxy2xywh


def test_box_iou_known_values():
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    b = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    torch.testing.assert_close(box_iou(a, b), torch.tensor([[1.0, 50 / 150, 0.0]]))


@pytest.mark.parametrize("kind", ["iou", "giou", "diou", "ciou"])
def test_bbox_iou_identical_is_one_and_differentiable(kind):
    a = torch.tensor([[1.0, 2.0, 8.0, 9.0]], requires_grad=True)
    b = torch.tensor([[2.0, 2.0, 9.0, 10.0]])
    assert bbox_iou(a.detach(), a.detach(), kind=kind).item() == pytest.approx(1.0, abs=1e-5)
    bbox_iou(a, b, kind=kind).sum().backward()
    assert torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0


def test_giou_of_disjoint_boxes_is_negative():
    a = torch.tensor([0.0, 0.0, 1.0, 1.0])
    b = torch.tensor([2.0, 0.0, 3.0, 1.0])
    # hull 3x1, union 2 -> giou = 0 - (3 - 2) / 3
    assert bbox_iou(a, b, kind="giou").item() == pytest.approx(-1 / 3, abs=1e-6)
    assert bbox_iou(a, b).item() == 0.0


def test_bbox_iou_matches_pairwise_diagonal():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(50, 2, generator=g) * 50
    wh = torch.rand(50, 2, generator=g) * 30 + 1
    a = torch.cat([xy, xy + wh], 1)
    b = a + torch.randn(50, 4, generator=g)
    torch.testing.assert_close(bbox_iou(a, b), box_iou(a, b).diagonal(), atol=1e-6, rtol=1e-6)


def test_xywh_round_trip_and_clip():
    b = torch.tensor([[10.0, 20.0, 4.0, 6.0]])
    assert xywh2xyxy(b).tolist() == [[8.0, 17.0, 12.0, 23.0]]
    torch.testing.assert_close(xyxy2xywh(xywh2xyxy(b)), b)
    assert clip_boxes(torch.tensor([[-5.0, 3.0, 120.0, 90.0]]), 80, 100).tolist() == [
        [0.0, 3.0, 100.0, 80.0]
    ]
