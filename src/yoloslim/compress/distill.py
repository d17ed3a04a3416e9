"""Knowledge distillation: a teacher detector guides a student's training.

The student trains with its usual detection loss plus

- logit distillation: temperature-softened class scores (every anchor) and the DFL
  box distributions at anchors the teacher deems foreground (see
  :func:`~yoloslim.compress.distill_losses.logit_kd`);
- feature distillation on every neck scale (``cwd``, ``mimic``, ``mgd`` or ``at``),
  through a learnable 1x1 align conv where the widths differ.

The teacher runs in eval mode under ``torch.no_grad``; it may differ from the
student in width and depth as long as the classes, the DFL bins and the head
strides match. A progressive schedule (YOLOE-style) freezes the student's backbone
for the first ``freeze_epochs`` and ramps the distillation weights up linearly
over ``warmup_epochs``.

Distillation runs inside :func:`yoloslim.train.train` (a :class:`TrainHook`), so it
writes the same ``best.pt`` / ``last.pt`` / ``metrics.jsonl`` and resumes exactly;
the align convs live only in ``last.pt``'s train state, never in the model.

Prune recovery, the unpruned model as teacher: ``yoloslim prune ... --distill`` (it
calls :func:`distill`), or in two steps::

    yoloslim prune   --model base.pt --data data.yaml --ratio 0.5 --finetune-epochs 0 \\
                     --out runs/pruned
    yoloslim distill --teacher base.pt --student runs/pruned/pruned.pt --data data.yaml \\
                     --epochs 10 --progressive --out runs/pruned_kd
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import dataclasses
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from yoloslim.compress.distill_losses import FEATURE_LOSSES, FeatureAdapters, logit_kd
from yoloslim.configs import (
    check_config,
    check_field_types,
    check_flags,
    check_path,
    check_ranges,
    check_run_flags,
    from_mapping,
)
from yoloslim.data import load_data_config
from yoloslim.errors import ConfigError, ModelError
from yoloslim.fileio import refuse_if_held, refuse_overwriting_input
from yoloslim.models.blocks import is_fused
from yoloslim.models.checkpoint import (
    EXPORTED,
    load_checkpoint,
    weights_digest,
    weights_dtype,
)
from yoloslim.models.detector import Detector, default_names
from yoloslim.models.registry import build_model
from yoloslim.result import Result
from yoloslim.runtime.predictor import as_artifact
from yoloslim.sysinfo import first_process
from yoloslim.torch_state import autograd_on, keeps_caller_state
from yoloslim.train.config import (
    TrainConfig,
    config_from_dict,
    resume_config,
    setting_diffs,
    sized_for,
)
from yoloslim.train.run_folder import RUN_FILES, check_out, read_last, recorded_data
from yoloslim.train.trainer import train

__all__ = ["AdvancedDistillConfig", "DistillConfig", "Distiller", "distill"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AdvancedDistillConfig:
    """Rarely changed distillation knobs.

    Attributes:
        feature_temperature: CWD softmax temperature (DAMO-YOLO uses 1).
        fg_threshold: teacher class score from which an anchor counts as foreground
            for the DFL distillation.
        normalize_features: standardise both neck maps per channel before the
            feature loss (DAMO-YOLO does; AT ignores it).
        mgd_mask_ratio: fraction of student positions MGD masks out.
    """

    feature_temperature: float = 1.0
    fg_threshold: float = 0.25
    normalize_features: bool = True
    mgd_mask_ratio: float = 0.65

    def __post_init__(self) -> None:
        check_field_types(
            self,
            numbers=("feature_temperature", "fg_threshold", "mgd_mask_ratio"),
            bools=("normalize_features",),
        )
        checks = [
            (0 < self.feature_temperature < math.inf, "feature_temperature", "must be finite, > 0"),
            (0 <= self.fg_threshold < 1, "fg_threshold", "must be in [0, 1)"),
            (0 <= self.mgd_mask_ratio < 1, "mgd_mask_ratio", "must be in [0, 1)"),
        ]
        check_ranges(self, checks)


@dataclass(frozen=True)
class DistillConfig:
    """How to distil a teacher into a student.

    Attributes:
        loss: feature loss on the neck outputs: "cwd", "mimic", "mgd" or "at".
        logit_weight: weight of the logit terms (class scores + DFL bins); 0 disables.
        feature_weight: weight of the feature term; 0 disables.
        temperature: softening temperature of the logit terms, T^2-scaled; on a
            detector's many background anchors a higher one first strengthens the class
            term (measured: 1.1-2.1x its gradient at T = 2 against T = 1), and the DFL term
            grows with it (see :func:`~yoloslim.compress.distill_losses.logit_kd`).
        progressive: freeze the student's backbone for ``freeze_epochs`` and ramp the
            distillation weights over ``warmup_epochs``.
        freeze_epochs: epochs with the backbone frozen (with ``progressive``).
        warmup_epochs: linear warm-up of the distillation weights (with ``progressive``).
        train: the training settings (epochs, batch, imgsz, ...).
        advanced: rarely changed knobs.
    """

    loss: str = "cwd"
    logit_weight: float = 1.0
    feature_weight: float = 1.0
    temperature: float = 2.0
    progressive: bool = False
    freeze_epochs: int = 1
    warmup_epochs: float = 1.0
    train: TrainConfig = field(default_factory=TrainConfig)
    advanced: AdvancedDistillConfig = field(default_factory=AdvancedDistillConfig)

    def __post_init__(self) -> None:
        check_field_types(
            self,
            ints=("freeze_epochs",),
            numbers=("logit_weight", "feature_weight", "temperature", "warmup_epochs"),
            bools=("progressive",),
        )
        checks = [
            (self.loss in FEATURE_LOSSES, "loss", f"expected one of {FEATURE_LOSSES}"),
            # inf passed these and then "diverged" at the first batch
            (0 <= self.logit_weight < math.inf, "logit_weight", "must be finite, >= 0"),
            (0 <= self.feature_weight < math.inf, "feature_weight", "must be finite, >= 0"),
            (0 < self.temperature < math.inf, "temperature", "must be finite, > 0"),
            (self.freeze_epochs >= 0, "freeze_epochs", "must be >= 0"),
            (self.warmup_epochs >= 0, "warmup_epochs", "must be >= 0"),
        ]
        check_ranges(self, checks)
        if isinstance(self.train, dict):
            object.__setattr__(self, "train", config_from_dict(self.train))
        if not isinstance(self.advanced, AdvancedDistillConfig):  # a mapping, or a wrong value
            object.__setattr__(
                self, "advanced", _from(AdvancedDistillConfig, self.advanced, "advanced")
            )
        if not isinstance(self.train, TrainConfig):
            raise ConfigError(f"DistillConfig.train must be a TrainConfig, got {self.train!r}")

    @classmethod
    def from_dict(cls, values: dict) -> DistillConfig:
        """Build from plain dicts (nested ``train`` and ``advanced``); unknown keys raise."""
        return _from(cls, values)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["train"] = self.train.to_dict()
        return d


def _warn_idle(config: DistillConfig) -> None:
    """Warn of settings under which the teacher teaches nothing, or the student's backbone
    never trains."""
    if config.logit_weight == 0 and config.feature_weight == 0:
        log.warning(
            "logit_weight and feature_weight are both 0: the teacher teaches nothing and this "
            "is a plain training (yoloslim train does the same without the teacher's cost)"
        )
    if config.progressive and config.freeze_epochs >= config.train.epochs:
        log.warning(
            "progressive with freeze_epochs %d of %d epochs: the student's backbone stays "
            "frozen for the whole run",
            config.freeze_epochs,
            config.train.epochs,
        )


def _from(cls: type, values: dict, where: str | None = None):
    return from_mapping(cls, values, where)


def _deploy_params(model: nn.Module) -> int:
    from yoloslim.bench.flops import count_params

    fused = copy.deepcopy(model).eval()
    fused.fuse()
    return count_params(fused)


def _check_names(teacher: list[str], data_names: list[str], data, t_name: str = "") -> None:
    """The teacher's class i must be the data's class i: its logits teach class by index.
    ``t_name``: :func:`_label`'s of the teacher."""
    if teacher == data_names or teacher == default_names(len(teacher)):
        return  # the same, or the teacher never had names
    if sorted(teacher) == sorted(data_names):
        raise ConfigError(
            f"the teacher{t_name}'s classes are {teacher} but {data} orders them {data_names}; "
            "distillation matches classes by index, so it would teach the wrong ones"
        )
    log.warning(
        "the teacher%s's class names %s differ from %s's %s", t_name, teacher, data, data_names
    )


