"""Evolutionary zero-shot search (MAE-NAS) under FLOPs, parameter, layer, effectiveness and
latency budgets.

The population starts from the seeds (``init``), the smallest network of the space (or,
when it is too thin for an effectiveness budget, the widest and shallowest) and random
candidates that fit the budgets. Each iteration mutates a random member; a child
over any budget is rejected (static costs first, latency -- measured, cached --
only when those pass), otherwise it is scored with the MAE-DET entropy score and
joins the population, which keeps the ``population`` best (so the best is never
lost). Optionally the best is then polished by steepest ascent over its neighbours
(:meth:`SearchSpace.neighbours`: every one-step change of one gene or of two genes at
once) for up to ``polish`` rounds: random mutation rarely tries the two-gene moves
that a tight layer or FLOPs budget leaves as the only way up.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import inspect
import json
import logging
import math
import random
import shlex
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml

from yoloslim.configs import (
    DEFAULT_IMGSZ,
    check_config,
    check_flags,
    check_imgsz,
    check_path,
    from_mapping,
    int_problem,
)
from yoloslim.errors import ConfigError, ModelError
from yoloslim.fileio import (
    atomic_file,
    first_missing,
    folder_lock,
    refuse_overwriting_input,
    removed_if_left_empty,
    write_problem,
)
from yoloslim.models.arch import edited_since_search
from yoloslim.nas.budget import Budget
from yoloslim.nas.evaluator import Candidate, Evaluator, check_smallest
from yoloslim.nas.latency import (
    CACHE_NAME,
    LatencyCache,
    LatencySettings,
    openvino_precision,
)
from yoloslim.nas.score import DEFAULT_STAGE_WEIGHTS, SCORE_METHODS, SCORE_TEXT
from yoloslim.nas.space import SearchSpace, genome_dict, genome_of, resolve_arch
from yoloslim.progress import progress_console, say
from yoloslim.result import Result, short_repr
from yoloslim.torch_state import keeps_caller_state

__all__ = ["SearchResult", "search", "search_from_dict", "Evaluator"]

log = logging.getLogger(__name__)


@dataclass
class SearchResult:
    """What :func:`search` returns.

    Attributes:
        arch: the best architecture, an arch dict accepted by ``yoloslim.build_model``.
        score: its entropy score.
        report: JSON-able search report (also written as ``nas_report.json``).
        best: the top-k candidates, best first, each a dict with ``arch``, ``score``,
            ``gflops``, ``params`` (the training form), ``params_deploy`` (the deploy form,
            which the params budget bounds), ``layers``, ``latency_ms``.
        artifacts: files written (``arch``, ``report``) when ``out`` was given.
    """

    arch: dict
    score: float
    report: dict
    best: list[dict] = field(default_factory=list)
    artifacts: dict[str, Path] = field(default_factory=dict)

    def __repr__(self) -> str:
        fields = {"score": self.score, "arch": self.arch, "report": self.report}
        return short_repr(self, fields, self.artifacts)

    def to_json(self) -> str:
        """The report and the files written, as every stage's Result gives them."""
        return self._as_result().to_json()

    def save_report(self, path: str | Path) -> Path:
        """Write :meth:`to_json` to ``path`` (atomic rename)."""
        return self._as_result().save_report(path)

    def _as_result(self) -> Result:
        return Result(self.arch, self.report, self.artifacts)


