"""Training configuration (frozen dataclasses with documented defaults)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from enum import Enum

from torch import nn

from yoloslim.configs import (
    DEFAULT_IMGSZ,
    check_field_types,
    check_ranges,
    from_mapping,
    imgsz_problem,
)
from yoloslim.errors import ConfigError
from yoloslim.train.loss import LossConfig

__all__ = [
    "Optimizer",
    "TrainConfig",
    "config_from_dict",
    "resume_config",
    "static_assigner_for",
]


class Optimizer(str, Enum):
    """Supported optimizers."""

    ADAMW = "adamw"
    SGD = "sgd"


@dataclass(frozen=True)
class TrainConfig:
    """How to train a detector.

    Attributes:
        epochs: number of epochs.
        batch: global batch size (split across processes under torchrun).
        imgsz: square input size, a multiple of 32. None (default): the size the model
            was trained at (a checkpoint, or a Detector loaded from one) or searched at (an
            arch.yaml ``yoloslim nas`` wrote), else 320.
        optimizer: "adamw" or "sgd".
        lr0: peak learning rate (after warm-up).
        lrf: final learning rate as a fraction of ``lr0`` (cosine decay).
        momentum: SGD momentum / AdamW beta1.
        weight_decay: applied to conv/linear weights only (not BN, not biases).
        warmup_epochs: linear warm-up length (fractional epochs allowed).
        ema_decay: EMA decay (0 disables EMA).
        ema_tau: the EMA's warm-up in steps: step ``n`` averages with decay
            ``ema_decay * (1 - exp(-n / ema_tau))`` (2000, as YOLOv5 and YOLOv8), so a run of
            fewer steps than about ``ema_tau`` keeps nearly its last step's weights.
        grad_clip: max gradient norm (0 disables clipping).
        workers: data-loader worker processes (the data order does not depend on them).
            None: 0 on a machine with 2 usable cores or fewer, where a worker process
            competes with torch's threads (an epoch about 10-25 % slower, measured), else 1.
        seed: seeds model init, data order and augmentation.
        device: "auto", "cpu" or "cuda".
        amp: mixed precision on CUDA (ignored on CPU).
        close_mosaic: the last N epochs train without mosaic.
        val_interval: validate every N epochs (and always after the last).
        augment: data augmentation switches (``yoloslim.data.AugmentConfig`` as a dict).
        loss: loss gains and options.
        threads: torch intra-op threads (None: keep the process's setting, torch's default
            being the physical cores).
        cache: decode the training images once and keep them in memory.
    """

    epochs: int = 30
    batch: int = 16
    imgsz: int | None = None
    optimizer: Optimizer = Optimizer.ADAMW
    lr0: float = 0.004
    lrf: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    ema_decay: float = 0.999
    ema_tau: float = 2000.0
    grad_clip: float = 10.0
    workers: int | None = None
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    close_mosaic: int = 2
    val_interval: int = 1
    augment: dict = field(default_factory=dict)
    loss: LossConfig = field(default_factory=LossConfig)
    threads: int | None = None
    cache: bool = False

    def __post_init__(self) -> None:
        # a string or None where a number goes (a YAML ``epochs: '10'``), or a string where
        # true or false goes, is named here, not a TypeError or a truthy pass below
        check_field_types(
            self,
            ints=(*_INTS, "threads"),
            numbers=_NUMBERS,
            bools=_BOOLS,
            optional=("threads", "imgsz", "workers"),
        )
        checks = [
            # inf passed every range below: a traceback, or "diverged; lower lr0"
            *((math.isfinite(getattr(self, n)), n, "must be finite") for n in _NUMBERS),
            (self.epochs >= 1, "epochs", "must be >= 1"),
            (self.batch >= 1, "batch", "must be >= 1"),
            (
                self.imgsz is None or not imgsz_problem(self.imgsz),
                "imgsz",
                imgsz_problem(self.imgsz),
            ),
            (  # inference takes 32; BatchNorm cannot train on a batch's single 1x1 map
                self.imgsz is None or imgsz_problem(self.imgsz) or self.imgsz >= 64,
                "imgsz",
                "must be >= 64 to train (at 32 px the deepest feature map is 1x1, and "
                "BatchNorm cannot train on a batch of one image there: --batch 1, or a last "
                "batch of one)",
            ),
            (self.lr0 > 0, "lr0", "must be > 0"),
            (0 < self.lrf <= 1, "lrf", "must be in (0, 1]"),
            (0 <= self.momentum < 1, "momentum", "must be in [0, 1)"),
            (self.weight_decay >= 0, "weight_decay", "must be >= 0"),
            (self.warmup_epochs >= 0, "warmup_epochs", "must be >= 0"),
            (0 <= self.ema_decay < 1, "ema_decay", "must be in [0, 1)"),
            (self.ema_tau > 0, "ema_tau", "must be > 0"),
            (self.grad_clip >= 0, "grad_clip", "must be >= 0 (0 disables clipping)"),
            (self.close_mosaic >= 0, "close_mosaic", "must be >= 0"),
            (self.threads is None or self.threads >= 1, "threads", "must be >= 1 (or null)"),
            (self.workers is None or self.workers >= 0, "workers", "must be >= 0"),
            (
                isinstance(self.device, str)  # an empty "device:" or "device: 0" crashed
                and (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")),
                "device",
                "must be auto, cpu or cuda[:N]",
            ),
            (self.val_interval >= 1, "val_interval", "must be >= 1"),
            (0 <= self.seed < 2**32, "seed", "must be in [0, 2**32)"),  # numpy's and torch's
        ]
        check_ranges(self, checks)
        try:
            object.__setattr__(self, "optimizer", Optimizer(self.optimizer))
        except ValueError as e:
            raise ConfigError(
                f"TrainConfig.optimizer={self.optimizer!r}: expected adamw or sgd"
            ) from e
        if not isinstance(self.loss, LossConfig):  # a mapping, or a wrong value from YAML
            object.__setattr__(self, "loss", _sub(LossConfig, self.loss, "loss"))
        object.__setattr__(self, "augment", _augment_dict(self.augment))

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """Build from a plain dict (a YAML file); unknown keys and bad values raise
        ConfigError (as :func:`config_from_dict`)."""
        return config_from_dict(values)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["optimizer"] = self.optimizer.value
        return d


_INTS = ("epochs", "batch", "imgsz", "workers", "seed", "close_mosaic", "val_interval")
_BOOLS = ("amp", "cache")
_NUMBERS = (
    "lr0",
    "lrf",
    "momentum",
    "weight_decay",
    "warmup_epochs",
    "ema_decay",
    "ema_tau",
    "grad_clip",
)


def _sub(cls: type, values: dict, where: str):
    return from_mapping(cls, values, where)


def _augment_dict(augment) -> dict:
    """``augment`` as the plain dict a TrainConfig keeps, checked now (an unknown key or a bad
    value is a ConfigError here, not a TypeError when the training starts)."""
    from yoloslim.data import AugmentConfig

    if isinstance(augment, AugmentConfig):
        return dataclasses.asdict(augment)
    try:
        resolved = _sub(AugmentConfig, augment, "TrainConfig.augment")
    except ConfigError as e:  # named as the user wrote it: TrainConfig.augment.enabled
        msg = str(e)
        if not msg.startswith("AugmentConfig."):
            raise
        raise ConfigError(f"TrainConfig.augment.{msg.removeprefix('AugmentConfig.')}") from e
    # every value, defaults filled in: train_config.yaml says what trained the model, and
    # {} and the defaults written out are one config (a resume compares them)
    return dataclasses.asdict(resolved)


def loader_workers(workers: int | None) -> int:
    """The data-loader processes of ``TrainConfig.workers``: as given, or for None, 0 on
    2 usable cores or fewer and 1 above."""
    if workers is not None:
        return workers
    from yoloslim.sysinfo import usable_cores

    return 0 if usable_cores() <= 2 else 1


def config_from_dict(values: dict, *, where: str = "train config") -> TrainConfig:
    """Build a TrainConfig from a plain dict; unknown keys are an error naming ``where``
    (say the file the values came from), also within its ``loss`` and ``augment`` sections."""
    try:  # from_mapping refuses what is not a mapping (None was a TypeError in dict())
        return _sub(TrainConfig, values, where)
    except ConfigError as e:
        if where in str(e):
            raise
        raise ConfigError(f"{where}: {e}") from e


# settings that say where and how fast a run goes, not what it learns: a resumed run
# may take them from the caller (another machine, more threads)
RUNTIME_FIELDS = ("device", "workers", "threads", "cache")


def static_assigner_for(cfg: TrainConfig, from_scratch: bool) -> TrainConfig:
    """``cfg`` with an auto (``None``) ``loss.static_assigner_epochs`` made a number.

    ATSS first keeps a fresh head's random predictions from choosing the positives: on the
    synthetic set, damo-nano seeds that trained to 41-52 mAP in 16 epochs reached 83-84
    with 4 ATSS epochs (benchmarks/TRAINING.md). A model given with its weights is
    fine-tuned, and keeps the task-aligned assigner from the start.

    A run from scratch gets at least one ATSS epoch: with none (``epochs // 4`` was 0 under
    4 epochs) a random head's boxes, many strides wide, gave a small object no positive
    anchor at all (score x IoU^6 under the cut), so the box and DFL losses were 0 and the
    boxes never learned (audit25 train M1: 61 of 67 objects unassigned at 64 px).
    """
    if cfg.loss.static_assigner_epochs is not None:
        return cfg
    return _with_static_assigner(cfg, max(1, min(4, cfg.epochs // 4)) if from_scratch else 0)


def _with_static_assigner(cfg: TrainConfig, n: int | None) -> TrainConfig:
    return dataclasses.replace(cfg, loss=dataclasses.replace(cfg.loss, static_assigner_epochs=n))


def setting_diffs(saved: dict, given: dict, skip: tuple[str, ...] = ()) -> list[str]:
    """``"key: saved-value saved, given-value given"`` for each top-level key that differs.
    Values are compared as YAML holds them: a tuple equals the list of its items."""
    return [
        f"{k}: {saved[k]!r} saved, {given[k]!r} given"
        for k in saved
        if k not in skip and _plain(saved[k]) != _plain(given[k])
    ]


def file_edits(written: dict, run: dict, runtime_at: str, where: str = "") -> list[str]:
    """``"key: run-value in the run, file-value in the file"`` for each setting a settings
    file the run wrote (``train_config.yaml``) holds that differs from the run's: the twin of
    :func:`setting_diffs` for a file, nested. Keys it lacks (a file an older version
    wrote), keys the run lacks, null ones (auto: ``imgsz``, ``loss.static_assigner_epochs``,
    which the run resolved when it began) and the runtime settings a resume may change
    (those of the training settings at ``runtime_at``) are not compared."""
    found = []
    for key, value in written.items():
        if key not in run or (where == runtime_at and key in RUNTIME_FIELDS):
            continue
        if value is None and run[key] is not None:  # an auto setting, resolved when it began
            continue
        if isinstance(value, dict) and isinstance(run[key], dict):
            found += file_edits(value, run[key], runtime_at, f"{where}{key}.")
        elif _plain(value) != _plain(run[key]):
            found.append(f"{where}{key}: {run[key]!r} in the run, {value!r} in the file")
    return found


def _plain(value):
    """``value`` with tuples as lists, at any depth (a config read back from YAML has lists)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def sized_for(cfg: TrainConfig, *models) -> TrainConfig:
    """``cfg`` with ``imgsz`` resolved: as given, else the size the first of ``models``
    trained at (a checkpoint path, or a Detector loaded from one) or was searched at (an
    arch.yaml ``yoloslim nas`` wrote), else 320."""
    if cfg.imgsz is not None:
        return cfg
    from yoloslim.models.checkpoint import trained_imgsz

    size = None
    for m in models:
        size = getattr(m, "imgsz", None) if isinstance(m, nn.Module) else trained_imgsz(m)
        if size:
            break
    return dataclasses.replace(cfg, imgsz=int(size or DEFAULT_IMGSZ))