def _check_pair(student: Detector, teacher: Detector, s_name: str = "", t_name: str = "") -> None:
    """ConfigError naming both models (``s_name``, ``t_name``: :func:`_label`'s)."""
    if teacher.nc != student.nc:
        raise ConfigError(
            f"the teacher{t_name} has {teacher.nc} classes but the student{s_name} has "
            f"{student.nc}; distillation needs the same classes"
        )
    if tuple(teacher.strides) != tuple(student.strides):
        raise ConfigError(
            f"the teacher{t_name}'s scales (strides {list(teacher.strides)}) do not match "
            f"the student{s_name}'s ({list(student.strides)}); distillation needs the same "
            "neck scales"
        )
    if teacher.reg_max != student.reg_max:
        raise ConfigError(
            f"the teacher{t_name} has reg_max={teacher.reg_max} but the student{s_name} "
            f"has {student.reg_max}; the DFL bins must match"
        )


def _source(model: Any) -> str:
    """A student's source for the report: a file's absolute path, a registered name, or the
    object's type (a Detector given in Python)."""
    if isinstance(model, Path) or (isinstance(model, str) and Path(model).suffix):
        return str(Path(model).resolve())
    if isinstance(model, dict):
        return f"arch {model.get('name', '(unnamed)')}"
    return model if isinstance(model, str) else type(model).__name__