def _validate_settings(
    *,
    imgsz,
    population,
    iterations,
    init_repeats,
    nc,
    top_k,
    score_batch,
    polish,
    seed,
    stage_weights,
    score_method,
) -> None:
    """ConfigError naming the first of :func:`search`'s settings that it cannot take."""
    if imgsz is None:
        raise ConfigError("imgsz is required (the size the budgets and the score use)")
    check_imgsz(imgsz)
    checks = (
        ("population", population, 2),
        ("iterations", iterations, 0),
        ("init_repeats", init_repeats, 1),
        ("nc", nc, 1),
        ("top_k", top_k, 1),
        ("score_batch", score_batch, 1),
        ("polish", polish, 0),
    )
    for name, v, low in checks:
        problem = int_problem(v, low)
        if problem:
            raise ConfigError(f"{name}={v!r} {problem}")
    if int_problem(seed, 0, 2**32 - 1):
        raise ConfigError(f"seed={seed!r} must be an integer in [0, 2**32)")
    if isinstance(stage_weights, (str, bytes, dict)) or not hasattr(stage_weights, "__iter__"):
        raise ConfigError(
            f"stage_weights={stage_weights!r} (--stage-weights) must be a list of 5 numbers (one "
            "per stage)"
        )
    stage_weights = [w.item() if hasattr(w, "item") else w for w in stage_weights]  # numpy
    if len(stage_weights) != 5:
        raise ConfigError(
            f"stage_weights={list(stage_weights)!r} (--stage-weights) needs 5 entries (one per "
            "stage)"
        )
    bad = [w for w in stage_weights if isinstance(w, bool) or not isinstance(w, (int, float))]
    if bad or any(not math.isfinite(w) or w < 0 for w in stage_weights):
        raise ConfigError(
            f"stage_weights={list(stage_weights)!r} (--stage-weights) must be 5 finite numbers >= 0"
        )
    if not any(stage_weights):  # every score 0: the "best" would be any arch
        raise ConfigError(
            f"stage_weights={list(stage_weights)!r} (--stage-weights): at least one must be > 0"
        )
    if score_method not in SCORE_METHODS:
        raise ConfigError(f"score_method={score_method!r} must be one of {SCORE_METHODS}")


