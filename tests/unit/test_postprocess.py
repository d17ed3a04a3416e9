import importlib

import numpy as np
import pytest
import torch

from yoloslim.data.transforms import letterbox_params
from yoloslim.errors import ConfigError
from yoloslim.eval.postprocess import batched_nms, has_area, nms, postprocess, scale_boxes

# the package re-exports a function named like this module, so import the module by name
pp = importlib.import_module("yoloslim.eval.postprocess")


def _iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def _brute_nms(boxes, scores, thr, classes=None):
    """Textbook greedy NMS in plain Python: the reference the fast version must match."""
    boxes, scores = boxes.tolist(), scores.tolist()
    classes = classes.tolist() if classes is not None else [0] * len(scores)
    keep = []
    for i in sorted(range(len(scores)), key=lambda i: -scores[i]):
        if all(classes[i] != classes[j] or _iou(boxes[i], boxes[j]) <= thr for j in keep):
            keep.append(i)
    return keep


def _random_case(n, g, nc=1, spread=100.0):
    xy = torch.rand(n, 2, generator=g) * spread
    wh = torch.rand(n, 2, generator=g) * 40 + 2
    boxes = torch.cat([xy, xy + wh], 1)
    scores = (torch.randperm(n, generator=g).float() + 1) / (n + 1)  # distinct: no ties
    return boxes, scores, torch.randint(0, nc, (n,), generator=g)


@pytest.fixture
def small_blocks(monkeypatch):
    """Tiny blocks so that a few dozen boxes exercise the blocked and chunked paths."""
    monkeypatch.setattr(pp, "_BLOCK", 8)
    monkeypatch.setattr(pp, "_KEPT_CHUNK", 12)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("thr", [0.3, 0.5, 0.7])
def test_nms_matches_brute_force(seed, thr):
    g = torch.Generator().manual_seed(seed)
    boxes, scores, _ = _random_case(60, g)
    assert nms(boxes, scores, thr).tolist() == _brute_nms(boxes, scores, thr)


@pytest.mark.parametrize("seed", range(6))
def test_nms_blocked_matches_brute_force(small_blocks, seed):
    g = torch.Generator().manual_seed(100 + seed)
    boxes, scores, _ = _random_case(70, g, spread=60.0)
    assert nms(boxes, scores, 0.5).tolist() == _brute_nms(boxes, scores, 0.5)


@pytest.mark.parametrize("seed", range(5))
def test_batched_nms_matches_per_class_brute_force(seed):
    g = torch.Generator().manual_seed(seed)
    boxes, scores, classes = _random_case(80, g, nc=3)
    got = batched_nms(boxes, scores, classes, 0.5).tolist()
    assert got == _brute_nms(boxes, scores, 0.5, classes)
    assert got == sorted(got, key=lambda i: -float(scores[i]))


@pytest.mark.parametrize("seed", range(4))
def test_batched_nms_per_class_path_matches_brute_force(small_blocks, seed):
    g = torch.Generator().manual_seed(200 + seed)
    boxes, scores, classes = _random_case(90, g, nc=4, spread=50.0)
    assert batched_nms(boxes, scores, classes, 0.45).tolist() == _brute_nms(
        boxes, scores, 0.45, classes
    )


def test_nms_large_input_matches_brute_force():
    g = torch.Generator().manual_seed(7)
    boxes, scores, classes = _random_case(1100, g, nc=3, spread=600.0)  # > one block
    assert nms(boxes, scores, 0.6).tolist() == _brute_nms(boxes, scores, 0.6)
    expected = _brute_nms(boxes, scores, 0.6, classes)
    assert batched_nms(boxes, scores, classes, 0.6).tolist() == expected