def _label(model: Any) -> str:
    """`` FILE`` (or `` NAME``) for a model given by path or name, to follow "the teacher"
    in an error; empty for an object."""
    return f" {model}" if isinstance(model, (str, Path)) else ""


@torch.no_grad()
def _neck_widths(model: Detector, device: torch.device) -> list[int]:
    """The real neck output widths (a pruned model's differ from its spec), by a probe."""
    was_training = model.training
    model.eval()  # eval: the probe must not move BN running statistics
    try:
        size = 2 * max(model.strides)
        feats = model.features(torch.zeros(1, 3, size, size, device=device))
    finally:
        model.train(was_training)
    return [f.shape[1] for f in feats]


class Distiller:
    """The distillation objective as a :class:`~yoloslim.train.trainer.TrainHook`.

    Holds the frozen teacher and the align convs; captures the student's neck
    outputs with a forward hook on ``student.neck`` during training.
    """

    def __init__(
        self, teacher: Detector, config: DistillConfig, teacher_path: str | None = None
    ) -> None:
        # the teacher only runs forward: in deploy form (RepConv and Conv+BN folded, outputs
        # the same to ~1e-5) it costs less each step; the given model is left as it is
        self.teacher = copy.deepcopy(teacher).eval().requires_grad_(False).fuse()
        self.cfg = config
        self.teacher_path = teacher_path  # kept in last.pt, so a resume can find the teacher
        self.command = "distill"  # the run folder's lock names the run so
        self.run_files: dict[str, str] = {}  # written by the trainer under that lock
        self.teacher_digest = weights_digest(teacher)  # and knows it is the same model
        self.student: str | None = None  # where the student came from (a file, a name)
        self.adapters: FeatureAdapters | None = None
        self._feats: list[torch.Tensor] | None = None
        self._handle = None
        # batches of the epoch so far, and those where the teacher saw an object (its score
        # over advanced.fg_threshold): the box-distribution term is nothing without one
        self._batches = self._fg_batches = 0
        self._warned_no_fg = False

    @property
    def history(self) -> dict:
        """This step, as the student's checkpoints record it (``meta.history``)."""
        label = getattr(self.teacher, "history_label", None)  # prune --distill's own model
        if label is None:  # one loaded from a checkpoint: what was done to it (audit50 chain F2)
            done = [
                h.get("stage")
                for h in getattr(self.teacher, "history", None) or ()
                if isinstance(h, dict)
            ]
            label = "a Detector" + (f" ({', then '.join(map(str, done))})" if done else "")
        return {"stage": "distill", "teacher": self.teacher_path or label}

    def attach(self, net: Detector, device: torch.device) -> nn.Module:
        _check_pair(net, self.teacher)
        dist = torch.distributed
        if self.cfg.progressive and dist.is_available() and dist.is_initialized():
            # DDP registers its gradient hooks once; parameters must not change requires_grad
            raise ConfigError(
                "progressive=True (backbone freezing) is not supported under torchrun"
            )
        self.teacher.to(device)
        self.adapters = FeatureAdapters(
            _neck_widths(net, device), _neck_widths(self.teacher, device), self.cfg.loss
        ).to(device)
        self._handle = net.neck.register_forward_hook(self._capture)
        return self.adapters

    def _capture(self, module: nn.Module, args: tuple, output: list[torch.Tensor]) -> None:
        self._feats = list(output) if module.training else None

    def detach(self) -> None:
        self._say_if_no_foreground()  # a run of one epoch has no next epoch_start
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        self._feats = None

    def frozen(self, epoch: int) -> bool:
        """Whether the student's backbone is frozen in ``epoch``."""
        return self.cfg.progressive and epoch < self.cfg.freeze_epochs

    def weight_scale(self, epoch: float) -> float:
        """Warm-up factor of the distillation weights at a fractional epoch."""
        if not self.cfg.progressive or self.cfg.warmup_epochs <= 0:
            return 1.0
        return min(1.0, (epoch + 1e-9) / self.cfg.warmup_epochs)

    def epoch_start(self, net: Detector, epoch: int) -> None:
        self._say_if_no_foreground()
        self._batches = self._fg_batches = 0
        if not self.cfg.progressive:  # leave the caller's requires_grad flags alone
            return
        frozen = self.frozen(epoch)
        net.backbone.requires_grad_(not frozen)
        if frozen:  # frozen BN statistics too: the backbone is left exactly as it was
            net.backbone.eval()

    def _say_if_no_foreground(self) -> None:
        """Warn (once) when a whole epoch gave the teacher no foreground anchor: the DFL
        term did nothing all along, unsaid (kd_dfl 0.000 in every row). Under torchrun the
        first process says it, of its share of each batch (every process said it, each of
        its own share: audit45 dist F5)."""
        if self._warned_no_fg or not self._batches or self._fg_batches or not first_process():
            return
        if self.cfg.logit_weight <= 0:
            return
        self._warned_no_fg = True
        log.warning(
            "distill: in %d batches the teacher scored no anchor at %.2f or more "
            "(advanced.fg_threshold): the box-distribution term (kd_dfl) was 0 throughout; "
            "a teacher trained longer (or, in distill, a lower advanced.fg_threshold) gives "
            "it something to teach",
            self._batches,
            self.cfg.advanced.fg_threshold,
        )

    def loss(
        self, imgs: torch.Tensor, raw: list[torch.Tensor], targets: torch.Tensor, epoch: float
    ) -> tuple[torch.Tensor, dict[str, float]]:
        if self._feats is None or self.adapters is None:
            raise RuntimeError("Distiller.loss called before a training forward of the student")
        s_feats, self._feats = self._feats, None
        with torch.no_grad():
            t_feats = self.teacher.features(imgs)
            t_raw = self.teacher.head(t_feats)
        for i, (s, t) in enumerate(zip(s_feats, t_feats, strict=True)):
            if s.shape[-2:] != t.shape[-2:]:
                raise ModelError(
                    f"neck scale {i}: student map {tuple(s.shape[-2:])} but teacher map "
                    f"{tuple(t.shape[-2:])}; distillation needs the same scales"
                )
        cfg, adv = self.cfg, self.cfg.advanced
        zero = raw[0].new_zeros(())
        cls = dfl = feat = zero
        if cfg.logit_weight > 0:
            cls, dfl = logit_kd(
                raw,
                t_raw,
                self.teacher.reg_max,
                temperature=cfg.temperature,
                fg_threshold=adv.fg_threshold,
            )
        if cfg.feature_weight > 0:
            feat = self.adapters(
                [s.float() for s in s_feats],
                [t.float() for t in t_feats],
                tau=adv.feature_temperature,
                normalize=adv.normalize_features,
                mask_ratio=adv.mgd_mask_ratio,
            )
        scale = self.weight_scale(epoch)
        total = scale * (cfg.logit_weight * (cls + dfl) + cfg.feature_weight * feat)
        parts = {"kd_cls": cls.item(), "kd_dfl": dfl.item(), "kd_feat": feat.item()}
        self._batches += 1
        self._fg_batches += parts["kd_dfl"] != 0.0
        # the detection loss is a per-image mean times the batch size; so is this
        return total * imgs.shape[0], parts

    def state_dict(self) -> dict:
        assert self.adapters is not None
        state = {
            "config": self.cfg.to_dict(),
            "adapters": {
                k: v.detach().cpu().clone() for k, v in self.adapters.state_dict().items()
            },
        }
        if self.teacher_path is not None:
            state["teacher"] = self.teacher_path
        state["teacher_digest"] = self.teacher_digest
        if self.student is not None:
            state["student"] = self.student
        return state

    def load_state_dict(self, state: dict) -> None:
        assert self.adapters is not None
        if "adapters" not in state:
            raise ConfigError("resume: last.pt has no distillation state (was it a distill run?)")
        self.adapters.load_state_dict(state["adapters"])


