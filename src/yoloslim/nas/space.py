"""The search space: per-stage width, depth, kernel and bottleneck ratio of the backbone.

A candidate is a :data:`Genome`, a tuple of five ``(out, depth, kernel, ratio)`` genes:
the stem (stage 0, a single stride-2 conv, so only its width varies) and four
stride-2 stages, as in :mod:`yoloslim.models.backbone`. The neck and head follow
the chosen widths (:meth:`SearchSpace.arch`), so one genome is one whole detector.
"""

from __future__ import annotations

import dataclasses
import numbers
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from yoloslim.configs import from_mapping, int_problem, one_of, plain_numbers
from yoloslim.errors import ConfigError
from yoloslim.models.arch import KERNEL_SIZES
from yoloslim.models.backbone import SEARCHED_BLOCKS
from yoloslim.models.blocks import ACTIVATIONS, inner_width

__all__ = ["Genome", "SearchSpace", "genome_dict", "genome_of", "resolve_arch"]

# one gene per stage: (out channels, depth, kernel, bottleneck ratio)
Gene = tuple[int, int, int, float]
Genome = tuple[Gene, ...]

_GENE_KEYS = ("out", "depth", "kernel", "ratio")


def _listed(value: object) -> bool:
    """Whether ``value`` is a list or tuple of settings (not a string, which is a sequence
    of characters)."""
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes))