@pytest.mark.parametrize("max_det", [1, 3, 10, 25, 1000])
@pytest.mark.parametrize("blocks", [None, 8])
def test_a_cap_on_kept_boxes_gives_the_first_of_the_full_result(monkeypatch, max_det, blocks):
    if blocks:  # small blocks: the cap falls inside a block and across several, and a cap
        # above _BLOCK takes the per-class path with each class capped
        monkeypatch.setattr(pp, "_CAPPED_BLOCK", blocks)
        monkeypatch.setattr(pp, "_BLOCK", 16)
        monkeypatch.setattr(pp, "_KEPT_CHUNK", 12)
    g = torch.Generator().manual_seed(max_det)
    boxes, scores, classes = _random_case(400, g, nc=3, spread=80.0)
    scores[::7] = 0.5  # ties too: they keep their input order
    full = _brute_nms(boxes, scores, 0.5, classes)
    assert len(full) > 25  # the cap bites for all but the largest
    got = batched_nms(boxes, scores, classes, 0.5, max_det=max_det).tolist()
    assert got == full[:max_det]
    agnostic = _brute_nms(boxes, scores, 0.5)
    assert nms(boxes, scores, 0.5, max_det=max_det).tolist() == agnostic[:max_det]


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_a_bad_cap_is_a_config_error(bad):
    boxes, scores, classes = _random_case(10, torch.Generator().manual_seed(0))
    with pytest.raises(ConfigError, match=f"max_det={bad!r} must be"):
        nms(boxes, scores, 0.5, max_det=bad)
    with pytest.raises(ConfigError, match=f"max_det={bad!r} must be"):
        batched_nms(boxes, scores, classes, 0.5, max_det=bad)


def test_postprocess_with_every_anchor_a_candidate_keeps_the_same_detections():
    # val's conf=0.001 on a barely trained model: thousands of candidates, most suppressed;
    # the reference is the uncapped per-class NMS (checked against brute force above), cut
    g = torch.Generator().manual_seed(3)
    boxes, _, _ = _random_case(3000, g, spread=300.0)
    preds = torch.cat([boxes, torch.rand(3000, 4, generator=g)], 1)[None]
    scores, classes = preds[0, :, 4:].max(1)
    full = batched_nms(preds[0, :, :4], scores, classes, 0.65)
    assert 300 < len(full) < 3000
    for max_det in (1, 300, 5000):
        got = postprocess(preds, conf=0.001, iou=0.65, max_det=max_det)[0]
        keep = full[:max_det]
        assert got[:, 5].long().tolist() == classes[keep].tolist()
        expected = torch.cat([preds[0, keep, :4], scores[keep, None]], 1)
        torch.testing.assert_close(got[:, :5], expected, rtol=0, atol=0)


def test_nms_ties_keep_input_order():
    boxes = torch.tensor([[0.0, 0, 10, 10], [1.0, 0, 11, 10], [30.0, 0, 40, 10]])
    scores = torch.full((3,), 0.5)
    assert nms(boxes, scores, 0.5).tolist() == [0, 2]


def test_nms_empty_and_class_aware():
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.5).numel() == 0
    empty = batched_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long), 0.5)
    assert empty.dtype == torch.long and empty.numel() == 0
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.5, 0.0, 10.5, 10.0]])
    scores = torch.tensor([0.9, 0.8])
    assert nms(boxes, scores, 0.5).tolist() == [0]
    assert batched_nms(boxes, scores, torch.tensor([0, 1]), 0.5).tolist() == [0, 1]


def test_nms_rejects_bad_shapes():
    with pytest.raises(ValueError, match="boxes must be"):
        nms(torch.zeros(3, 5), torch.zeros(3), 0.5)
    with pytest.raises(ValueError, match="scores must be"):
        nms(torch.zeros(3, 4), torch.zeros(2), 0.5)
    with pytest.raises(ValueError, match="classes must"):
        batched_nms(torch.zeros(3, 4), torch.zeros(3), torch.zeros(2), 0.5)


def _disjoint_preds():
    preds = torch.zeros(2, 10, 4 + 3)
    for a in range(10):
        preds[:, a, :4] = torch.tensor([a * 20.0, 0.0, a * 20.0 + 10, 10.0])
        preds[:, a, 4 + a % 3] = 0.1 * a
    return preds


def test_postprocess_filters_and_caps():
    preds = _disjoint_preds()
    out = postprocess(preds, conf=0.25, iou=0.5, max_det=4)
    assert len(out) == 2
    assert out[0].shape == (4, 6) and out[0].dtype == torch.float32
    assert (out[0][:, 4] > 0.25).all()
    assert out[0][:, 4].tolist() == sorted(out[0][:, 4].tolist(), reverse=True)
    torch.testing.assert_close(out[0][0], torch.tensor([180.0, 0, 190, 10, 0.9, 9 % 3]))
    assert postprocess(preds, conf=0.25)[0].shape == (7, 6)  # anchors 3..9 pass
    assert postprocess(preds, conf=0.95)[0].shape == (0, 6)
    assert postprocess(preds, conf=0.25, max_nms=2)[0][:, 4].tolist() == pytest.approx([0.9, 0.8])


