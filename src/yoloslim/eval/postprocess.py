"""Decode-side post-processing: confidence filter, class-aware NMS, letterbox inverse."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import numbers
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from yoloslim.boxes import box_iou
from yoloslim.configs import int_problem
from yoloslim.errors import ConfigError

__all__ = [
    "batched_nms",
    "check_nms_settings",
    "has_area",
    "nms",
    "postprocess",
    "postprocess_in_image",
    "scale_boxes",
]

# Candidates are processed in score-ordered blocks of this many boxes, so memory is
# O(BLOCK * (BLOCK + kept chunk)) instead of O(N^2): 30k candidates would need a 3.6 GB
# float IoU matrix in one piece.
_BLOCK = 1024
_KEPT_CHUNK = 4096
# With a cap on the boxes kept, small blocks let the pass stop soon after the cap is reached
# (at val's conf=0.001 every anchor is a candidate and most are suppressed or never reached).
_CAPPED_BLOCK = 128


@functools.cache
def _openmp():
    """The OpenMP runtime torch computes with (its ``omp_*`` functions), or None where torch's
    parallel backend is not OpenMP or the library's symbols are not visible (then NMS runs at
    torch's count)."""
    if "ATen parallel backend: OpenMP" not in torch.__config__.parallel_info():
        return None
    try:
        lib = ctypes.CDLL(None)
        lib.omp_get_max_threads.restype = ctypes.c_int
        lib.omp_set_num_threads.argtypes = [ctypes.c_int]
    except (OSError, AttributeError):
        return None
    return lib


@contextlib.contextmanager
def _one_thread(t: torch.Tensor) -> Iterator[None]:
    """Run CPU work on ``t`` with one intra-op thread in this OS thread, then restore it.

    NMS is many ops on tensors of a few thousand elements. Above torch's grain size
    (32768 elements) each op is split over the intra-op threads, and when the cores are
    busy (data-loader workers, a runtime's own threads, other processes) every split
    waits for a descheduled thread: a 300 x 128 IoU took 3-18 ms at two threads against
    0.6-0.7 ms at one on a loaded 2-core machine, and val's NMS 49 against 5.2 ms per image
    (benchmarks/val_nms.py, demo model). On the idle machine one thread costs a little
    (3.58 against 3.25 ms per image). It sets OpenMP's count of the calling thread only
    (``omp_set_num_threads``), which ATen's parallel loops read; not ``torch.set_num_threads``,
    which also sets a process-wide count that threads started meanwhile would take.
    """
    omp = _openmp()
    # torch.get_num_threads() first: a thread's first torch call sets its OpenMP count
    n = torch.get_num_threads() if omp is not None and t.device.type == "cpu" else 1
    if n <= 1:
        yield
        return
    omp.omp_set_num_threads(1)
    try:
        yield
    finally:
        omp.omp_set_num_threads(n)


def nms(
    boxes: torch.Tensor, scores: torch.Tensor, iou_thres: float, *, max_det: int | None = None
) -> torch.Tensor:
    """Greedy non-maximum suppression.

    A box is dropped when its IoU with a higher-scored kept box exceeds ``iou_thres``;
    equal scores keep their input order.

    Args:
        boxes: ``(N, 4)`` xyxy boxes.
        scores: ``(N,)`` scores.
        iou_thres: IoU above which the lower-scored box is suppressed.
        max_det: keep at most this many: the first ``max_det`` of the full result (a
            kept box depends only on higher-scored ones), found without visiting the
            boxes after them.

    Returns:
        Indices (int64, on ``boxes.device``) of the kept boxes, by descending score.

    Example:
        >>> b = torch.tensor([[0.0, 0, 10, 10], [1.0, 0, 11, 10], [20.0, 0, 30, 10]])
        >>> nms(b, torch.tensor([0.9, 0.8, 0.7]), 0.5).tolist()
        [0, 2]
    """
    _check(boxes, scores, iou_thres, max_det)
    with _one_thread(boxes):
        return _greedy(boxes, scores, None, iou_thres, max_det)