def resume_config(saved: TrainConfig, given: TrainConfig | None, where: str) -> TrainConfig:
    """The config a resumed run continues with: ``saved``, with ``given``'s runtime settings.

    Resuming replays the saved run exactly, so a ``given`` config that differs from
    ``saved`` in anything but :data:`RUNTIME_FIELDS` is refused, not silently ignored.

    Raises:
        ConfigError: naming ``where`` and each setting that differs.
    """
    if saved.loss.static_assigner_epochs is None:  # saved before the option: none was used
        saved = _with_static_assigner(saved, 0)
    if given is None:
        return saved
    if given.loss.static_assigner_epochs is None:  # auto: it was resolved when the run began
        given = _with_static_assigner(given, saved.loss.static_assigner_epochs)
    if given.imgsz is None:  # the model's size: resolved when the run began
        given = dataclasses.replace(given, imgsz=saved.imgsz)
    diffs = setting_diffs(saved.to_dict(), given.to_dict(), skip=RUNTIME_FIELDS)
    if diffs:
        raise ConfigError(
            f"resume: {where} is a run of another training config ({'; '.join(diffs)}); "
            "resume without a config, or start a new run in another folder "
            "(to train further, start from its best.pt)"
        )
    return dataclasses.replace(saved, **{k: getattr(given, k) for k in RUNTIME_FIELDS})