# set by compress, which checks a recipe's settings when its run begins: a run begun before a
# check was added goes on with the settings it began with, in a stage not yet started too
# (audit51 review M1)
_SETTINGS_CHECKED: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "distill_settings_checked", default=False
)


@contextlib.contextmanager
def settings_checked() -> Iterator[None]:
    """Within it, :func:`distill` does not refuse settings that would do nothing (the caller
    did, or a run it resumes began with them)."""
    token = _SETTINGS_CHECKED.set(True)
    try:
        yield
    finally:
        _SETTINGS_CHECKED.reset(token)


def _refuse_unused_settings(config: DistillConfig) -> None:
    """ConfigError for settings given where they do nothing (kept and recorded, never used):
    the progressive schedule's with the schedule off, as the command line refuses its flags,
    and a term's own with that term off or another loss chosen (audit51 distill F5)."""
    default, adv, adv_default = DistillConfig(), config.advanced, AdvancedDistillConfig()
    unused = []  # (name, value, why it does nothing and what would use it)
    if not config.progressive:
        why = "the progressive schedule's, and it is off: set progressive (--progressive)"
        unused += [
            (f"DistillConfig.{n}", getattr(config, n), why)
            for n in ("freeze_epochs", "warmup_epochs")
            if getattr(config, n) != getattr(default, n)
        ]
    if config.logit_weight == 0 and config.temperature != default.temperature:
        why = "the logit terms', and logit_weight is 0: give them a weight (--logit-weight)"
        unused.append(("DistillConfig.temperature", config.temperature, why))
    for name, loss in (("feature_temperature", "cwd"), ("mgd_mask_ratio", "mgd")):
        if getattr(adv, name) == getattr(adv_default, name):
            continue
        if config.loss != loss:
            why = f"the {loss} loss's, and the feature loss is {config.loss}: --loss {loss}"
            unused.append((f"advanced.{name}", getattr(adv, name), why))
        elif config.feature_weight == 0:
            why = f"the {loss} loss's, and feature_weight is 0: give it a weight (--feature-weight)"
            unused.append((f"advanced.{name}", getattr(adv, name), why))
    if unused:
        name, value, why = unused[0]
        raise ConfigError(f"{name}={value!r} is {why}, or leave {name.split('.')[-1]} out")


