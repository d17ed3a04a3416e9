"""Accuracy-aware INT8: rank layers by sensitivity, return the worst to float until within budget.

Policy (DAMO-YOLO's partial quantization; NNCF's ``quantize_with_accuracy_control``):

1. evaluate the INT8 model; if its mAP50-95 is within ``max_drop`` of float, stop;
2. rank every quantized conv by *drop-one* sensitivity: keep only that conv in float
   and measure how much closer the decoded output gets to the float model's on a few
   validation images (score error plus box error in stride units, weighted by the
   float confidence; cheap, so every conv is ranked, not a few groups);
3. return convs to float, most sensitive first, one per step, evaluating mAP after
   each step, and stop as soon as the drop is within budget (or ``max_steps``).

The mechanism (how a conv goes back to float) belongs to the backend
(``revert``); this module only decides which and when.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from yoloslim.progress import progress_console

__all__ = ["accuracy_aware", "discrepancy", "rank_sensitivity"]

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=16)  # one warning per model, not one per layer ranked
def _anchor_strides(n_anchors: int, imgsz: int, strides: tuple[int, ...]) -> np.ndarray:
    counts = [(imgsz // s) ** 2 for s in strides]
    if sum(counts) != n_anchors:
        log.warning(
            "%d anchors are not those of strides %s at %d px: box errors are not scaled "
            "per level in the sensitivity ranking",
            n_anchors,
            list(strides),
            imgsz,
        )
        return np.full(n_anchors, float(min(strides)))
    return np.concatenate([np.full(c, float(s)) for c, s in zip(counts, strides, strict=True)])


def discrepancy(
    ref: np.ndarray, out: np.ndarray, imgsz: int, strides: Sequence[int] = (8, 16, 32)
) -> float:
    """Confidence-weighted error of decoded predictions ``(B, A, 4 + nc)`` against ``ref``,
    box errors in units of each anchor's ``strides`` level."""
    stride = _anchor_strides(ref.shape[1], imgsz, tuple(strides))[None, :]
    w = ref[..., 4:].max(-1)
    score_err = np.abs(out[..., 4:] - ref[..., 4:]).mean(-1)
    box_err = np.abs(out[..., :4] - ref[..., :4]).mean(-1) / stride
    return float((w * (score_err + box_err)).sum() / max(float(w.sum()), 1e-9))