@keeps_caller_state
def search(
    *,
    imgsz: int = DEFAULT_IMGSZ,
    budget: Budget,
    space: SearchSpace | None = None,
    population: int = 32,
    iterations: int = 300,
    seed: int = 0,
    init_repeats: int = 3,
    out: str | Path | None = None,
    progress: bool = False,
    nc: int = 80,
    stage_weights: Sequence[float] = DEFAULT_STAGE_WEIGHTS,
    score_batch: int = 4,
    latency: LatencySettings | None = None,
    top_k: int = 5,
    name: str = "nas",
    init: str | Path | dict | Sequence[str | Path | dict] | None = None,
    score_method: str = "gaussian",
    polish: int = 0,
    latency_cache: str | Path | bool = True,
) -> SearchResult:
    """Search the backbone stage list for the highest MAE-DET score within ``budget``.

    Args:
        imgsz: input size the FLOPs, latency and score are computed at.
        budget: upper bounds (FLOPs, params, measured latency, layers, effectiveness).
        space: the search space (default :class:`SearchSpace`).
        population: candidates kept (the best ones).
        iterations: mutations tried (a rejected or already seen child still counts).
        seed: seeds the evolution and the score's random initialisations; with no
            latency budget the result is deterministic for a seed.
        init_repeats: random initialisations the score is averaged over.
        out: a folder (writes ``arch.yaml`` and ``nas_report.json``) or an ``*.yaml``
            path for the arch (the report goes beside it as ``nas_report.json``).
        progress: show a rich progress bar.
        nc: classes of the detector (the head's share of FLOPs and params).
        stage_weights: ``alpha_i`` of the score, one per stage (DAMO-YOLO: [0, 0, 1, 1, 6]).
        score_batch: batch of the Gaussian input of the score.
        latency: how latency is measured (default: torch, 1 thread).
        top_k: candidates reported in ``best`` (their latency is measured for the report).
        name: the ``name`` field of the returned arch.
        init: architectures that seed the population, as TinyNAS starts from a given
            structure: registered names (``"damo-nano"``), arch dicts or arch YAML paths.
            Their backbones must be genomes of ``space`` (use
            :meth:`SearchSpace.from_template` to keep their neck and head) and within
            ``budget``; the population keeps the best, so the result scores at least
            as high as every seed.
        score_method: ``"gaussian"`` (MAE-DET's random forward, averaged over
            ``init_repeats``) or ``"analytic"`` (TinyNAS ``compute_madnas``'s closed
            form: no forward, no randomness, the score ~100x faster to compute; see
            :mod:`yoloslim.nas.score`).
        polish: rounds of steepest ascent from the evolution's best over its one- and
            two-gene neighbours; stops early at a local optimum. 0 (default): none. A
            round scores up to a few hundred new candidates, as long as that many
            mutations take.
        latency_cache: a JSON-lines file of measured latencies that this search reuses
            and adds to (:class:`~yoloslim.nas.latency.LatencyCache`: only entries
            measured on this machine with the same settings are reused). True (default):
            ``nas_latency_cache.jsonl`` beside ``nas_report.json`` when ``out`` is given;
            False: measure every candidate again.

    Returns:
        SearchResult; ``result.arch`` builds with ``yoloslim.build_model`` and trains
        with ``yoloslim train --model arch.yaml``.

    Raises:
        ConfigError: bad arguments, or a budget below the smallest network of the space.

    Example:
        >>> # minutes on a 2-core CPU; score_method="analytic" takes seconds
        >>> res = search(imgsz=320, budget=Budget(flops=1.0), iterations=200, out="runs/nas")
        >>> from yoloslim.models import build_model
        >>> model = build_model(res.arch, nc=4)
    """
    check_config(budget, Budget, "budget")  # a mapping gets the Budget.from_dict hint
    if space is not None and not isinstance(space, SearchSpace):
        raise ConfigError(
            f"space must be a SearchSpace, got {type(space).__name__} "
            "(SearchSpace.from_template('damo-nano') searches a registered model's backbone)"
        )
    if latency is not None and not isinstance(latency, LatencySettings):
        raise ConfigError(f"latency must be a LatencySettings, got {type(latency).__name__}")
    space = space or SearchSpace()
    latency = latency or LatencySettings()
    _validate_settings(
        imgsz=imgsz,
        population=population,
        iterations=iterations,
        init_repeats=init_repeats,
        nc=nc,
        top_k=top_k,
        score_batch=score_batch,
        polish=polish,
        seed=seed,
        stage_weights=stage_weights,
        score_method=score_method,
    )
    # plain numbers from here on (numpy ones pass the checks; the report's JSON needs plain
    # ones, and failed to write after the whole search)
    population, iterations, init_repeats, nc, top_k, score_batch, polish, seed = (
        int(v) for v in (population, iterations, init_repeats, nc, top_k, score_batch, polish, seed)
    )
    stage_weights = [w.item() if hasattr(w, "item") else w for w in stage_weights]
    check_flags(progress=progress)
    if not isinstance(name, str) or not name.strip():  # the arch it writes would not build
        raise ConfigError(f"name={name!r}: must be a non-empty string (the arch's name)")
    if out is not None:
        check_path(out, "out", "the arch .yaml's or its folder's path")
    init_items(init)  # its type, before any work
    cache_file = _cache_path(latency_cache, out)
    if out is not None:
        _check_out(Path(out), init, cache_file)
    # a second search into the same folder is refused (their arch.yaml and report would mix)
    folder = _arch_path(out).parent if out is not None else None
    made = first_missing(folder) if folder is not None else False
    lock = folder_lock(folder, "nas") if folder is not None else contextlib.nullcontext()
    with lock, removed_if_left_empty(folder, made):
        cache = LatencyCache(cache_file, imgsz, latency)
        t0 = time.perf_counter()
        ev = Evaluator(
            space=space,
            budget=budget,
            imgsz=imgsz,
            nc=nc,
            stage_weights=stage_weights,
            repeats=init_repeats,
            batch=score_batch,
            seed=seed,
            latency=latency,
            method=score_method,
            latency_cache=cache,
        )
        check_smallest(ev)
        if progress:
            say(_scale_line(ev))
        seeds = _seed_candidates(ev, init)
        rng = random.Random(seed)
        duplicates = 0
        with _progress(progress, iterations) as bar:
            pop = _initial_population(ev, rng, population, seeds, bar)
            for _ in range(iterations):
                parent = rng.choice(pop)
                child = space.mutate(parent.genome, rng)
                if ev.tried(child):
                    duplicates += 1
                else:
                    cand = ev(child)
                    if cand is not None:
                        pop.append(cand)
                        pop.sort(key=lambda c: -c.score)
                        del pop[population:]
                bar.advance(pop[0].score, len(ev.seen))
            polished = _polish(ev, pop[0], polish, bar)
        feasible = sorted((c for c in ev.seen.values() if c is not None), key=lambda c: -c.score)
        best, confirmed = _timed_again(ev, feasible, top_k)
        best_arch = dict(best[0].arch, name=name)
        report = {
            "imgsz": imgsz,
            "nc": nc,
            "budget": budget.to_dict(),
            "space": space.to_dict(),
            "population": population,
            "iterations": iterations,
            "seed": seed,
            # the closed form draws no weights and feeds no input: these do not apply to it
            "init_repeats": init_repeats if score_method == "gaussian" else None,
            "score_batch": score_batch if score_method == "gaussian" else None,
            "stage_weights": list(stage_weights),
            "score_method": score_method,
            # the scores' last digits depend on torch's thread count (reduction order)
            "score_threads": torch.get_num_threads(),
            "score": SCORE_TEXT[score_method],
            "latency": {
                **dataclasses.asdict(latency),
                "batch": 1,
                "measured": len(ev.latencies) - cache.reused,
                "from_cache": cache.reused,
                "cache": None if cache.path is None else str(cache.path.absolute()),
                **({"precision": openvino_precision()} if latency.runtime == "openvino" else {}),
                "confirmed": confirmed,
            },
            "init": [
                {"name": label, "score": c.score, "gflops": c.cost.gflops, "layers": c.cost.layers}
                for label, c in seeds
            ],
            "evaluated": len(ev.seen),
            "feasible": len(feasible),
            "rejected": dict(ev.rejected),
            "duplicates": duplicates,
            "polish": polished,
            "search_s": round(time.perf_counter() - t0, 2),
            "latency_s": round(ev.latency_s, 2),
            "best": [_entry(i, c) for i, c in enumerate(best)],
        }
        result = SearchResult(
            arch=best_arch,
            score=best[0].score,
            report=report,
            best=[_entry(i, c) for i, c in enumerate(best)],
        )
        if out is not None:  # the report as written: it names the arch file and its digest
            result.artifacts, result.report = _write(out, best_arch, report)
        return result