def batched_nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    classes: torch.Tensor,
    iou_thres: float,
    *,
    max_det: int | None = None,
) -> torch.Tensor:
    """Class-aware NMS: boxes of different classes never suppress each other.

    Equivalent to the usual offset trick (``boxes + class * max_coord``) but exact:
    the suppression mask is ANDed with ``class_i == class_j`` instead of shifting
    coordinates, which would cost float32 precision at large class indices.

    Args:
        boxes: ``(N, 4)`` xyxy boxes.
        scores: ``(N,)`` scores.
        classes: ``(N,)`` integer class ids.
        iou_thres: IoU above which the lower-scored box of the same class is suppressed.
        max_det: keep at most this many: the first ``max_det`` of the full result. Up to
            ``_BLOCK`` (1024) they are found by one pass over all classes in score order
            that stops there (the same boxes: per-class greedy NMS merged by score is one
            greedy pass whose suppression is limited to a class, and a kept box depends
            only on higher-scored ones); a larger cap stops each class's pass at
            ``max_det``, since no more of one class can be among the first ``max_det``.

    Returns:
        Indices (int64) of the kept boxes, by descending score over all classes.
    """
    _check(boxes, scores, iou_thres, max_det)
    if classes.shape != scores.shape:
        raise ValueError(
            f"classes must have shape {tuple(scores.shape)}, got {tuple(classes.shape)}"
        )
    with _one_thread(boxes):
        if len(boxes) <= _BLOCK or (max_det is not None and max_det <= _BLOCK):
            return _greedy(boxes, scores, classes, iou_thres, max_det)
        # Many candidates: NMS per class costs sum(n_c^2) IoUs instead of N^2.
        kept = [(classes == c).nonzero().flatten() for c in classes.unique().tolist()]
        kept = [i[_greedy(boxes[i], scores[i], None, iou_thres, max_det)] for i in kept]
        idx = torch.cat(kept).sort().values  # ties below keep input order, as in _greedy
        return idx[scores[idx].argsort(descending=True, stable=True)][:max_det]


def _check(
    boxes: torch.Tensor, scores: torch.Tensor, iou_thres: float, max_det: int | None = None
) -> None:
    check_nms_settings(iou_thres=iou_thres)
    if max_det is not None:
        check_nms_settings(max_det=max_det)
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must be (N, 4), got {tuple(boxes.shape)}")
    if scores.shape != boxes.shape[:1]:
        raise ValueError(f"scores must be ({boxes.shape[0]},), got {tuple(scores.shape)}")


def _greedy(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    classes: torch.Tensor | None,
    iou_thres: float,
    limit: int | None = None,
) -> torch.Tensor:
    """Blocked greedy NMS: exact, O(N * kept) IoUs, O(block^2) Python-side booleans; with
    ``limit``, a stop once ``limit`` boxes are kept (in small blocks when it is small)."""
    n = boxes.shape[0]
    if n == 0 or limit == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    # small blocks pay off when a small cap ends the pass early
    block = _CAPPED_BLOCK if limit is not None and limit <= _BLOCK else _BLOCK
    found = 0
    order = scores.argsort(descending=True, stable=True)
    b = boxes[order]
    if not b.is_floating_point() or b.dtype in (torch.float16, torch.bfloat16):
        b = b.float()
    # Without classes every box is "class 0", which keeps one code path.
    c = classes[order] if classes is not None else torch.zeros(n, dtype=torch.long, device=b.device)
    kept_pos: list[torch.Tensor] = []
    kept: list[tuple[torch.Tensor, torch.Tensor]] = []  # (boxes, classes) chunks
    start = 0
    while start < n and (limit is None or found < limit):
        blk, blk_c = b[start : start + block], c[start : start + block]
        offset, start = start, start + block
        # 1) suppression by boxes kept in earlier blocks (all of them score higher)
        alive = torch.ones(len(blk), dtype=torch.bool, device=b.device)
        for kb, kc in kept:
            hit = (box_iou(kb, blk) > iou_thres) & (kc[:, None] == blk_c[None])
            alive &= ~hit.any(0)
        # 2) greedy pass inside the block over a boolean "i suppresses j" matrix
        over = (box_iou(blk, blk) > iou_thres) & (blk_c[:, None] == blk_c[None])
        over = over.triu(1).cpu().numpy()
        alive_np = alive.cpu().numpy()
        local = []
        for i in np.flatnonzero(alive_np).tolist():
            if alive_np[i]:
                local.append(i)
                if limit is not None and found + len(local) >= limit:
                    break
                alive_np &= ~over[i]
        if not local:
            continue
        found += len(local)
        idx = torch.tensor(local, dtype=torch.long, device=b.device)
        kept_pos.append(idx + offset)
        if kept and len(kept[-1][0]) + len(idx) <= _KEPT_CHUNK:
            kept[-1] = (torch.cat([kept[-1][0], blk[idx]]), torch.cat([kept[-1][1], blk_c[idx]]))
        else:
            kept.append((blk[idx], blk_c[idx]))
    return order[torch.cat(kept_pos)]