def _outputs(run: Callable[[np.ndarray], np.ndarray], images: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([run(x) for x in images])


def rank_sensitivity(
    backend: Any,
    qmodel: Any,
    candidates: dict[str, str],
    images: list[np.ndarray],
    ref: np.ndarray,
    imgsz: int,
    progress: bool = False,
    strides: Sequence[int] = (8, 16, 32),
) -> list[dict]:
    """Drop-one sensitivity of each conv (node -> layer), most sensitive first."""
    base = discrepancy(ref, _outputs(backend.runner(qmodel), images), imgsz, strides)
    rows = []
    items = list(candidates.items())
    for node, layer in _track(items, progress, "sensitivity"):
        d = discrepancy(
            ref,
            _outputs(backend.runner(backend.revert(qmodel, [node])), images),
            imgsz,
            strides,
        )
        rows.append(
            {"layer": layer, "node": node, "gain": round(base - d, 6), "error": round(d, 6)}
        )
    rows.sort(key=lambda r: -r["gain"])
    return [{"int8_error": round(base, 6)}, *rows]


def accuracy_aware(
    backend: Any,
    qmodel: Any,
    *,
    candidates: dict[str, str],
    evaluate: Callable[[Any, str], dict],
    float_map: float,
    max_drop: float,
    inputs: Callable[[], tuple[list[np.ndarray], np.ndarray]],
    imgsz: int,
    max_steps: int,
    progress: bool = False,
    strides: Sequence[int] = (8, 16, 32),
) -> tuple[Any, dict]:
    """Return layers to float until ``float_map - map <= max_drop / 100``.

    Args:
        backend: has ``revert(model, nodes)`` and ``runner(model)``.
        qmodel: the INT8 model (ignored scope already float).
        candidates: quantized conv node -> layer name.
        evaluate: ``(model, tag) -> {"map", "map50"}`` on the validation split.
        float_map: mAP50-95 of the float model (fraction).
        max_drop: budget in mAP points (0.5 = 0.005).
        inputs: ``() -> (images, ref)``: the ranking's images and the float model's outputs
            on them; called only when the ranking runs (not when step 0 meets the budget).
        strides: the detector's output strides (the ranking's box errors are in their units).

    Returns:
        The chosen model and ``{"max_drop", "steps", "sensitivity", "kept_float", "met",
        "chosen_step"}``; ``steps[k]`` is the mAP after the k-th layer went back to float
        (step 0: none). When the budget is not met within ``max_steps``, the chosen model is
        the earliest step with the best mAP, not the last one. When it is met, the layers
        whose step did not raise the mAP go back to INT8 if the budget holds without them
        (one more evaluation; ``trimmed``: those layers and that mAP).
    """
    budget = max_drop / 100.0
    first = evaluate(qmodel, "step0")
    steps = [_step(0, [], first, float_map)]
    maps = [first["map"]]  # each step's mAP unrounded: what met, best and helped go by
    info: dict = {"max_drop": max_drop, "steps": steps, "sensitivity": [], "kept_float": []}
    model, kept = qmodel, []
    if float_map - first["map"] <= budget:
        info["met"], info["chosen_step"] = True, 0
        return model, info
    if max_steps == 0:  # no layer may go back: the ranking would go unused
        info["met"], info["chosen_step"] = False, 0
        log.warning(
            "accuracy-aware: budget not met (%.2f mAP points lost against %.2f allowed) and "
            "advanced.max_steps is 0: no layer goes back to float",
            100 * (float_map - first["map"]),
            max_drop,
        )
        return model, info
    images, ref = inputs()
    ranking = rank_sensitivity(
        backend, qmodel, candidates, images, ref, imgsz, progress, strides=strides
    )
    info["sensitivity"] = ranking
    for k, row in enumerate(ranking[1 : 1 + max_steps], start=1):
        kept.append(row)
        model = backend.revert(qmodel, [r["node"] for r in kept])
        res = evaluate(model, f"step{k}")
        steps.append(_step(k, [r["layer"] for r in kept], res, float_map))
        maps.append(res["map"])
        log.info("accuracy-aware step %d: %s -> mAP %.4f", k, row["layer"], res["map"])
        if float_map - res["map"] <= budget:
            break
    # the loop's own test (the steps' rounded mAPs met a budget of 0 that was missed)
    info["met"] = float_map - maps[-1] <= budget
    info["chosen_step"] = len(steps) - 1
    if info["met"]:
        # a layer whose step did not raise the mAP may have cost speed for nothing: without
        # those, one more evaluation says whether the budget still holds
        model, kept, _ = _trimmed(
            backend,
            qmodel,
            model,
            kept,
            maps,
            evaluate,
            info,
            float_map,
            f"step{len(steps) - 1}",
            lambda got: float_map - got <= budget,
        )
    else:
        # Out of steps: keep the fewest layers in float that reach the best mAP seen, so
        # layers that did not help go back to INT8 (they cost speed for nothing).
        best = max(range(len(steps)), key=lambda k: (maps[k], -k))
        if best < len(steps) - 1:
            kept = kept[:best]
            model = backend.revert(qmodel, [r["node"] for r in kept]) if kept else qmodel
            evaluate(model, f"chosen{best}")  # the caller reports the last evaluation
        # and within those, the layers whose step did not raise it (none of that prefix's
        # steps is undone when the mAP without them falls below the best)
        model, kept, trimmed_map = _trimmed(
            backend,
            qmodel,
            model,
            kept,
            maps[: best + 1],
            evaluate,
            info,
            float_map,
            f"chosen{best}",
            lambda got: got >= maps[best],
        )
        info["chosen_step"] = best
        # the trimmed model's mAP (above the best step's) can be within the budget that no
        # step met: "not met" was said of a model that met it (audit50 quant F1)
        got = maps[best] if trimmed_map is None else trimmed_map
        info["met"] = float_map - got <= budget
        which = (
            f"the {len(kept)} layers of step {best} that raised the mAP"
            if trimmed_map is not None
            else f"step {best} ({len(kept)} layers in float)"
        )
        (log.info if info["met"] else log.warning)(
            "accuracy-aware: budget %s: %.2f mAP points lost against %.2f allowed after %d "
            "steps (advanced.max_steps); keeping %s",
            "met" if info["met"] else "not met",
            100 * (float_map - got),
            max_drop,
            len(steps) - 1,
            which,
        )
    info["kept_float"] = [r["layer"] for r in kept]
    return model, info


def _trimmed(backend, qmodel, model, kept, maps, evaluate, info, float_map, tag, good):
    """``(model, kept, mAP)`` without the layers of ``kept`` whose step did not raise the mAP
    (``maps[k]`` against ``maps[k - 1]``), when ``good`` holds for the mAP without them
    (``info["trimmed"]`` says so; the mAP is theirs), else as they were, evaluated again as
    ``tag`` (the caller reports the last evaluation), and the mAP None."""
    helped = [r for k, r in enumerate(kept, 1) if maps[k] > maps[k - 1]]
    if len(helped) == len(kept):
        return model, kept, None
    trimmed = backend.revert(qmodel, [r["node"] for r in helped]) if helped else qmodel
    res = evaluate(trimmed, "trimmed")
    if not good(res["map"]):
        evaluate(model, tag)
        return model, kept, None
    info["trimmed"] = {
        "returned_to_int8": [r["layer"] for r in kept if r not in helped],
        "map": round(res["map"], 5),
        "map50": round(res["map50"], 5),
        "drop_points": round(100 * (float_map - res["map"]), 3),
    }
    return trimmed, helped, res["map"]


def _step(k: int, kept: list[str], res: dict, float_map: float) -> dict:
    return {
        "step": k,
        "kept_float": kept[-1:] if k else [],
        "layers_in_float": len(kept),
        "map": round(res["map"], 5),
        "map50": round(res["map50"], 5),
        "drop_points": round(100 * (float_map - res["map"]), 3),
    }


def _track(items: list, enabled: bool, label: str):
    if not enabled:
        yield from items
        return
    from rich.progress import Progress

    with Progress(console=progress_console()) as bar:
        yield from bar.track(items, description=label)