def _polish(ev: Evaluator, start: Candidate, rounds: int, bar: _Bar) -> dict:
    """Steepest ascent from ``start`` over :meth:`SearchSpace.neighbours`; what it did."""
    n0, best, done = len(ev.seen), start, 0
    for r in range(rounds):
        bar.phase(f"nas polish {r + 1}/{rounds} | best {best.score:.2f}")
        scored = [c for c in map(ev, ev.space.neighbours(best.genome)) if c is not None]
        top = max(scored, key=lambda c: c.score, default=None)
        if top is None or top.score <= best.score:
            break
        best, done = top, r + 1
    return {
        "rounds": rounds,
        "improved": done,
        "evaluated": len(ev.seen) - n0,
        "score_before": start.score,
        "score_after": best.score,
    }


def _seed_candidates(ev: Evaluator, init) -> list[tuple[str, Candidate]]:
    """The scored ``init`` architectures; ConfigError when one is outside the space or budget."""
    items = init_items(init)
    seeds = []
    for item in items:
        try:
            arch, label = resolve_arch(item, ev.nc)
        except (ConfigError, ModelError) as e:
            raise ConfigError(f"init: {e}") from e
        differs = [
            f"{what} {own!r} (the space's: {theirs!r})"
            for what, own, theirs in (
                ("act", arch.get("act", "silu"), ev.space.act),
                *[
                    ("block", st["block"], ev.space.block)
                    for st in arch["backbone"]["stages"][1:]
                    if st["block"] != ev.space.block
                ][:1],
            )
            if own != theirs
        ]
        if differs:  # the genome keeps neither: it was rebuilt as another network
            raise ConfigError(
                f"init {label!r}: its {' and its '.join(differs)} differ from the search "
                "space's; search a space of its kind (--keep-neck takes the space from the first "
                "--init; space: {template: ARCH} in --config; or --init an arch of the space's "
                "block and activation)"
            )
        # in the form the Evaluator keeps it (a latency it measured was looked up under the
        # other: audit52 review F7), and a stem's kernel the stem does not use not refused
        genome = ev.space.canonical(genome_of(arch))
        if not ev.space.contains(genome):
            step = ev.space.width_step
            off = [g[0] for g in genome if g[0] % step]
            hint = (
                f"its widths {off} are not multiples of width_step={step}: give space: "
                f"{{width_step: {math.gcd(step, *off)}}} in --config (with --keep-neck, or "
                "with template: ARCH there)"
                if off
                else "search the space of its kind: --keep-neck, or space: {template: ARCH} "
                "in --config, holds it; or widen the ranges with space: {widths: [[lo, hi], "
                "...], depths: ...} in --config"
            )
            raise ConfigError(
                f"init {label!r}: its backbone is outside the search space: "
                f"{'; '.join(ev.space.outside(genome))} ({hint})"
            )
        cand = ev(genome)
        if cand is None:
            lat = ev.latencies.get(genome) if ev.budget.latency_ms else None
            cost = ev.cost(genome)
            have = {
                "flops": f"{cost.gflops:.4g} GFLOPs",
                "params": f"{cost.params_deploy / 1e6:.4g} M params",
                "layers": f"{cost.layers} layers",
                "effectiveness": f"effectiveness {cost.effectiveness:.3g}",
                "latency_ms": f"{lat} ms",
            }
            over = ev.budget.violations(cost, lat)
            limits = ev.budget.to_dict()
            text = ", ".join(f"{have[k]} > {k}={limits[k]}" for k in over)
            hint = (
                "; in this space the neck follows the backbone, so the seed is rebuilt with "
                "another neck: --keep-neck (space template) keeps its own"
                if ev.space.neck_out is None and not isinstance(item, dict)
                else ""
            )
            raise ConfigError(f"init {label!r} as built in this search space: {text}{hint}")
        seeds.append((label, cand))
    return seeds