@dataclass(frozen=True)
class SearchSpace:
    """Ranges the search may choose from, one entry per stage (stem first).

    Attributes:
        widths: ``(min, max)`` output channels of each of the 5 stages.
        width_step: channel granularity (multiples of it, hardware friendly).
        depths: ``(min, max)`` residual blocks of each stage (the stem has none: ``(0, 0)``).
        kernels: kernel sizes of the blocks' convs (3 and 5 by default).
        ratios: bottleneck ratios (CSP split width = ``out * ratio``).
        block: ``"csp"`` (DAMO-YOLO's TinyNAS-CSP) or ``"res"`` (plain residual).
        act: activation of the whole detector.
        neck_ratio: neck widths = ``neck_ratio`` x the three backbone output widths.
        neck_depth: CSP blocks per neck fusion.
        head_convs: stacked convs per head branch.
        neck_out: fixed output widths of the three neck levels instead of ``neck_ratio``
            x the backbone's (the neck's input convs still follow the backbone). With a
            fixed neck and head the search is a backbone search, as in DAMO-YOLO, whose
            TinyNAS searches the backbone under a neck and head chosen per model size.
        head_width: fixed head width; ``None``: the finest neck width.
    """

    widths: tuple[tuple[int, int], ...] = ((16, 32), (24, 64), (32, 128), (64, 256), (96, 384))
    width_step: int = 8
    depths: tuple[tuple[int, int], ...] = ((0, 0), (1, 3), (1, 4), (1, 4), (1, 3))
    kernels: tuple[int, ...] = (3, 5)
    ratios: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
    block: str = "csp"
    act: str = "silu"
    neck_ratio: float = 1.0
    neck_depth: int = 1
    head_convs: int = 1
    neck_out: tuple[int, int, int] | None = None
    head_width: int | None = None

    def __post_init__(self) -> None:
        for name in ("widths", "depths", "kernels", "ratios", "neck_out"):  # numpy as lists
            object.__setattr__(self, name, plain_numbers(getattr(self, name)))
        self._validate()
        # plain ints, floats and tuples all the way down: the space hashes, YAML lists and
        # numpy numbers are accepted, and the report's JSON takes every value
        object.__setattr__(self, "widths", tuple((int(a), int(b)) for a, b in self.widths))
        object.__setattr__(self, "depths", tuple((int(a), int(b)) for a, b in self.depths))
        object.__setattr__(self, "kernels", tuple(int(k) for k in self.kernels))
        object.__setattr__(self, "ratios", tuple(float(r) for r in self.ratios))
        object.__setattr__(self, "width_step", int(self.width_step))
        object.__setattr__(self, "neck_ratio", float(self.neck_ratio))
        object.__setattr__(self, "neck_depth", int(self.neck_depth))
        object.__setattr__(self, "head_convs", int(self.head_convs))
        if self.neck_out is not None:
            object.__setattr__(self, "neck_out", tuple(int(v) for v in self.neck_out))
        if self.head_width is not None:
            object.__setattr__(self, "head_width", int(self.head_width))

    def _validate(self) -> None:
        def fail(name: str, problem: str) -> None:
            raise ConfigError(f"space: {name}={getattr(self, name)!r} {problem}")

        def ratio(v: object) -> bool:
            return isinstance(v, numbers.Real) and not isinstance(v, bool) and 0 < v <= 4

        for name in ("widths", "depths"):
            pairs = getattr(self, name)
            if not _listed(pairs):
                fail(name, "must be a list of (min, max) pairs, one per stage")
        if len(self.widths) != 5 or len(self.depths) != 5:
            raise ConfigError(
                "space: widths and depths need one (min, max) pair per stage (5: stem + 4 stages), "
                f"got {len(self.widths)} and {len(self.depths)}"
            )
        problem = int_problem(self.width_step)
        if problem:
            fail("width_step", problem)
        for name, pairs, low in (
            ("widths", self.widths, self.width_step),
            ("depths", self.depths, 0),
        ):
            for i, pair in enumerate(pairs):
                if (
                    not _listed(pair)
                    or len(pair) != 2
                    or any(int_problem(v, low=-(2**62)) for v in pair)
                ):
                    raise ConfigError(f"space: {name}[{i}]={pair!r} must be an integer pair")
                if not low <= pair[0] <= pair[1]:
                    raise ConfigError(
                        f"space: {name}[{i}]={pair!r} must satisfy {low} <= min <= max"
                    )
        for i, (lo, hi) in enumerate(self.widths):
            if lo < hi and -(-lo // self.width_step) * self.width_step > hi:
                # it searched the stage at ``lo`` channels alone, unsaid (audit46 nas F5); a
                # fixed width (min = max) is taken as given
                raise ConfigError(
                    f"space: widths[{i}]=({lo}, {hi}) holds no multiple of width_step="
                    f"{self.width_step}; widen it, or give one width as (w, w)"
                )
        if tuple(self.depths[0]) != (0, 0):
            raise ConfigError(
                f"space: depths[0]={self.depths[0]!r} must be (0, 0): the stem is one conv"
            )
        if any(lo < 1 for lo, _ in self.depths[1:]):
            raise ConfigError("space: stages 1-4 need at least one block (depth min >= 1)")
        kernels, ratios = self.kernels, self.ratios
        if (
            not _listed(kernels)
            or not kernels
            or any(int_problem(k) or k not in KERNEL_SIZES for k in kernels)
        ):
            fail("kernels", "must be a non-empty subset of 1, 3, 5, 7")
        if not _listed(ratios) or not ratios or not all(ratio(r) for r in ratios):
            fail("ratios", "must be non-empty, each a number in (0, 4]")
        if self.block not in SEARCHED_BLOCKS:
            fail("block", f"must be {one_of(SEARCHED_BLOCKS)}")
        if self.act not in ACTIVATIONS:
            fail("act", f"must be {one_of(ACTIVATIONS)}")
        if not ratio(self.neck_ratio):
            fail("neck_ratio", "must be a number in (0, 4]")
        for name in ("neck_depth", "head_convs"):
            problem = int_problem(getattr(self, name), low=0)
            if problem:
                fail(name, problem)
        neck_out = self.neck_out
        if neck_out is not None and (
            not _listed(neck_out) or len(neck_out) != 3 or any(int_problem(v) for v in neck_out)
        ):
            fail("neck_out", "must be three integers >= 1 (P3, P4, P5)")
        problem = None if self.head_width is None else int_problem(self.head_width)
        if problem:
            fail("head_width", problem)

    @classmethod
    def from_dict(cls, d: dict | None) -> SearchSpace:
        """Build from a mapping of field names; unknown keys raise :class:`ConfigError`.

        ``template: NAME|arch.yaml`` (a key of its own) is :meth:`from_template` of that
        arch, the other keys overriding it.
        """
        if d is None:
            return cls()
        allowed = {f.name for f in dataclasses.fields(cls)} | {"template"}
        unknown = sorted(set(d) - allowed) if isinstance(d, dict) else []
        if unknown:  # named with template among the keys a space takes
            raise ConfigError(f"unknown key(s) {unknown} in space; allowed: {sorted(allowed)}")
        if isinstance(d, dict) and "template" in d:
            rest = {k: v for k, v in d.items() if k != "template"}
            return cls.from_template(resolve_arch(d["template"])[0], **rest)
        return from_mapping(cls, d, "space")

    @classmethod
    def from_template(cls, arch: dict | str | Path, **overrides) -> SearchSpace:
        """The default space with the neck, head, activation and block type of ``arch``.

        The neck and head widths are kept fixed at the template's, so the search varies
        the backbone only. The default width and depth ranges are widened to hold the
        template's backbone and its kernels and ratios are added to the choices, so its own
        backbone is a genome of the space where its widths are multiples of ``width_step``
        (8; a 36-channel stage needs ``width_step=4`` among ``overrides``) and ``overrides``
        do not narrow it.

        Args:
            arch: an arch dict, a registered model name or an arch.yaml path.
            **overrides: other :class:`SearchSpace` fields (``widths``, ``ratios``, ...).

        Example:
            >>> SearchSpace.from_template("damo-nano", kernels=(3,)).kernels
            (3,)
        """
        if not isinstance(arch, dict):
            arch = resolve_arch(arch)[0]
        neck, head = arch["neck"], arch["head"]
        stages = arch["backbone"]["stages"]
        name = arch.get("name", "template")
        blocks = {s["block"] for s in stages[1:]}
        unsupported = []
        if len(stages) != 5 or stages[0]["block"] != "conv" or len(blocks) != 1:
            unsupported.append("backbone: a conv stem and four stages of one block type")
        if list(arch["backbone"].get("out_indices", [])) != [2, 3, 4]:
            unsupported.append("backbone out_indices [2, 3, 4]")
        if neck.get("kernel") != 3 or neck.get("ratio") != 0.5:
            unsupported.append("neck kernel 3 and ratio 0.5")
        if len(set(head["width"])) != 1 or head.get("reg_max") != 16:
            unsupported.append("one head width for all levels and reg_max 16")
        if list(head.get("strides", [])) != [8, 16, 32]:
            unsupported.append("head strides [8, 16, 32]")
        if unsupported:
            raise ConfigError(
                f"space template {name!r}: the search space needs " + "; ".join(unsupported)
            )
        values = dict(
            block=blocks.pop(),
            act=arch["act"],
            neck_depth=int(neck["depth"]),
            head_convs=int(head["num_convs"]),
            neck_out=tuple(int(c) for c in neck["out"]),
            head_width=int(head["width"][0]),
        )
        # the default ranges, widened to hold the template's own backbone (damo-tiny's last
        # stage has 512 channels, over the default 384): a search from it may keep it
        default = cls()
        values["widths"] = tuple(
            (min(lo, int(s["out"])), max(hi, int(s["out"])))
            for (lo, hi), s in zip(default.widths, stages, strict=True)
        )
        values["depths"] = tuple(
            (lo, hi) if i == 0 else (min(lo, int(s["depth"])), max(hi, int(s["depth"])))
            for i, ((lo, hi), s) in enumerate(zip(default.depths, stages, strict=True))
        )
        # and its kernels and ratios choices of the space (its widths stay on the step: a
        # 36-channel stage needs width_step 4, said where a seed is refused for it)
        values["kernels"] = tuple(
            sorted({*default.kernels, *(int(s.get("kernel", 3)) for s in stages[1:])})
        )
        values["ratios"] = tuple(
            sorted({*default.ratios, *(float(s.get("ratio", 1.0)) for s in stages[1:])})
        )
        values.update(overrides)
        return from_mapping(cls, values, "space")

    def to_dict(self) -> dict:
        """Plain JSON/YAML types."""
        d = dataclasses.asdict(self)
        return {
            k: [list(v) for v in d[k]]
            if k in ("widths", "depths")
            else (list(d[k]) if isinstance(d[k], tuple) else d[k])
            for k in d
        }

    # -- choices -------------------------------------------------------------------------------

    def width_choices(self, stage: int) -> list[int]:
        lo, hi = self.widths[stage]
        step = self.width_step
        first = -(-lo // step) * step
        return list(range(first, hi + 1, step)) or [lo]

    def depth_choices(self, stage: int) -> list[int]:
        lo, hi = self.depths[stage]
        return list(range(lo, hi + 1))

    def kernel_choices(self, stage: int) -> list[int]:
        return [3] if stage == 0 else sorted(self.kernels)

    def ratio_choices(self, stage: int) -> list[float]:
        return [1.0] if stage == 0 else sorted(self.ratios)

    def _choices(self, stage: int) -> tuple[list, list, list, list]:
        return (
            self.width_choices(stage),
            self.depth_choices(stage),
            self.kernel_choices(stage),
            self.ratio_choices(stage),
        )

    # -- genomes -------------------------------------------------------------------------------

    def smallest(self) -> Genome:
        """The cheapest network of the space (minimum of every gene)."""
        return tuple(tuple(c[0] for c in self._choices(i)) for i in range(5))  # type: ignore[misc]

    def widest_shallowest(self) -> Genome:
        """Maximum widths and ratios, minimum depths and kernels: the least deep for its
        width, so (about) the lowest effectiveness ``rho`` the space can reach."""
        return tuple(
            (w[-1], d[0], k[0], r[-1]) for w, d, k, r in (self._choices(i) for i in range(5))
        )  # type: ignore[return-value]

    def sample(self, rng: random.Random, scale: float | None = None) -> Genome:
        """A random genome; ``scale`` in [0, 1] caps each gene at that fraction of its range.

        Uniform sampling of every gene almost always lands far over a small budget, so
        the search draws ``scale`` itself to get candidates of every size.
        """
        s = rng.random() if scale is None else scale
        genes = []
        for i in range(5):
            gene = []
            for choices in self._choices(i):
                top = round(s * (len(choices) - 1))
                gene.append(choices[rng.randint(0, top)])
            genes.append(tuple(gene))
        return tuple(genes)  # type: ignore[return-value]

    def mutate(self, genome: Genome, rng: random.Random, n: int = 2) -> Genome:
        """Move ``1..n`` distinct random genes one or two steps (kernel: switch) within their
        ranges: the child differs from ``genome`` wherever a gene has two choices or more (a
        step clamped at a range's end, or one gene moved and moved back, gave the parent
        itself, and a fifth of a search's iterations went to such children: audit46 nas F1).
        A ratio moves to the next that builds another inner width (:meth:`ratio_steps`); on
        a stage where every ratio builds one width it is not moved."""
        genes = [list(g) for g in genome]
        movable = [
            (i, j)
            for i in range(5)
            for j, choices in enumerate(self._choices(i))
            # a ratio of a stage too narrow for another inner width has nowhere to go (the
            # child was the parent: audit52 review2 F3)
            if len(choices) > 1 and (j != 3 or self.ratio_steps(i, genome[i][0], genome[i][3]))
        ]
        for i, j in rng.sample(movable, min(rng.randint(1, n), len(movable))):
            if j == 3:  # a ratio: to the next one that builds another inner width
                near = self.ratio_steps(i, genes[i][0], genes[i][3])
                genes[i][3] = rng.choice(near) if near else genes[i][3]
                continue
            choices = self._choices(i)[j]
            cur = choices.index(genes[i][j]) if genes[i][j] in choices else 0
            steps = (-2, -1, 1, 2) if j == 0 else (-1, 1)
            genes[i][j] = choices[
                cur + rng.choice([s for s in steps if 0 <= cur + s < len(choices)])
            ]
        return tuple(tuple(g) for g in genes)  # type: ignore[return-value]

    def ratio_steps(self, stage: int, out: int, ratio: float) -> list[float]:
        """The ratios one step from ``ratio`` at a stage of ``out`` channels: the nearest
        below and above that build another inner width, each the smallest ratio of its
        width (as :meth:`canonical` keeps it). Where every ratio is a width of its own,
        the neighbouring choices; on a narrow stage whose ratios give one width, none
        (a one-choice step landed on the same network, and the larger ratios were out of
        reach: audit52 review F5)."""
        choices = self.ratio_choices(stage)
        width = inner_width(out, ratio)
        below = [r for r in choices if inner_width(out, r) < width]
        above = [r for r in choices if inner_width(out, r) > width]
        near = []
        if below:
            top = max(inner_width(out, r) for r in below)
            near.append(min(r for r in below if inner_width(out, r) == top))
        if above:
            near.append(min(above))
        return near

    def neighbours(self, genome: Genome) -> list[Genome]:
        """Every genome one step away in one gene or in two genes at once (kernel: switch).

        Two-gene moves matter under tight budgets: at a layer or FLOPs limit, moving a
        block from one stage to another is two steps, and either step alone is over
        budget, so single mutations cannot make it. Order is fixed (deterministic search).
        """
        singles: list[tuple[int, int, object]] = []  # (stage, gene, new value)
        for i in range(5):
            for j, choices in enumerate(self._choices(i)):
                if genome[i][j] not in choices:
                    continue
                if j == 3:  # a ratio: to the next that builds another width
                    singles += [(i, 3, r) for r in self.ratio_steps(i, genome[i][0], genome[i][3])]
                    continue
                cur = choices.index(genome[i][j])
                for k in (cur - 1, cur + 1):
                    if 0 <= k < len(choices):
                        singles.append((i, j, choices[k]))

        def apply(moves) -> Genome:
            genes = [list(g) for g in genome]
            for i, j, v in moves:
                genes[i][j] = v
            return tuple(tuple(g) for g in genes)  # type: ignore[return-value]

        out = [apply([m]) for m in singles]
        for a in range(len(singles)):
            for b in range(a + 1, len(singles)):
                if singles[a][:2] != singles[b][:2]:  # two different genes
                    out.append(apply([singles[a], singles[b]]))
        return out

    def canonical(self, genome: Genome) -> Genome:
        """``genome`` with each gene that changes nothing in the network set to the smallest
        choice that builds the same one: a ratio another smaller ratio gives the same inner
        width (:func:`~yoloslim.models.blocks.inner_width`: 0.25 and 0.5 of a 16-channel
        stage are both 8), at depth 0 the kernel (and a res stage's ratio), which no layer
        uses, and the stem's kernel and ratio (it is a 3x3 conv). Genomes that built one
        network were scored and reported as distinct candidates (audit52 nassearch F2)."""
        genes = []
        for i, (out, depth, kernel, ratio) in enumerate(genome):
            if i == 0:  # the stem is a 3x3 conv whatever its arch says
                kernel, ratio = self.kernel_choices(0)[0], self.ratio_choices(0)[0]
            else:
                kernels, ratios = self.kernel_choices(i), self.ratio_choices(i)
                if depth == 0 and kernel in kernels:
                    kernel = kernels[0]
                if depth == 0 and self.block == "res" and ratio in ratios:
                    ratio = ratios[0]
                width = inner_width(out, ratio)
                ratio = next((r for r in ratios if inner_width(out, r) == width), ratio)
            genes.append((out, depth, kernel, ratio))
        return tuple(genes)  # type: ignore[return-value]

    def contains(self, genome: Genome) -> bool:
        """Whether every gene is one of the space's choices."""
        return len(genome) == 5 and all(
            v in choices
            for i, g in enumerate(genome)
            for v, choices in zip(g, self._choices(i), strict=True)
        )

    def outside(self, genome: Genome) -> list[str]:
        """Why ``genome`` is not in the space: one ``stages[i].gene=v not in [...]`` per gene."""
        if len(genome) != 5:
            return [f"{len(genome)} stages, the space has 5"]
        why = []
        for i, g in enumerate(genome):
            for key, v, choices in zip(
                ("out", "depth", "kernel", "ratio"), g, self._choices(i), strict=True
            ):
                if v not in choices:
                    c = sorted(choices)
                    shown = f"{c[0]}..{c[-1]} (step {c[1] - c[0]})" if len(c) > 6 else str(c)
                    why.append(f"stages[{i}].{key}={v} not in {shown}")
        return why

    def arch(self, genome: Genome, nc: int = 80, name: str = "nas") -> dict:
        """The full arch dict (accepted by ``build_model``) of a genome."""
        stages = []
        for i, (out, depth, kernel, ratio) in enumerate(genome):
            block = "conv" if i == 0 else self.block
            stages.append(
                {
                    "block": block,
                    "out": int(out),
                    "depth": int(depth),
                    "kernel": int(kernel),
                    "stride": 2,
                    "ratio": float(ratio),
                }
            )
        step = self.width_step
        if self.neck_out is not None:
            neck = list(self.neck_out)
        else:
            neck = [max(step, round(self.neck_ratio * g[0] / step) * step) for g in genome[2:]]
        return {
            "name": name,
            "nc": nc,
            "act": self.act,
            "backbone": {"stages": stages, "out_indices": [2, 3, 4]},
            "neck": {"out": neck, "depth": self.neck_depth, "kernel": 3, "ratio": 0.5},
            "head": {
                "width": [self.head_width or neck[0]] * 3,
                "num_convs": self.head_convs,
                "reg_max": 16,
                "strides": [8, 16, 32],
            },
        }


def genome_of(arch: dict) -> Genome:
    """The genome of an arch dict with five stride-2 stages (e.g. a preset like damo-nano)."""
    stages = arch["backbone"]["stages"]
    if len(stages) != 5:
        raise ConfigError(f"arch has {len(stages)} backbone stages; the search space has 5")
    return tuple(
        (int(s["out"]), int(s["depth"]), int(s["kernel"]), float(s["ratio"])) for s in stages
    )  # type: ignore[return-value]


def resolve_arch(item, nc: int = 80) -> tuple[dict, str]:
    """``(arch dict, label)`` of a registered model name, an arch YAML path, an arch dict or
    a checkpoint (``.pt``: the architecture it holds; the weights play no part in the score)."""
    from yoloslim.models.registry import arch_from, list_models

    suffix = "" if isinstance(item, dict) else Path(str(item)).suffix.lower()  # ARCH.YAML too
    if suffix == ".pt":
        return _checkpoint_arch(item), str(item)
    is_file = isinstance(item, Path) or suffix in (".yaml", ".yml")
    if not (isinstance(item, dict) or is_file or (isinstance(item, str) and item in list_models())):
        raise ConfigError(
            f"{item!r}: not a registered model ({', '.join(list_models())}), an arch .yaml "
            "nor a checkpoint .pt"
        )
    label = str(item.get("name", "arch")) if isinstance(item, dict) else str(item)
    return arch_from(item, nc), label


def _checkpoint_arch(path) -> dict:
    """The stage-list arch a checkpoint was built from; ConfigError when its layers are not
    the ones that stage list builds (pruned or re-parameterised), since a search candidate
    is a stage list and would silently drop those per-layer widths."""
    from yoloslim.models.arch import arch_of
    from yoloslim.models.checkpoint import read_checkpoint
    from yoloslim.models.registry import build_model

    arch = dict(read_checkpoint(path)["arch"])
    layers = arch.pop("layers", None)
    if layers is not None and arch_of(build_model(arch)).get("layers") != layers:
        raise ConfigError(
            f"{path}: its layer widths are not the ones its stage list builds (a pruned or "
            "re-parameterised model); seed the search with the arch it came from"
        )
    return arch


def genome_dict(genome: Genome) -> list[dict]:
    """JSON-friendly form of a genome: one ``{out, depth, kernel, ratio}`` per stage."""
    return [dict(zip(_GENE_KEYS, g, strict=True)) for g in genome]