def check_nms_settings(**settings: float) -> None:
    """ConfigError naming the first setting out of range, by its keyword's ending:
    ``conf`` a number in [0, 1]; ``iou`` (or ``iou_thres``) a number in (0, 1] (at 0 every overlap would
    suppress); ``max_det`` / ``max_nms`` an integer >= 1. Callers pass their own argument
    names (``nms_conf=...``), which the message repeats."""
    for name, value in settings.items():
        if name.endswith(("max_det", "max_nms")):
            problem = int_problem(value)
            if problem:
                raise ConfigError(f"{name}={value!r} {problem}")
            continue
        iou = name.endswith(("iou", "iou_thres"))
        interval = "(0, 1]" if iou else "[0, 1]"
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ConfigError(f"{name}={value!r} must be a number in {interval}")
        if not (0 < value <= 1 if iou else 0 <= value <= 1):
            raise ConfigError(f"{name}={value!r} must be in {interval}")


def postprocess(
    preds: torch.Tensor,
    *,
    conf: float = 0.001,
    iou: float = 0.65,
    max_det: int = 300,
    max_nms: int = 30000,
    agnostic: bool = False,
    multi_label: bool = False,
    valid: torch.Tensor | None = None,
) -> list[torch.Tensor]:
    """Turn a detector's eval output into per-image detections.

    Confidence filter (and ``valid``), then the ``max_nms`` highest-scored candidates go
    through (class-aware unless ``agnostic``) NMS, then the first ``max_det`` are kept.

    Args:
        preds: ``(B, A, 4 + C)``: boxes xyxy in input pixels, then C class scores in
            [0, 1] (sigmoid already applied). A numpy array is accepted too.
        conf: Candidates need a score strictly above this.
        iou: NMS IoU threshold.
        max_det: Detections kept per image.
        max_nms: Candidates entering NMS per image (highest scores first).
        agnostic: One NMS over all classes instead of one per class.
        multi_label: Every (anchor, class) pair above ``conf`` is a candidate, instead
            of each anchor's best class only.
        valid: ``(B, A)`` bool, the anchors that may be detections; the others are dropped
            before NMS, so they neither suppress a box nor take a place among ``max_det``.
            ``predict`` and ``val`` pass those whose box is not wholly in the letterbox's
            padding (:func:`has_area` of :func:`scale_boxes`). None: every anchor.

    Returns:
        One ``(n, 6)`` float tensor per image, rows ``[x1, y1, x2, y2, score, cls]``
        sorted by descending score, on ``preds``' device.

    Raises:
        ValueError: ``preds`` is not ``(B, A, 4 + C)`` with ``C >= 1``, or ``valid`` is not
            ``(B, A)``.
        ConfigError: a threshold or cap is out of range.

    Example:
        >>> import torch
        >>> from yoloslim.models import build_model
        >>> model, images = build_model("damo-nano").eval(), torch.rand(2, 3, 320, 320)
        >>> dets = postprocess(model(images), conf=0.25, iou=0.65)
        >>> len(dets), dets[0].shape[1]  # per image: (n, 6) rows of x1 y1 x2 y2 score class
        (2, 6)
    """
    preds = torch.as_tensor(preds)
    if preds.ndim != 3 or preds.shape[-1] < 5:
        raise ValueError(f"preds must be (B, A, 4 + C) with C >= 1, got {tuple(preds.shape)}")
    check_nms_settings(conf=conf, iou=iou, max_det=max_det, max_nms=max_nms)
    if valid is not None and (valid.dtype != torch.bool or valid.shape != preds.shape[:2]):
        raise ValueError(
            f"valid must be a bool (B, A) = {tuple(preds.shape[:2])} tensor, got "
            f"{valid.dtype} {tuple(valid.shape)}"
        )
    if not preds.is_floating_point() or preds.dtype in (torch.float16, torch.bfloat16):
        preds = preds.float()
    rows = [None] * len(preds) if valid is None else valid
    with _one_thread(preds):
        return [
            _image(p, conf, iou, max_det, max_nms, agnostic, multi_label, v)
            for p, v in zip(preds, rows, strict=True)
        ]