def _initial_population(
    ev: Evaluator,
    rng: random.Random,
    size: int,
    seeds: list[tuple[str, Candidate]],
    bar: _Bar | None = None,
) -> list[Candidate]:
    pop = [c for _, c in seeds]
    # the smallest network meets every static budget but effectiveness (it is thin), so
    # under an effectiveness budget the widest, shallowest one stands in for it
    first = ev(ev.space.smallest()) or ev(ev.space.widest_shallowest())
    if first is not None and all(c.genome != first.genome for c in pop):
        pop.append(first)
    for _ in range(10 * size):
        if len(pop) >= size:
            break
        g = ev.space.sample(rng)
        if ev.tried(g):
            continue
        if bar is not None:
            bar.phase(f"nas initial population {len(pop)}/{size} ({len(ev.seen)} tried)")
        cand = ev(g)
        if cand is not None:
            pop.append(cand)
    if not pop:
        raise ConfigError(
            f"no network of the search space met every budget ({ev.budget.to_dict()}) among "
            f"{len(ev.seen)} random ones: the budgets may conflict, or leave only a small part "
            "of the space (an effectiveness bound asks for width that a FLOPs or params bound "
            "forbids?); loosen one, or pass --init with an arch that meets them all"
        )
    pop.sort(key=lambda c: -c.score)
    return pop


# interleaved rounds in which the best candidates are timed again before they are returned
CONFIRM_ROUNDS = 5


def _timed_again(ev: Evaluator, feasible: list[Candidate], top_k: int) -> tuple[list, dict]:
    """The ``top_k`` best candidates, each with the median latency of
    :data:`CONFIRM_ROUNDS` rounds that time them in turn (one noisy sample decided
    feasibility during the search, and evolution favours the candidates whose sample came
    out low). Under a latency budget, a candidate over it in these rounds is dropped and
    the next one timed, up to ``4 * top_k`` candidates in all; returns ``(best, {"rounds",
    "timed", "from_cache", "over_budget"})`` (``from_cache``: the timed candidates whose
    rounds an earlier search on the latency cache had kept).

    Raises:
        ConfigError: no candidate stays within the latency budget when timed again.
    """
    limit, settings = ev.budget.latency_ms, ev.latency
    kept: list[Candidate] = []
    over: list[float] = []
    start, most = 0, 4 * top_k
    while len(kept) < top_k and start < min(len(feasible), most):
        batch = feasible[start : min(start + top_k - len(kept), most)]
        start += len(batch)
        for c, ms in zip(batch, ev.timed_again(batch, CONFIRM_ROUNDS), strict=True):
            if limit is None or ms <= limit:
                kept.append(c)
            else:
                over.append(ms)
    if not kept:
        closest = min(over)
        raise ConfigError(
            f"latency_ms={limit}: none of the {len(over)} best candidates stays within it when "
            f"timed again ({CONFIRM_ROUNDS} rounds each; the fastest: {closest:.3g} ms on "
            f"{settings.runtime}, {settings.threads} thread(s)): the budget is within this "
            "machine's timing noise; raise it, or time with more runs (latency runs)"
        )
    if over:
        log.warning(
            "%d of the %d best candidates went over latency_ms=%s when timed again in %d "
            "rounds (one sample had passed them); %s",
            len(over),
            start,
            limit,
            CONFIRM_ROUNDS,
            "the next ones were taken"
            if len(kept) == top_k
            else f"{len(kept)} of the {top_k} asked for are returned",
        )
    kept.sort(key=lambda c: -c.score)
    confirmed = {
        "rounds": CONFIRM_ROUNDS,
        "timed": start,
        "from_cache": ev.rounds_reused,
        "over_budget": len(over),
    }
    return kept, confirmed