def _resume_distill_config(
    saved: DistillConfig, given: DistillConfig | None, out: Path
) -> DistillConfig:
    """``saved``, refusing a ``given`` config that differs in more than the runtime settings."""
    if given is None:
        return saved
    check_config(given, DistillConfig)
    diffs = setting_diffs(saved.to_dict(), given.to_dict(), skip=("train",))
    if diffs:
        raise ConfigError(
            f"resume: {out} is a distill run of other settings ({'; '.join(diffs)}); "
            "resume without a config, or start a new run in another folder"
        )
    return dataclasses.replace(saved, train=resume_config(saved.train, given.train, str(out)))


def _check_same_teacher(hook_state: dict, digest: str, given, last: Path) -> None:
    """A resumed distillation goes on from the teacher it began with (``digest``: the given
    teacher's :func:`weights_digest`), not another model."""
    recorded = hook_state.get("teacher_digest")
    if recorded is not None and recorded != digest:
        raise ConfigError(
            f"resume: the teacher {given} is not the model {last} was distilled from so far "
            f"({hook_state.get('teacher', 'a Detector')}: other weights); resume with that "
            "teacher, or start a new run in another folder"
        )


def _recorded_teacher(hook_state: dict, last: Path) -> Path:
    """The teacher a run was started with, for a resume that names none."""
    recorded = hook_state.get("teacher")
    if recorded is None:
        raise ConfigError(
            f"resume: {last} does not record its teacher (it was given as a model, not a "
            "file, or the run predates recording it); pass the teacher (--teacher)"
        )
    if not Path(recorded).is_file():
        raise ConfigError(
            f"resume: the run's teacher {recorded} no longer exists; pass its new place (--teacher)"
        )
    return Path(recorded)


