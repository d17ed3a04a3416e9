"""Settings of :func:`yoloslim.quantize`: a frozen, validated :class:`QuantConfig`.

Values are checked at construction (``ConfigError`` names the field and the
value), and :meth:`QuantConfig.from_dict` rejects unknown keys instead of
skipping them.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from yoloslim.configs import (
    check_field_types,
    check_imgsz,
    from_mapping,
    int_problem,
    plain_numbers,
)
from yoloslim.errors import ConfigError

__all__ = [
    "DECODE",
    "HEAD_PREDS",
    "AdvancedQuantConfig",
    "Backend",
    "Method",
    "Mode",
    "QuantConfig",
]

# Scope keywords, resolved structurally on the graph (yoloslim.compress.quant_scope):
# DECODE = everything after the head's prediction convs (DFL softmax-expectation,
# sigmoid, anchor arithmetic, the output concat); HEAD_PREDS = the prediction convs.
DECODE = "decode"
HEAD_PREDS = "head_preds"


class _StrEnum(str, Enum):
    def __str__(self) -> str:
        return self.value


class Backend(_StrEnum):
    OPENVINO = "openvino"
    ONNXRUNTIME = "onnxruntime"


class Mode(_StrEnum):
    STATIC = "static"
    DYNAMIC = "dynamic"


class Method(_StrEnum):
    MINMAX = "minmax"
    ENTROPY = "entropy"
    PERCENTILE = "percentile"


_FLOAT_VARIANTS = ("fp16", "bf16")
_PRESETS = ("mixed", "performance")


def _enum(cls: type[Enum], name: str, value: Any) -> Any:
    try:
        return cls(str(value).lower())
    except ValueError as e:
        choices = [m.value for m in cls]
        raise ConfigError(f"{name}={value!r}: choose from {choices}") from e


@dataclass(frozen=True)
class AdvancedQuantConfig:
    """Rarely changed knobs.

    Attributes:
        preset: NNCF preset: "mixed" (symmetric weights, asymmetric activations, the
            right choice for SiLU outputs, which go down to -0.28) or "performance"
            (symmetric both; cheaper on CPUs without VNNI, see quant_report "perf").
        per_channel: per-output-channel weight scales (ONNX Runtime; NNCF always is).
        reduce_range: 7-bit weights for ONNX Runtime (avoids vpmaddubsw saturation on
            AVX2 CPUs without VNNI); None: on when this CPU lacks VNNI.
        percentile: the percentile of the "percentile" method.
        entropy_bins: histogram bins the "entropy" method searches (for the 128-bin
            quantization that loses least; more bins, finer ranges, slower calibration).
        sensitivity_images: validation images the layer-sensitivity ranking runs on.
        max_steps: most layers the accuracy-aware loop returns to float.
        latency: measure latency of every artifact (one worker process each).
        latency_rounds: interleaved rounds of 10 runs each.
        perf_counters: record OpenVINO per-layer performance counters (float and int8).
        seed: picks the calibration images.
    """

    preset: str = "mixed"
    per_channel: bool = True
    reduce_range: bool | None = None
    percentile: float = 99.999
    entropy_bins: int = 2048
    sensitivity_images: int = 32
    max_steps: int = 12
    latency: bool = True
    latency_rounds: int = 10
    perf_counters: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        # a YAML ``per_channel: 'false'`` is a truthy string: named here, not obeyed backwards
        check_field_types(
            self,
            ints=("entropy_bins", "sensitivity_images", "max_steps", "latency_rounds", "seed"),
            numbers=("percentile",),
            bools=("per_channel", "reduce_range", "latency", "perf_counters"),
            optional=("reduce_range",),
            where="advanced",
        )
        if self.preset not in _PRESETS:
            raise ConfigError(f"advanced.preset={self.preset!r}: choose from {list(_PRESETS)}")
        if not 90.0 <= self.percentile < 100.0:
            raise ConfigError(f"advanced.percentile={self.percentile}: must be in [90, 100)")
        if not 256 <= self.entropy_bins <= 65536:  # the search needs more than the 128 it keeps
            raise ConfigError(f"advanced.entropy_bins={self.entropy_bins}: must be in [256, 65536]")
        for name in ("sensitivity_images", "latency_rounds"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"advanced.{name}={getattr(self, name)}: must be > 0")
        if self.max_steps < 0:
            raise ConfigError(f"advanced.max_steps={self.max_steps}: must be >= 0")
        if not 0 <= self.seed < 2**32:  # numpy's seeds, as TrainConfig's and PruneConfig's
            raise ConfigError(f"advanced.seed={self.seed}: must be in [0, 2**32)")


@dataclass(frozen=True)
class QuantConfig:
    """What :func:`yoloslim.quantize` does.

    Attributes:
        backend: "openvino" (NNCF post-training quantization of the IR) or
            "onnxruntime" (QDQ static quantization, or dynamic with ``mode``).
        mode: "static" (calibrated INT8 activations) or "dynamic" (ONNX Runtime only:
            activation ranges computed at run time, ConvInteger).
        calib: number of training images to calibrate on (letterboxed like inference).
        method: activation range estimator: "minmax", "entropy" (ONNX Runtime only)
            or "percentile".
        max_drop: accuracy budget in mAP50-95 points (0.5 = 0.005 mAP); None: no
            accuracy-aware fallback.
        ignored_scope: what stays float: the keywords "decode" (the box decode and
            everything after the head's prediction convs) and "head_preds" (those
            convs), or regular expressions matched against layer names (the conv's
            module path, e.g. ``head\\.cls_preds\\.0``) and graph node names.
        imgsz: input size (default: the checkpoint's / artifact's, else 320).
        float_variants: float artifacts to write beside the INT8 one for comparison:
            "fp16" (both backends), "bf16" (OpenVINO: an IR that asks the plugin for bf16).
        advanced: :class:`AdvancedQuantConfig`.

    Example:
        >>> cfg = QuantConfig(backend="onnxruntime", method="entropy", max_drop=0.5)
        >>> QuantConfig.from_dict({"calib": 100, "advanced": {"preset": "performance"}}).calib
        100
    """

    backend: str = "openvino"
    mode: str = "static"
    calib: int = 300
    method: str = "minmax"
    max_drop: float | None = None
    ignored_scope: tuple[str, ...] = (DECODE,)
    imgsz: int | None = None
    float_variants: tuple[str, ...] = ()
    advanced: AdvancedQuantConfig = field(default_factory=AdvancedQuantConfig)

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise in place once
        for f in dataclasses.fields(self):  # numpy numbers (a sweep's) checked as Python's
            set_(self, f.name, plain_numbers(getattr(self, f.name)))
        set_(self, "backend", _enum(Backend, "backend", self.backend).value)
        set_(self, "mode", _enum(Mode, "mode", self.mode).value)
        set_(self, "method", _enum(Method, "method", self.method).value)
        for name in ("ignored_scope", "float_variants"):
            value = getattr(self, name)
            if isinstance(value, str):  # one pattern or name
                value = (value,)
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
                raise ConfigError(
                    f"{name}={value!r}: must be a list of strings ({_LISTS[name]}; [] for none)"
                )
            set_(self, name, tuple(value))
        set_(self, "float_variants", tuple(v.lower() for v in self.float_variants))
        if not isinstance(self.advanced, AdvancedQuantConfig):  # a mapping, or a wrong value
            set_(self, "advanced", _advanced_from_dict(self.advanced))
        if int_problem(self.calib):
            raise ConfigError(f"calib={self.calib!r}: must be a positive integer (images)")
        set_(self, "calib", int(self.calib))
        check_field_types(self, numbers=("max_drop",), optional=("max_drop",))
        if self.max_drop is not None and not 0 <= self.max_drop < math.inf:
            raise ConfigError(
                f"max_drop={self.max_drop}: must be a finite number >= 0 (mAP50-95 points; "
                "no accuracy budget: leave it unset)"
            )
        check_imgsz(self.imgsz)
        bad = [v for v in self.float_variants if v not in _FLOAT_VARIANTS]
        if bad:
            raise ConfigError(f"float_variants={list(self.float_variants)}: unknown {bad}")
        if self.backend == Backend.ONNXRUNTIME and "bf16" in self.float_variants:
            raise ConfigError(
                "float_variants=['bf16'] needs backend='openvino' (ONNX Runtime's CPU provider "
                "has no bf16 convolutions)"
            )
        if self.mode == Mode.DYNAMIC and self.backend != Backend.ONNXRUNTIME:
            raise ConfigError(
                f"mode='dynamic' needs backend='onnxruntime' (got backend={self.backend!r}): "
                "OpenVINO has no dynamic quantization for convolutions"
            )
        if self.mode == Mode.DYNAMIC and (self.method != Method.MINMAX or self.calib != 300):
            # silently unused: the report said method null and 0 images requested
            given = self.method if self.method != Method.MINMAX else self.calib
            name = "method" if self.method != Method.MINMAX else "calib"
            raise ConfigError(
                f"{name}={given!r}: mode='dynamic' computes activation ranges at run time and "
                "calibrates on nothing; leave method and calib unset, or use mode='static'"
            )
        if self.method == Method.ENTROPY and self.backend == Backend.OPENVINO:
            raise ConfigError(
                "method='entropy' is ONNX Runtime's calibrator; with backend='openvino' "
                "use 'minmax' or 'percentile'"
            )
        if self.backend == Backend.ONNXRUNTIME and self.advanced.preset != "mixed":
            raise ConfigError(
                f"advanced.preset={self.advanced.preset!r} is NNCF's (backend='openvino'); "
                "ONNX Runtime has no preset (its static INT8 is asymmetric uint8 activations "
                "and symmetric int8 weights, as NNCF's 'mixed')"
            )
        for p in self.ignored_scope:
            _check_pattern(p)

    def refuse_unused(self) -> None:
        """ConfigError for ONNX Runtime's knobs given with the OpenVINO backend (NNCF has
        neither: they were kept, recorded and never applied). Checked when a quantization
        runs, not when the config is read: a compress run that began with one still loads."""
        if self.backend != Backend.OPENVINO:
            return
        if self.advanced.per_channel is not True:
            raise ConfigError(
                "advanced.per_channel=False is ONNX Runtime's (backend='onnxruntime'); NNCF "
                "always scales weights per output channel"
            )
        if self.advanced.reduce_range is True:
            raise ConfigError(
                "advanced.reduce_range=True is ONNX Runtime's (backend='onnxruntime'); NNCF "
                "picks its weight range for the CPU itself"
            )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QuantConfig:
        """Build from a plain dict (a YAML recipe); unknown keys raise ConfigError."""
        kw = dict(d) if isinstance(d, dict) else d
        if isinstance(kw, dict):
            for key in ("ignored_scope", "float_variants"):
                if isinstance(kw.get(key), list):
                    kw[key] = tuple(kw[key])
        # a nested "advanced" mapping is converted (and its keys checked) by __post_init__
        return from_mapping(cls, kw, "quantize config")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (for the report and ``quant_config.json``)."""
        d = dataclasses.asdict(self)
        d["ignored_scope"] = list(self.ignored_scope)
        d["float_variants"] = list(self.float_variants)
        return d


def _advanced_from_dict(d: dict[str, Any]) -> AdvancedQuantConfig:
    return from_mapping(AdvancedQuantConfig, d, "quantize config advanced")


_LISTS = {
    "ignored_scope": "'decode', 'head_preds' or regular expressions",
    "float_variants": "'fp16', 'bf16'",
}


def _check_pattern(p: str) -> None:
    import re

    if p in (DECODE, HEAD_PREDS):
        return
    if not p.strip():  # an unset shell variable: a regex that keeps every node in float
        raise ConfigError(
            f"ignored_scope pattern {p!r} is empty, and would match every layer (nothing "
            "quantized); give a pattern, or 'none' on the command line to quantize everything"
        )
    try:
        re.compile(p)
    except re.error as e:
        raise ConfigError(
            f"ignored_scope pattern {p!r} is not a valid regular expression: {e}"
        ) from e