def _entry(rank: int, c: Candidate) -> dict:
    return {
        "rank": rank + 1,
        "score": c.score,
        "score_std": c.score_std,
        "stage_scores": c.stages,
        "gflops": c.cost.gflops,
        "params": c.cost.params,
        "params_deploy": c.cost.params_deploy,
        "layers": c.cost.layers,
        "effectiveness": c.cost.effectiveness,
        "latency_ms": c.latency_ms,
        "genome": genome_dict(c.genome),
        "arch": c.arch,
    }


def _scale_line(ev: Evaluator) -> str:
    """The budget against damo-nano and the space's smallest network at this search's size
    and classes: a FLOPs budget is at ``imgsz``, so the same number at another size buys
    another network (the edge-tiny recipe's 0.5 GFLOPs at 320 px is twice damo-nano at 160)."""
    ref = ev.costs(resolve_arch("damo-nano", ev.nc)[0])
    small = ev.cost(ev.space.smallest())
    b = ev.budget
    parts = []
    if b.flops is not None:
        parts.append(
            f"{b.flops:g} GFLOPs ({b.flops / ref.gflops:.2f}x damo-nano's {ref.gflops:.3g})"
        )
    if b.params is not None:
        ref_m = ref.params_deploy / 1e6
        parts.append(f"{b.params:g} M params ({b.params / ref_m:.2f}x damo-nano's {ref_m:.3g})")
    for name, value, unit in (("latency", b.latency_ms, " ms"), ("layers", b.layers, "")):
        if value is not None:
            parts.append(f"{name} {value:g}{unit}")
    if b.effectiveness is not None:
        parts.append(f"effectiveness {b.effectiveness:g}")
    return (
        f"nas: at {ev.imgsz} px and {ev.nc} classes, budget "
        + ", ".join(parts)
        + f"; the space's smallest network: {small.gflops:.3g} GFLOPs, "
        f"{small.params_deploy / 1e6:.3g} M params"
    )