def test_postprocess_class_aware_agnostic_and_multi_label():
    preds = torch.zeros(1, 2, 4 + 2)
    preds[0, 0] = torch.tensor([0.0, 0, 10, 10, 0.9, 0.0])
    preds[0, 1] = torch.tensor([1.0, 0, 11, 10, 0.0, 0.8])  # overlaps, other class
    assert postprocess(preds, conf=0.1)[0][:, 5].tolist() == [0.0, 1.0]
    assert postprocess(preds, conf=0.1, agnostic=True)[0][:, 5].tolist() == [0.0]
    one = torch.tensor([[[0.0, 0, 10, 10, 0.9, 0.7]]])
    assert postprocess(one, conf=0.1)[0][:, 5].tolist() == [0.0]
    multi = postprocess(one, conf=0.1, multi_label=True)[0]
    torch.testing.assert_close(multi[:, 4:], torch.tensor([[0.9, 0.0], [0.7, 1.0]]))


def test_postprocess_drops_anchors_not_valid_before_nms_and_the_cap():
    preds = torch.zeros(1, 3, 4 + 2)
    preds[0, :, :4] = torch.tensor([[0.0, 0, 10, 10], [1.0, 0, 11, 10], [50.0, 0, 60, 10]])
    preds[0, :, 4] = torch.tensor([0.9, 0.8, 0.7])
    preds[0, 1, 5] = 0.6
    assert postprocess(preds, conf=0.1, max_det=1)[0][:, 4].tolist() == pytest.approx([0.9])
    valid = torch.tensor([[False, True, True]])
    out = postprocess(preds, conf=0.1, valid=valid)[0]  # 0 no longer suppresses 1
    assert out[:, 4].tolist() == pytest.approx([0.8, 0.7])
    assert postprocess(preds, conf=0.1, max_det=1, valid=valid)[0][:, 4].tolist() == [
        pytest.approx(0.8)
    ]
    multi = postprocess(preds, conf=0.1, multi_label=True, valid=valid)[0]
    torch.testing.assert_close(multi[:, 4:], torch.tensor([[0.8, 0], [0.7, 0], [0.6, 1]]))
    everything = torch.ones(1, 3, dtype=torch.bool)
    torch.testing.assert_close(
        postprocess(preds, conf=0.1, valid=everything)[0], postprocess(preds, conf=0.1)[0]
    )
    with pytest.raises(ValueError, match=r"valid must be a bool \(B, A\) = \(1, 3\) tensor"):
        postprocess(preds, valid=torch.ones(1, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"got torch.float32 \(1, 3\)"):
        postprocess(preds, valid=torch.ones(1, 3))


def test_has_area_is_what_scale_boxes_leaves_of_a_box():
    boxed = torch.tensor([[0.0, 10, 20, 40], [5.0, 10, 30, 40], [90.0, 10, 99, 40]])
    back = scale_boxes(boxed, 1.0, (25.0, 0.0), (100, 50))  # the image is x 25..75 here
    assert has_area(back).tolist() == [False, True, False]
    assert has_area(torch.tensor([1.0, 1, 1, 5])).item() is False  # no width


def test_postprocess_accepts_numpy_and_half():
    preds = _disjoint_preds()
    ref = postprocess(preds, conf=0.25)
    torch.testing.assert_close(postprocess(preds.numpy(), conf=0.25)[0], ref[0])
    half = postprocess(preds.half(), conf=0.25)[0]
    assert half.dtype == torch.float32 and half.shape == ref[0].shape


@pytest.mark.parametrize(
    ("kwargs", "err", "match"),
    [
        ({"conf": 1.5}, ConfigError, "conf=1.5"),
        ({"iou": -0.1}, ConfigError, "iou=-0.1"),
        ({"max_det": 0}, ConfigError, "max_det=0"),
        ({"max_nms": 0}, ConfigError, "max_nms=0"),
    ],
)
def test_postprocess_validates_options(kwargs, err, match):
    with pytest.raises(err, match=match):
        postprocess(_disjoint_preds(), **kwargs)


def test_postprocess_rejects_bad_shape():
    with pytest.raises(ValueError, match=r"\(B, A, 4 \+ C\)"):
        postprocess(torch.zeros(2, 10, 4))
    with pytest.raises(ValueError, match=r"\(B, A, 4 \+ C\)"):
        postprocess(torch.zeros(10, 6))


@pytest.mark.parametrize(("w", "h"), [(200, 100), (90, 160), (64, 64)])
def test_scale_boxes_inverts_letterbox(w, h):
    ratio, pad = letterbox_params(w, h, 128)
    g = torch.Generator().manual_seed(w)
    xy = torch.rand(20, 2, generator=g) * torch.tensor([w / 2, h / 2])
    wh = torch.rand(20, 2, generator=g) * torch.tensor([w / 2, h / 2]) + 1
    orig = torch.cat([xy, xy + wh], 1)
    boxed = orig * ratio + torch.tensor([pad[0], pad[1], pad[0], pad[1]], dtype=torch.float32)
    back = scale_boxes(boxed, ratio, pad, (h, w))
    torch.testing.assert_close(back, orig, atol=1e-4, rtol=1e-5)


def test_scale_boxes_clips_to_original_image():
    boxes = torch.tensor([[0.0, 10.0, 100.0, 100.0]])  # reaches into the padding
    out = scale_boxes(boxes, 0.5, (0.0, 25.0), (100, 200))
    assert out.tolist() == [[0.0, 0.0, 200.0, 100.0]]
    with pytest.raises(ValueError, match="ratio=0"):
        scale_boxes(boxes, 0, (0, 0), (100, 200))


def test_reference_iou_agrees_with_box_iou():
    """Keeps the plain-Python reference honest."""
    g = torch.Generator().manual_seed(3)
    boxes, _, _ = _random_case(20, g)
    ref = np.array([[_iou(a, b) for b in boxes.tolist()] for a in boxes.tolist()])
    np.testing.assert_allclose(pp.box_iou(boxes, boxes).numpy(), ref, atol=1e-5)


def test_nms_runs_at_one_thread_and_restores_the_count(monkeypatch):
    """NMS's small ops run at one intra-op thread; the caller's count comes back, also
    after an error."""
    import threading

    if pp._openmp() is None:
        pytest.skip("torch's parallel backend is not OpenMP: the guard leaves the count alone")
    seen, others = [], []
    greedy = pp._greedy

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        # a thread that starts meanwhile keeps torch's count (set_num_threads would give it 1)
        other = threading.Thread(target=lambda: others.append(torch.get_num_threads()))
        other.start()
        other.join()
        return greedy(*args, **kwargs)

    monkeypatch.setattr(pp, "_greedy", spy)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        preds = torch.rand(2, 50, 6)
        preds[..., 2:4] += preds[..., :2]
        postprocess(preds)
        boxes, scores, classes = _random_case(20, torch.Generator().manual_seed(0), nc=2)
        nms(boxes, scores, 0.5)
        batched_nms(boxes, scores, classes, 0.5)
        assert seen == [1, 1, 1, 1] and torch.get_num_threads() == 2
        assert others == [2, 2, 2, 2]

        def fail(*args, **kwargs):
            raise RuntimeError("boom")

        monkeypatch.setattr(pp, "_greedy", fail)
        with pytest.raises(RuntimeError, match="boom"):
            nms(boxes, scores, 0.5)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("bad", [0, -0.5, 1.5, float("nan")])
def test_nms_refuses_an_iou_threshold_outside_0_1(bad):
    # at -0.5 disjoint boxes suppressed each other; at nan or 1.5 nothing was suppressed
    boxes, scores, classes = _random_case(10, torch.Generator().manual_seed(0))
    with pytest.raises(ConfigError, match=r"iou_thres=.* must be in \(0, 1\]"):
        nms(boxes, scores, bad)
    with pytest.raises(ConfigError, match=r"iou_thres=.* must be in \(0, 1\]"):
        batched_nms(boxes, scores, classes, bad)


def test_the_max_nms_cut_keeps_tied_scores_in_input_order():
    # disjoint boxes, all scored 0.5 but the last: the cut keeps the top one and then the
    # first of the tied ones, as a stable sort does (topk picked among ties arbitrarily)
    n = 40
    preds = torch.zeros(1, n, 4 + 1)
    preds[0, :, 0] = torch.arange(n) * 20.0
    preds[0, :, 2] = preds[0, :, 0] + 10
    preds[0, :, 3] = 10
    preds[0, :, 4] = 0.5
    preds[0, -1, 4] = 0.9
    out = postprocess(preds, conf=0.1, iou=0.5, max_nms=5)[0]
    assert out[:, 0].tolist() == [(n - 1) * 20.0, 0.0, 20.0, 40.0, 60.0]
