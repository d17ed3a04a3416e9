import pytest
import torch

from yoloslim.boxes import bbox_iou, box_area, box_iou, clip_boxes, xywh2xyxy, xyxy2xywh


def _random_boxes(n: int, g: torch.Generator) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=g) * 50
    wh = torch.rand(n, 2, generator=g) * 30 + 1
    return torch.cat([xy, xy + wh], 1)


def test_box_iou_known_values():
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    b = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    # identical = 1; half overlap: 50 / (100 + 100 - 50); disjoint = 0
    torch.testing.assert_close(box_iou(a, b), torch.tensor([[1.0, 50 / 150, 0.0]]))
    # contained box: 4 / 100
    torch.testing.assert_close(
        box_iou(a, torch.tensor([[2.0, 2.0, 4.0, 4.0]])), torch.tensor([[0.04]])
    )


def test_box_iou_shapes_and_empty():
    g = torch.Generator().manual_seed(0)
    assert box_iou(_random_boxes(3, g), _random_boxes(5, g)).shape == (3, 5)
    assert box_iou(torch.zeros(0, 4), _random_boxes(5, g)).shape == (0, 5)
    # zero-area boxes give 0, not NaN
    z = torch.tensor([[1.0, 1.0, 1.0, 1.0]])
    assert box_iou(z, z).item() == 0.0


def test_box_area_clamps_inverted_boxes():
    b = torch.tensor([[0.0, 0.0, 4.0, 3.0], [5.0, 5.0, 1.0, 9.0]])
    assert box_area(b).tolist() == [12.0, 0.0]


@pytest.mark.parametrize("kind", ["iou", "giou", "diou", "ciou"])
def test_bbox_iou_identical_is_one_and_differentiable(kind):
    a = torch.tensor([[1.0, 2.0, 8.0, 9.0]], requires_grad=True)
    b = torch.tensor([[2.0, 2.0, 9.0, 10.0]])
    assert bbox_iou(a.detach(), a.detach(), kind=kind).item() == pytest.approx(1.0, abs=1e-5)
    bbox_iou(a, b, kind=kind).sum().backward()
    assert torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0


def test_giou_of_disjoint_boxes_is_negative_with_gradient():
    a = torch.tensor([0.0, 0.0, 1.0, 1.0], requires_grad=True)
    b = torch.tensor([2.0, 0.0, 3.0, 1.0])
    # hull 3x1, union 2 -> giou = 0 - (3 - 2) / 3
    giou = bbox_iou(a, b, kind="giou")
    assert giou.item() == pytest.approx(-1 / 3, abs=1e-6)
    assert bbox_iou(a, b).item() == 0.0
    giou.backward()
    assert a.grad[2] > 0  # moving the right edge towards b increases GIoU


def test_diou_and_ciou_known_values():
    a = torch.tensor([0.0, 0.0, 2.0, 2.0])
    b = torch.tensor([1.0, 1.0, 3.0, 3.0])
    # iou = 1/7; hull diagonal^2 = 18; centre distance^2 = 2; squares -> no CIoU aspect term
    expected = 1 / 7 - 2 / 18
    assert bbox_iou(a, b, kind="diou").item() == pytest.approx(expected, abs=1e-6)
    assert bbox_iou(a, b, kind="ciou").item() == pytest.approx(expected, abs=1e-6)
    # a different aspect ratio makes CIoU strictly smaller than DIoU
    c = torch.tensor([1.0, 1.0, 4.0, 2.0])
    assert bbox_iou(a, c, kind="ciou") < bbox_iou(a, c, kind="diou")


def test_bbox_iou_matches_pairwise_diagonal_and_broadcasts():
    g = torch.Generator().manual_seed(0)
    a = _random_boxes(50, g)
    b = a + torch.randn(50, 4, generator=g)
    torch.testing.assert_close(bbox_iou(a, b), box_iou(a, b).diagonal(), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(bbox_iou(a[:, None], b[None]), box_iou(a, b), atol=1e-6, rtol=1e-6)


def test_bbox_iou_rejects_unknown_kind():
    with pytest.raises(ValueError, match="kind='eiou'"):
        bbox_iou(torch.zeros(4), torch.zeros(4), kind="eiou")


def test_xywh_round_trip_and_clip():
    b = torch.tensor([[10.0, 20.0, 4.0, 6.0]])
    assert xywh2xyxy(b).tolist() == [[8.0, 17.0, 12.0, 23.0]]
    torch.testing.assert_close(xyxy2xywh(xywh2xyxy(b)), b)
    src = torch.tensor([[-5.0, 3.0, 120.0, 90.0]])
    assert clip_boxes(src, 80, 100).tolist() == [[0.0, 3.0, 100.0, 80.0]]
    assert src.tolist() == [[-5.0, 3.0, 120.0, 90.0]]  # input untouched


def test_box_iou_of_identical_sub_pixel_boxes_is_one():
    # eps floors the union instead of being added to it, which made this 0.909
    tiny = torch.tensor([[0.0, 0.0, 1e-3, 1e-3]])
    assert box_iou(tiny, tiny).item() == pytest.approx(1.0)