def _check_out(out: Path, init=None, cache_file: Path | None = None) -> None:
    """Fail before the search, not after it, when ``out`` cannot be written, would replace
    an ``init`` architecture file (its hand edits would be lost), or is ``cache_file``."""
    arch_path = _arch_path(out)
    if arch_path != out and out.is_file():  # `--out notes.txt`: a file, taken for a folder
        raise ConfigError(
            f"out={out}: is a file that is no .yaml; name an arch .yaml to write (nas_report.json "
            "goes beside it) or a folder"
        )
    if arch_path.is_dir():
        raise ConfigError(f"out={out}: {arch_path} is a folder; name a file or another folder")
    problem = write_problem(arch_path)
    if problem:
        raise ConfigError(f"out={out}: {problem}")
    for item in init_items(init):
        if _unedited_result(item, arch_path):
            continue  # re-seeding from its own result, as written: nothing of the user's in it
        refuse_overwriting_input(
            item, [arch_path], arg="init", hint="name another --out for the search's arch.yaml"
        )
    # a search replaces only what an earlier search wrote (a data.yaml or a hand-written arch
    # given by mistake would be lost)
    if arch_path.is_file() and not arch_path.read_bytes().startswith(_HEADER.encode()):
        raise ConfigError(
            f"out={out}: {arch_path} exists and was not written by yoloslim nas (an input?); "
            "it is not replaced: name another file or folder"
        )
    report = arch_path.parent / "nas_report.json"
    if cache_file is not None and cache_file.absolute() in {
        arch_path.absolute(),
        report.absolute(),
    }:
        raise ConfigError(
            f"latency_cache={str(cache_file)!r} is the search's own arch.yaml or report; "
            "name another file"
        )
    if report.is_dir():
        raise ConfigError(f"out={out}: {report} is a folder; the search report goes there")
    data: dict = {}
    if report.is_file():
        try:
            data = json.loads(report.read_bytes())
            ours = isinstance(data, dict) and "best" in data
        except (ValueError, TypeError, OSError):
            data, ours = {}, False
        if not ours:
            raise ConfigError(
                f"out={out}: {report} exists and is no search report; it is not replaced: "
                "name another folder"
            )
        other = data.get("arch_file")
        if other and other != arch_path.name and (arch_path.parent / other).exists():
            raise ConfigError(
                f"out={out}: {report} is the report of {other}, beside it; a second search "
                "would replace it: give each search a folder of its own"
            )
    edited = edited_since_search(arch_path) if arch_path.is_file() else False
    if edited:
        raise ConfigError(
            f"out={out}: {arch_path} was edited since its search wrote it (its digest is not "
            f"the one {report.name} beside it records); the edits are not replaced: move the "
            "file, or name another file or folder"
        )
    if edited is None:  # no report of its own beside it: edits of the user's cannot be ruled out
        raise ConfigError(
            f"out={out}: {arch_path} has no {report.name} of its own beside it, so whether it "
            "was edited since its search wrote it cannot be told; it is not replaced: move the "
            "file (or put its report back), or name another file or folder"
        )
    if arch_path.is_file() or data:  # an earlier search's result, as written (or its report
        # alone, its arch.yaml moved away): replaced at the end
        best = data.get("best")
        score = best[0].get("score") if best and isinstance(best[0], dict) else None
        log.warning(
            "%s is an earlier search's result%s; this search replaces it when it ends: name "
            "another --out to keep it",
            f"{arch_path} (and {report.name})" if arch_path.is_file() else report,
            f" (score {score:.3f})" if isinstance(score, (int, float)) else "",
        )


def _unedited_result(item, arch_path: Path) -> bool:
    """Whether ``item`` is ``arch_path`` exactly as the search whose report is beside it wrote
    it (its digest in the report): no hand edit of the user's would be lost."""
    if not isinstance(item, (str, Path)) or not arch_path.is_file():
        return False
    try:
        if not Path(item).expanduser().samefile(arch_path):
            return False
    except OSError:
        return False
    return edited_since_search(arch_path) is False


def _arch_path(out: str | Path) -> Path:
    """The arch.yaml ``out`` names: ``out`` itself when it is an ``*.yaml``, else in it;
    ``nas_report.json`` goes beside it."""
    out = Path(out)
    return out if out.suffix.lower() in (".yaml", ".yml") else out / "arch.yaml"


def init_items(init) -> list:
    """``init`` as a list of seeds (one seed given alone is a list of one); ConfigError for a
    value that is no seed (``init: 5`` in a YAML failed as a TypeError, after earlier work)."""
    if init is None:
        return []
    items = [init] if isinstance(init, (str, Path, dict)) else init
    if not isinstance(items, (list, tuple)) or not all(
        isinstance(i, (str, Path, dict)) for i in items
    ):
        raise ConfigError(
            f"init={init!r} must be an arch (a registered model's name, an arch .yaml or a "
            "checkpoint .pt path, or an arch mapping) or a list of them"
        )
    return list(items)


def _cache_path(latency_cache: str | Path | bool, out: str | Path | None) -> Path | None:
    if latency_cache is True:
        return None if out is None else _arch_path(out).parent / CACHE_NAME
    if latency_cache is False or latency_cache is None:
        return None
    if not isinstance(latency_cache, (str, Path)):
        raise ConfigError(
            f"latency_cache={latency_cache!r} must be a file path, True (beside the report) "
            "or False (none)"
        )
    return Path(latency_cache)


_HEADER = "# found by `yoloslim nas`"  # the first line of every arch.yaml a search writes