def _as_detector(model: Detector | str | Path, what: str) -> Detector:
    model = as_artifact(model, what)
    if isinstance(model, Detector):  # a .half() teacher guides a float32 student as float32
        return model if weights_dtype(model) == torch.float32 else copy.deepcopy(model).float()
    if isinstance(model, nn.Module):
        raise ModelError(f"{what} must be a yoloslim Detector, got {type(model).__name__}")
    path = Path(model).expanduser()
    if path.suffix.lower() in (".pt", *EXPORTED) or path.is_dir():
        # load_checkpoint names an exported artifact, or a run folder's best.pt
        return load_checkpoint(path)[0]
    raise ModelError(f"{what}={str(model)!r}: expected a yoloslim .pt checkpoint")


@keeps_caller_state
@autograd_on()
def distill(
    student: Detector | str | Path | None,
    teacher: Detector | str | Path | None,
    data: str | Path | None,
    *,
    config: DistillConfig | None = None,
    out: str | Path = "runs/distill",
    resume: bool = False,
    exist_ok: bool = False,
    progress: bool = False,
) -> Result:
    """Train ``student`` on ``data`` with ``teacher``'s guidance.

    Args:
        student: a Detector (copied), a checkpoint path, a registered model name or an
            arch.yaml (names and archs start from random weights, as in ``train``).
        teacher: a Detector or a checkpoint path; never modified. A path is recorded in
            the run's ``last.pt``: on ``resume`` it may be None (the recorded one is used).
        data: the dataset's ``data.yaml``; on ``resume`` None means the run's own.
        config: distillation and training settings (default ``DistillConfig()``). On
            ``resume`` the run's saved settings are used; a config passed as well must
            match them except for the training's runtime settings (device, workers,
            threads, cache).
        out: output folder (``best.pt``, ``last.pt``, ``metrics.jsonl``,
            ``train_config.yaml``, ``distill_config.yaml``).
        resume: continue the run in ``out`` from its ``last.pt``.
        exist_ok: start afresh in an ``out`` that holds another run, replacing it (without
            it, such an ``out`` is refused).
        progress: show a progress bar with the losses.

    Returns:
        Result with the trained student (eval mode), ``artifacts["best"]`` and
        ``["last"]`` (ordinary yoloslim checkpoints), and a report with the training
        report (``"train"``) and the distillation settings (``"distill"``).

    Raises:
        ConfigError: teacher and student differ in classes, scales or DFL bins, a
            setting is invalid, or on ``resume`` a ``config`` differs from the saved one.

    Example:
        >>> res = distill("damo-nano", "runs/tiny/best.pt", "data.yaml",
        ...               config=DistillConfig(loss="cwd", train=TrainConfig(epochs=10)))
        >>> best = res.artifacts["best"]  # the distilled student's best.pt
    """
    check_flags(resume=resume, exist_ok=exist_ok, progress=progress)
    check_run_flags(resume, exist_ok)  # before the teacher is loaded
    check_path(out, "out", "the run folder's path")
    out = Path(out).expanduser()
    refuse_if_held(out, "distill")  # now, not after the teacher and student are loaded
    state = read_last(out) if resume else None
    if resume and data is None:  # the run's own, as train()
        data = recorded_data(out, state)
    names = load_data_config(data).names
    if resume:
        last = out / "last.pt"
        train_state = state["train_state"]
        hook_state = train_state.get("hook", {})
        if "config" not in hook_state:
            raise ConfigError(f"resume: {last} is not from a distill run")
        if teacher is None:
            teacher = _recorded_teacher(hook_state, last)
        saved = DistillConfig.from_dict(hook_state["config"])
        if "config" in train_state:  # the training settings as run (auto values resolved)
            saved = dataclasses.replace(saved, train=config_from_dict(train_state["config"]))
        config = _resume_distill_config(saved, config, out)
        student = probe = load_checkpoint(last)[0]
        s_name, given_student = _label(last), None  # the one last.pt records, below
    else:
        if student is None:
            raise ConfigError("student is required (None only on resume: the run's own)")
        config = DistillConfig() if config is None else config
        student = as_artifact(student, "student")
        if isinstance(student, os.PathLike):  # any path object, as the teacher's
            student = Path(student).expanduser()
        s_name = _label(student)
        given_student = _source(student)  # before a file is loaded into a Detector below
        # the run's files must not replace the models it starts from
        writes = [out / name for name in RUN_FILES]
        for arg, source in (("student", student), ("teacher", as_artifact(teacher, "teacher"))):
            refuse_overwriting_input(source, writes, arg=arg, hint="give another out (--out)")
        if isinstance(student, (str, Path)) and Path(student).suffix.lower() in (".pt", *EXPORTED):
            # an exported artifact is refused as load_checkpoint words it, not "unknown model"
            student = _as_detector(student, "student")
        probe = student if isinstance(student, Detector) else build_model(student, names=names)
    check_config(config, DistillConfig)
    if not resume and not _SETTINGS_CHECKED.get():  # a run begun before this check resumes
        _refuse_unused_settings(config)  # with its settings as they were
    if is_fused(probe):
        raise ModelError(
            "cannot distill into a re-parameterised (deploy-form) student: its RepConv "
            "branches are folded; use the model before reparameterize() (its checkpoint)"
        )
    if teacher is None:
        raise ConfigError("teacher is required (None only on resume, to use the run's own)")
    t_model = _as_detector(teacher, "teacher")
    t_src = as_artifact(teacher, "teacher")
    t_file = None if isinstance(t_src, nn.Module) else str(Path(t_src).expanduser().resolve())
    t_name = _label(t_src)
    if t_model.nc != len(names):
        raise ConfigError(
            f"the teacher{t_name} has {t_model.nc} classes but {data} has {len(names)}"
        )
    _check_names(list(t_model.names), list(names), data, t_name)
    _check_pair(probe, t_model, s_name, t_name)

    if not resume:  # the student's size, else the teacher's, else 320
        config = dataclasses.replace(config, train=sized_for(config.train, probe, t_model))
    hook = Distiller(t_model, config, teacher_path=t_file)
    # the student as given (a pruned.pt is reported as such, not by its arch's name), kept in
    # last.pt for a resume's report
    hook.student = hook_state.get("student") if resume else given_student
    if resume:  # first: a hint to give --imgsz preceded this refusal, and --resume takes none
        _check_same_teacher(hook_state, hook.teacher_digest, teacher, out / "last.pt")
    t_size = getattr(t_model, "imgsz", None)
    if not resume and t_size and config.train.imgsz and t_size != config.train.imgsz:
        log.warning(
            "the teacher%s was trained at %d px and is distilled from at %d px: its outputs "
            "at a size it never saw are a weaker target (give --imgsz %d to match it)",
            t_name,
            t_size,
            config.train.imgsz,
            t_size,
        )
    if not resume:
        _warn_idle(config)
    check_out(out, resume, exist_ok)
    # written by the trainer once it holds the folder's lock, so that a distillation refused
    # because another one writes there does not replace that one's settings
    # with the training settings as run, as train_config.yaml (an auto static_assigner_epochs
    # was null here and 0 there, and a resume rewrote it)
    hook.run_files = {
        "distill_config.yaml": lambda run: yaml.safe_dump(
            {**config.to_dict(), "train": run.to_dict()}, sort_keys=False
        )
    }
    res = train(
        None if resume else student,
        data,
        config=config.train,
        out=out,
        resume=resume,
        exist_ok=exist_ok,
        progress=progress,
        hook=hook,
    )
    settings = {k: v for k, v in config.to_dict().items() if k != "train"}
    settings.update(
        # the file as the run's history names it (absolute), not as it was given
        teacher=t_file or "Detector",
        student=hook.student,
        # deploy form (RepConv and BN fused), as models / prune / nas / bench count them
        teacher_params=_deploy_params(t_model),
        student_params=_deploy_params(res.model),
        align_convs=[
            isinstance(m, nn.Conv2d) for m in (hook.adapters.align if hook.adapters else [])
        ],
    )
    artifacts = {"last": res.last}
    if res.best is not None:
        artifacts["best"] = res.best
    return Result(res.model, {"train": res.report, "distill": settings}, artifacts)