def _image(
    p: torch.Tensor,
    conf: float,
    iou: float,
    max_det: int,
    max_nms: int,
    agnostic: bool,
    multi_label: bool,
    valid: torch.Tensor | None,
) -> torch.Tensor:
    """postprocess() of one image's ``(A, 4 + C)`` predictions (``valid``: ``(A,)`` or None)."""
    boxes, cls_scores = p[:, :4], p[:, 4:]
    if multi_label:
        above = cls_scores > conf
        a, c = (above if valid is None else above & valid[:, None]).nonzero(as_tuple=True)
        boxes, scores, classes = boxes[a], cls_scores[a, c], c
    else:
        scores, classes = cls_scores.max(1)
        keep = scores > conf if valid is None else (scores > conf) & valid
        boxes, scores, classes = boxes[keep], scores[keep], classes[keep]
    if len(scores) > max_nms:
        # a stable sort: topk picks and orders tied scores at the cut arbitrarily
        top = scores.sort(descending=True, stable=True).indices[:max_nms]
        boxes, scores, classes = boxes[top], scores[top], classes[top]
    if agnostic:
        idx = nms(boxes, scores, iou, max_det=max_det)
    else:
        idx = batched_nms(boxes, scores, classes, iou, max_det=max_det)
    return torch.cat([boxes[idx], scores[idx, None], classes[idx, None].to(boxes.dtype)], 1)


def scale_boxes(
    boxes: torch.Tensor, ratio: float, pad: tuple[float, float], orig_shape: tuple[int, int]
) -> torch.Tensor:
    """Map boxes from the letterboxed image back to the original image.

    The letterbox maps ``orig -> orig * ratio + pad``; this is its inverse,
    ``(b - pad) / ratio``, clipped to the original image.

    Args:
        boxes: ``(..., 4)`` xyxy boxes in letterboxed pixels.
        ratio: Resize factor the letterbox applied.
        pad: ``(left, top)`` padding in letterboxed pixels.
        orig_shape: ``(h, w)`` of the original image.

    Returns:
        A new ``(..., 4)`` tensor in original pixels.
    """
    if ratio <= 0:
        raise ValueError(f"ratio={ratio} must be > 0")
    out = boxes.clone()
    out[..., 0::2] = ((out[..., 0::2] - pad[0]) / ratio).clamp(0, orig_shape[1])
    out[..., 1::2] = ((out[..., 1::2] - pad[1]) / ratio).clamp(0, orig_shape[0])
    return out


def postprocess_in_image(
    preds: torch.Tensor, boxes: torch.Tensor, **nms: Any
) -> list[torch.Tensor]:
    """:func:`postprocess` (``nms``: its keyword arguments) of ``preds`` ``(B, A, 4 + C)`` with
    each anchor's box replaced by ``boxes`` ``(B, A, 4)``, the same boxes in their image's
    pixels and clipped to it (:func:`scale_boxes`): NMS compares the boxes as they are reported
    (two past the image's edge that clip to one are one detection: audit49 cli F1), and one
    with no width or height left, wholly in the letterbox's padding, is no candidate
    (:func:`has_area`). What ``predict`` and ``val`` run."""
    return postprocess(torch.cat([boxes, preds[..., 4:]], -1), valid=has_area(boxes), **nms)


def has_area(boxes: torch.Tensor) -> torch.Tensor:
    """True for each xyxy box of ``boxes`` ``(..., 4)`` with some width and height. Of boxes
    :func:`scale_boxes` mapped back, False is one wholly in the letterbox's padding (clipped
    onto the image's edge): no detection."""
    return (boxes[..., 2] > boxes[..., 0]) & (boxes[..., 3] > boxes[..., 1])