def _write(out: str | Path, arch: dict, report: dict) -> tuple[dict[str, Path], dict]:
    arch_path = _arch_path(out)
    folder = arch_path.parent
    folder.mkdir(parents=True, exist_ok=True)
    header = (
        f"{_HEADER} (MAE-DET score {report['best'][0]['score']:.3f}, "
        f"{report['best'][0]['gflops']:.4g} GFLOPs at {report['imgsz']} px)\n"
        f"# train it: yoloslim train --model {shlex.quote(str(arch_path))} --data data.yaml "
        f"--imgsz {report['imgsz']}\n"
    )
    text = header + yaml.safe_dump(arch, sort_keys=False)
    digest = hashlib.sha1(text.encode()).hexdigest()
    report = {**report, "arch_file": arch_path.name, "arch_sha1": digest}
    report_path = folder / "nas_report.json"
    # both written whole before either moves (a full disk leaves the earlier pair as it
    # was), then the earlier report removed and the two moved into place, arch.yaml first:
    # a stop in the report's write left the new arch.yaml without one, which the next
    # search refused (audit48 nas F2); only these three calls are apart now
    with atomic_file(report_path) as rep, atomic_file(arch_path) as arc:
        rep.write((json.dumps(report, indent=2) + "\n").encode())
        arc.write(text.encode())
        report_path.unlink(missing_ok=True)
    return {"arch": arch_path, "report": report_path}, report


class _Bar:
    def __init__(self, progress, task) -> None:
        self.progress, self.task = progress, task

    def advance(self, best: float, evaluated: int) -> None:
        if self.progress is not None:
            self.progress.update(
                self.task, advance=1, description=f"nas best {best:.2f} | evaluated {evaluated}"
            )

    def phase(self, text: str) -> None:
        if self.progress is not None:
            self.progress.update(self.task, description=text)


class _progress:
    """A rich progress bar over the iterations, or nothing."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.enabled, self.total, self.progress = enabled, total, None

    def __enter__(self) -> _Bar:
        if not self.enabled:
            return _Bar(None, None)
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        # stderr: stdout stays clean for JSON (CLI --json, benchmark scripts)
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=progress_console(),
        )
        self.progress.start()
        return _Bar(self.progress, self.progress.add_task("nas", total=self.total))

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.stop()


def _dict_keys() -> set[str]:
    """The keys a nas mapping (a recipe stage) may hold: :func:`search`'s settings."""
    return set(inspect.signature(search).parameters) - {"out", "progress"}


def search_from_dict(
    d: dict, out: str | Path | None = None, *, progress: bool = False
) -> SearchResult:
    """Run :func:`search` from a mapping (e.g. a recipe's ``nas:`` section).

    ``budget`` is a mapping of :class:`Budget` fields, ``space`` of :class:`SearchSpace`
    fields, ``latency`` of :class:`LatencySettings` fields; unknown keys anywhere raise
    :class:`ConfigError`.

    Example:
        >>> res = search_from_dict({"imgsz": 320, "budget": {"flops": 1.0}}, "runs/nas")
    """
    return search(**search_kwargs(d), out=out, progress=progress)


def search_kwargs(d: dict) -> dict:
    """:func:`search`'s keyword arguments from a mapping, every value checked (a recipe's
    ``nas:`` stage is checked this way when the recipe loads, before any stage runs).

    Raises:
        ConfigError: an unknown key, no ``budget``, or a value :func:`search` refuses.
    """
    if not isinstance(d, dict):
        raise ConfigError(f"nas: expected a mapping, got {type(d).__name__}")
    allowed = _dict_keys()
    unknown = sorted(set(d) - allowed)
    if unknown:
        raise ConfigError(f"nas: unknown key(s) {unknown}; allowed: {sorted(allowed)}")
    if "budget" not in d:
        raise ConfigError("nas: 'budget' is required (e.g. budget: {flops: 1.0})")
    kw = dict(d)
    kw["budget"] = Budget.from_dict(d["budget"])
    kw["space"] = SearchSpace.from_dict(d.get("space"))
    if "latency" in d:
        kw["latency"] = from_mapping(LatencySettings, d["latency"], "nas latency")
    given = {
        k: p.default
        for k, p in inspect.signature(search).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    given.update(kw)
    checked = inspect.signature(_validate_settings).parameters
    _validate_settings(**{k: given[k] for k in checked})
    init_items(given["init"])  # the types of the paths too, not only once the search starts
    _cache_path(given["latency_cache"], None)
    return kw
