"""``PruneConfig``: what to prune, how much, by which criterion, and the fine-tuning after."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import Enum

from yoloslim.configs import check_field_types, check_ranges, from_mapping, imgsz_problem
from yoloslim.errors import ConfigError

__all__ = ["Criterion", "Method", "AdvancedPruneConfig", "PruneConfig"]


_OPTIONAL_NUMBERS = ("ratio", "target_flops", "target_params", "depth_ratio", "unstructured")


class Criterion(str, Enum):
    """Channel importance criteria (Torch-Pruning importance classes)."""

    L1 = "l1"
    L2 = "l2"
    BN_SCALE = "bn-scale"
    TAYLOR = "taylor"
    RANDOM = "random"


class Method(str, Enum):
    """What meets the ratio or budget: channels ("width") or whole residual blocks ("depth")."""

    WIDTH = "width"
    DEPTH = "depth"


_FINETUNE_OWNED = {
    "epochs": "finetune_epochs / finetune_between",
    "imgsz": "imgsz",
    "batch": "batch",
    "seed": "seed",
}
"""The fine-tuning TrainConfig fields :class:`PruneConfig` sets itself, and from which of its
fields."""


@dataclass(frozen=True)
class AdvancedPruneConfig:
    """Rarely changed knobs.

    Attributes:
        round_to: keep pruned channel counts multiples of this (SIMD-friendly); None: any count.
        max_layer_ratio: no layer loses more than this fraction of its channels.
        calib_batches: training batches used by Taylor importance and block scoring.
        sparsity_epochs: with criterion "bn-scale", passes over the calibration
            batches of L1-regularised training on BN scales before ranking (network slimming).
        sparsity_reg: the L1 coefficient of that phase.
        sparsity_lr: its learning rate (AdamW).
        finetune: TrainConfig fields overriding the fine-tuning defaults
            (e.g. ``{"lr0": 0.002, "cache": True}``).
        latency_rounds: interleaved latency rounds (10 timed runs each) per artifact.
        budget_tolerance: a budget counts as met within this fraction below it.
    """

    round_to: int | None = 8
    max_layer_ratio: float = 0.9
    calib_batches: int = 4
    sparsity_epochs: int = 0
    sparsity_reg: float = 1e-4
    sparsity_lr: float = 1e-3
    finetune: dict = field(default_factory=dict)
    latency_rounds: int = 10
    budget_tolerance: float = 0.02

    def __post_init__(self) -> None:
        where = "PruneConfig.advanced"
        check_field_types(
            self,
            ints=("round_to", "calib_batches", "sparsity_epochs", "latency_rounds"),
            numbers=("max_layer_ratio", "sparsity_reg", "sparsity_lr", "budget_tolerance"),
            optional=("round_to",),
            where=where,
        )
        checks = [
            (self.round_to is None or self.round_to >= 1, "round_to", "must be >= 1 or None"),
            (0 < self.max_layer_ratio < 1, "max_layer_ratio", "must be in (0, 1)"),
            (self.calib_batches >= 1, "calib_batches", "must be >= 1"),
            (self.sparsity_epochs >= 0, "sparsity_epochs", "must be >= 0"),
            (self.sparsity_reg >= 0, "sparsity_reg", "must be >= 0"),
            (self.sparsity_lr > 0, "sparsity_lr", "must be > 0"),
            (
                isinstance(self.finetune, dict),
                "finetune",
                "must be a mapping of TrainConfig fields",
            ),
            (self.latency_rounds >= 1, "latency_rounds", "must be >= 1"),
            (0 <= self.budget_tolerance < 0.5, "budget_tolerance", "must be in [0, 0.5)"),
        ]
        check_ranges(self, checks, where)
        # fine-tuning's length, size, batch and seed are PruneConfig's own (its report and
        # the checkpoint's history say them): given here too, they won without a word
        owned = [k for k in _FINETUNE_OWNED if k in self.finetune]
        if owned:
            fields = ", ".join(f"{where}.finetune.{k} (PruneConfig.{_FINETUNE_OWNED[k]})"
                               for k in owned)  # fmt: skip
            raise ConfigError(f"{fields}: set by PruneConfig itself; give it there instead")
        from yoloslim.train.config import config_from_dict

        # its keys and values, checked when the settings are read (a recipe, a --config file),
        # not when fine-tuning starts after the pruning
        config_from_dict(dict(self.finetune), where=f"{where}.finetune")


@dataclass(frozen=True)
class PruneConfig:
    """How to prune a detector.

    With neither ``ratio``, a budget, ``depth_ratio`` nor ``unstructured`` given, the
    default is channel pruning with ``ratio=0.5``.

    Attributes:
        ratio: fraction of channels removed per layer (or network-wide with
            ``global_pruning``), in (0, 1).
        target_flops: GFLOPs budget (deploy form, FLOPs = 2 x MACs, at ``imgsz``).
        target_params: parameter budget in millions (deploy form).
        method: "width" meets the ratio / budget with channels (``depth_ratio``, if
            given, removes blocks first); "depth" meets the budget or ``depth_ratio``
            by removing residual blocks only.
        criterion: "l1", "l2" (group magnitude), "bn-scale", "taylor" or "random".
        steps: iterative schedule: the ratio / budget is reached in this many steps.
        finetune_between: fine-tuning epochs after each step but the last.
        finetune_epochs: fine-tuning epochs after the last step (0: none).
        global_pruning: rank channels across layers instead of per layer.
        depth_ratio: fraction of the residual blocks to remove, in (0, 1].
        unstructured: global L1 weight sparsity applied at the end (after fine-tuning),
            in (0, 1). Dense runtimes do not get faster from it.
        ignore: module-name patterns (fnmatch) whose output channels are kept; the
            head's prediction convs are always kept for built-in detectors.
        distill: fine-tune by distillation from the unpruned model.
        imgsz: input size for FLOPs, tracing, fine-tuning, validation and latency; None:
            the checkpoint's training size (320 for a model that has none).
        batch: batch size for calibration, fine-tuning and validation.
        seed: seeds calibration batches and fine-tuning.
        latency: export the model before and after (``backend``) and measure latency.
        backend: "openvino" or "onnxruntime".
        advanced: see :class:`AdvancedPruneConfig`.
    """

    ratio: float | None = None
    target_flops: float | None = None
    target_params: float | None = None
    method: Method = Method.WIDTH
    criterion: Criterion = Criterion.L2
    steps: int = 1
    finetune_between: int = 0
    finetune_epochs: int = 10
    global_pruning: bool = False
    depth_ratio: float | None = None
    unstructured: float | None = None
    ignore: tuple[str, ...] = ()
    distill: bool = False
    imgsz: int | None = None
    batch: int = 16
    seed: int = 0
    latency: bool = True
    backend: str = "openvino"
    advanced: AdvancedPruneConfig = field(default_factory=AdvancedPruneConfig)

    def __post_init__(self) -> None:
        for name, enum in (("criterion", Criterion), ("method", Method)):
            value = getattr(self, name)
            try:
                object.__setattr__(self, name, enum(value))
            except ValueError as e:
                allowed = [m.value for m in enum]
                raise ConfigError(f"PruneConfig.{name}={value!r}: expected one of {allowed}") from e
        ignore = (self.ignore,) if isinstance(self.ignore, str) else self.ignore
        if not isinstance(ignore, list | tuple) or not all(isinstance(v, str) for v in ignore):
            raise ConfigError(
                f"PruneConfig.ignore={self.ignore!r}: must be a list of strings (module names "
                "or patterns; [] for none)"
            )
        object.__setattr__(self, "ignore", tuple(ignore))
        if not isinstance(self.advanced, AdvancedPruneConfig):  # a mapping, or a wrong value
            object.__setattr__(
                self,
                "advanced",
                from_mapping(AdvancedPruneConfig, self.advanced, "PruneConfig.advanced"),
            )

        check_field_types(
            self,
            ints=("steps", "finetune_between", "finetune_epochs", "imgsz", "batch", "seed"),
            numbers=_OPTIONAL_NUMBERS,
            bools=("global_pruning", "distill", "latency"),
            optional=(*_OPTIONAL_NUMBERS, "imgsz"),
        )

        def frac(v, hi_ok=False):
            return v is None or (0 < v < 1) or (hi_ok and v == 1)

        checks = [
            (frac(self.ratio), "ratio", "must be in (0, 1)"),
            (self.target_flops is None or self.target_flops > 0, "target_flops", "must be > 0"),
            (self.target_params is None or self.target_params > 0, "target_params", "must be > 0"),
            (self.steps >= 1, "steps", "must be >= 1"),
            (self.finetune_between >= 0, "finetune_between", "must be >= 0"),
            (self.finetune_epochs >= 0, "finetune_epochs", "must be >= 0"),
            (frac(self.depth_ratio, hi_ok=True), "depth_ratio", "must be in (0, 1]"),
            (frac(self.unstructured), "unstructured", "must be in (0, 1)"),
            (
                self.imgsz is None or not imgsz_problem(self.imgsz),
                "imgsz",
                imgsz_problem(self.imgsz),
            ),
            (self.batch >= 1, "batch", "must be >= 1"),
            (0 <= self.seed < 2**32, "seed", "must be in [0, 2**32)"),  # as TrainConfig's
            (
                self.backend in ("openvino", "onnxruntime"),
                "backend",
                "must be openvino or onnxruntime",
            ),
            (all(isinstance(p, str) for p in self.ignore), "ignore", "must be name patterns"),
        ]
        check_ranges(self, checks)
        goals = [
            n for n in ("ratio", "target_flops", "target_params") if getattr(self, n) is not None
        ]
        if len(goals) > 1:
            raise ConfigError(
                "PruneConfig: give at most one of ratio, target_flops, target_params (--ratio, "
                f"--target-flops, --target-params; got {goals})"
            )
        if self.method == Method.DEPTH:
            if self.ratio is not None:
                raise ConfigError(
                    "PruneConfig: method='depth' removes blocks; ratio is a channel ratio (use depth_ratio)"
                )
            if self.depth_ratio is None and not goals:
                raise ConfigError(
                    "PruneConfig: method='depth' needs depth_ratio or a target_flops/target_params budget"
                )
            if self.depth_ratio is not None and goals:
                raise ConfigError(
                    "PruneConfig: method='depth' takes depth_ratio or a budget, not both"
                )

    @property
    def width_ratio(self) -> float | None:
        """The channel ratio actually used (the 0.5 default when nothing else is asked)."""
        if self.method == Method.DEPTH:
            return None
        if self.ratio is not None:
            return self.ratio
        nothing = self.target_flops is None and self.target_params is None
        if nothing and self.depth_ratio is None and self.unstructured is None:
            return 0.5
        return None

    @property
    def pruned_by(self) -> str:
        """What the pruning removes, for the progress line and the history: ``width``
        (channels), ``depth`` (blocks), both (``depth + width``: blocks first) and
        ``unstructured`` (zeroed weights) where asked for. ``method`` alone misnames a
        prune given only ``depth_ratio`` (its default stays ``width``)."""
        budget = self.target_flops is not None or self.target_params is not None
        kinds = []
        if self.method == Method.DEPTH or self.depth_ratio is not None:
            kinds.append("depth")
        if self.method == Method.WIDTH and (self.width_ratio is not None or budget):
            kinds.append("width")
        if self.unstructured is not None:
            kinds.append("unstructured")
        return " + ".join(kinds) or self.method.value

    @property
    def structured(self) -> bool:
        """Whether any channel or block is removed."""
        has_budget = self.target_flops is not None or self.target_params is not None
        return self.width_ratio is not None or has_budget or self.depth_ratio is not None

    def to_dict(self) -> dict:
        """The settings as plain values; ``ratio`` is the one used (the 0.5 default where no
        other goal is given), so that a record shows what ran and reads back the same."""
        d = dataclasses.asdict(self)
        d["ratio"] = self.width_ratio
        d["criterion"], d["method"], d["ignore"] = (
            self.criterion.value,
            self.method.value,
            list(self.ignore),
        )
        return d

    @classmethod
    def from_dict(cls, values: dict) -> PruneConfig:
        """Build from a plain dict (a recipe file); unknown keys and bad values raise ConfigError."""
        return from_mapping(cls, values, "PruneConfig")
