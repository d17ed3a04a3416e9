"""Budgets of the search and the exact cost of a candidate (FLOPs, parameters, layers,
effectiveness).

FLOPs and parameters are those of :func:`yoloslim.bench.flops.model_profile` for the
deploy (re-parameterised) form -- the network that ships -- counted with
``FlopCounterMode`` part by part on small CPU builds (each part run at 32 px and
scaled) with a cache (:class:`CostModel`); tests check the sums against
``model_profile`` of the whole model. The parts are built without initialising their
weights and their convolutions are not computed: a conv returns zeros of its output
shape and adds the FLOPs ``FlopCounterMode`` counts for it (2 x batch x output pixels x
weight elements), which no value changes. (Meta-device builds were measured slower: the
device context and the meta kernels cost more in Python than the 32 px arithmetic.)
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from yoloslim.bench.flops import count_params
from yoloslim.configs import exponent_hint, from_mapping
from yoloslim.errors import ConfigError
from yoloslim.models.arch import validate_arch
from yoloslim.models.backbone import Stage
from yoloslim.models.blocks import ConvBNAct, RepConv
from yoloslim.models.detector import Detector

__all__ = ["Budget", "Cost", "CostModel", "measure_cost", "meta_detector"]


@dataclass(frozen=True)
class Budget:
    """Upper bounds a returned architecture must meet; ``None`` = unconstrained.

    Attributes:
        flops: GFLOPs (2 x multiply-adds) of the deploy form at the search's ``imgsz``.
        params: millions of parameters of the deploy form.
        latency_ms: median latency measured on this machine (see
            :func:`~yoloslim.nas.latency.measure_latency_ms` and ``LatencySettings``).
        layers: conv layers of the deploy-form backbone (each RepConv counts once).
        effectiveness: DeepMAD's network effectiveness ``rho`` (Shen et al., CVPR 2023, the
            MAE-DET authors' follow-up): for the first ``L_i`` deploy-form backbone convs, up
            to the end of stage ``i``, ``rho_i = L_i / geometric mean of their output
            widths``; the cost is ``max_i rho_i``. The entropy score grows with every layer
            added, so without a bound it favours deep, thin backbones; DeepMAD bounds
            ``rho`` to keep depth in proportion to width. TinyNAS calls it ``efficient_score``.

    Example:
        >>> Budget(flops=1.0, params=1.7)
        Budget(flops=1.0, params=1.7, latency_ms=None, layers=None, effectiveness=None)
    """

    flops: float | None = None
    params: float | None = None
    latency_ms: float | None = None
    layers: int | None = None
    effectiveness: float | None = None

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if v is None:
                continue
            if isinstance(v, numbers.Real) and not isinstance(v, bool) and hasattr(v, "item"):
                v = v.item()  # a numpy number, as a plain one (the report's JSON needs it)
                object.__setattr__(self, f.name, v)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ConfigError(
                    f"budget.{f.name}={v!r} ({_flag(f.name)}) must be a finite number"
                    f"{exponent_hint(v)}"
                )
            if v <= 0:
                raise ConfigError(f"budget.{f.name}={v!r} ({_flag(f.name)}) must be > 0")
        if self.layers is not None and int(self.layers) != self.layers:
            raise ConfigError(f"budget.layers={self.layers!r} (--budget-layers) must be an integer")
        if all(getattr(self, f.name) is None for f in dataclasses.fields(self)):
            raise ConfigError(
                "budget: give at least one of flops, params, latency_ms, layers, effectiveness"
            )

    @classmethod
    def from_dict(cls, d: dict) -> Budget:
        """Build from ``{"flops": G, "params": M, "latency_ms": MS, "layers": N,
        "effectiveness": RHO}``; unknown keys raise."""
        return from_mapping(cls, d, "budget")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def violations(self, cost: Cost, latency_ms: float | None = None) -> list[str]:
        """Names of the budgets ``cost`` exceeds (latency only when measured)."""
        over = []
        if self.flops is not None and cost.gflops > self.flops:
            over.append("flops")
        if self.params is not None and cost.params_deploy / 1e6 > self.params:
            over.append("params")
        if self.layers is not None and cost.layers > self.layers:
            over.append("layers")
        if self.effectiveness is not None and cost.effectiveness > self.effectiveness:
            over.append("effectiveness")
        if self.latency_ms is not None and latency_ms is not None and latency_ms > self.latency_ms:
            over.append("latency_ms")
        return over


@dataclass(frozen=True)
class Cost:
    """Exact static cost of one architecture (deploy form unless named otherwise).

    ``log_width`` is the sum of ``log(output channels)`` over the counted backbone convs;
    ``effectiveness`` is :attr:`Budget.effectiveness`'s ``max_i rho_i`` (set by
    :class:`CostModel` on whole networks; 0 on parts).
    """

    flops: int
    params: int
    params_deploy: int
    layers: int
    log_width: float = 0.0
    effectiveness: float = 0.0

    @property
    def gflops(self) -> float:
        return self.flops / 1e9

    def scaled(self, k: int) -> Cost:
        """FLOPs multiplied by ``k`` (the area ratio), the rest unchanged."""
        return dataclasses.replace(self, flops=self.flops * k)

    def __add__(self, other: Cost) -> Cost:
        return Cost(
            self.flops + other.flops,
            self.params + other.params,
            self.params_deploy + other.params_deploy,
            self.layers + other.layers,
            self.log_width + other.log_width,
            max(self.effectiveness, other.effectiveness),
        )


def meta_detector(arch: dict) -> Detector:
    """A Detector built on the meta device: shapes only, no memory, no arithmetic."""
    with torch.device("meta"):
        return Detector(validate_arch(arch))


class _NeckHead(nn.Module):
    """Neck + head as the eval-mode Detector runs them (decode included)."""

    def __init__(self, det: Detector) -> None:
        super().__init__()
        self.neck, self.head = det.neck, det.head

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        return self.head.decode(self.head(self.neck(feats)))


# Part costs are pure functions of their (hashable) specs: memoised across searches.
@functools.lru_cache(maxsize=8192)
def _stage_cost(c_in: int, spec: str, size: int, act: str) -> Cost:
    x = torch.zeros(1, c_in, size, size)
    return _part_cost(lambda: Stage(c_in, json.loads(spec), act), x, True)


@functools.lru_cache(maxsize=8192)
def _neck_head_cost(spec: str, chans: tuple[int, ...], sizes: tuple[int, ...]) -> Cost:
    d = json.loads(spec)
    arch = {**d, "backbone": {"stages": _dummy_stages(chans, sizes), "out_indices": [0, 1, 2]}}
    feats = [torch.zeros(1, c, s, s) for c, s in zip(chans, sizes, strict=True)]
    return _part_cost(lambda: _NeckHead(Detector(arch)), feats, False)


@contextlib.contextmanager
def _uninitialised():
    """Convs and linears built inside keep their weights' memory as allocated: a cost needs
    shapes, and random initialisation was a fifth of the search's cost counting."""
    saved = {cls: cls.reset_parameters for cls in (nn.Conv2d, nn.Linear)}
    for cls in saved:
        cls.reset_parameters = _skip
    try:
        yield
    finally:
        for cls, reset in saved.items():
            cls.reset_parameters = reset


def _skip(module: nn.Module) -> None:
    return None


def _shape_only(conv: nn.Conv2d, counted: list[int]):
    """A forward for ``conv`` that returns zeros of its output's shape and adds to
    ``counted`` the FLOPs ``FlopCounterMode`` would count for it."""

    def forward(x: torch.Tensor) -> torch.Tensor:
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (
            conv.kernel_size,
            conv.stride,
            conv.padding,
            conv.dilation,
        )
        oh = (x.shape[2] + 2 * ph - dh * (kh - 1) - 1) // sh + 1
        ow = (x.shape[3] + 2 * pw - dw * (kw - 1) - 1) // sw + 1
        counted[0] += 2 * x.shape[0] * oh * ow * conv.weight.numel()
        return x.new_zeros(x.shape[0], conv.out_channels, oh, ow)

    return forward


def _dummy_stages(chans: tuple[int, ...], sizes: tuple[int, ...]) -> list[dict]:
    """Stand-in backbone with the given output widths (only the neck and head are counted)."""
    return [
        {"block": "conv", "out": c, "depth": 0, "kernel": 1, "stride": 1, "ratio": 1.0}
        for c in chans
    ]


def _part_cost(build: Callable[[], nn.Module], inputs, count_layers: bool) -> Cost:
    """The cost of the part ``build()`` makes, built and fused without initialising weights."""
    with _uninitialised():
        part = build()
        params = count_params(part)
        for sub in part.modules():
            if isinstance(sub, (RepConv, ConvBNAct)):
                sub.fuse()
    part.eval()
    convs = [m for m in part.modules() if isinstance(m, nn.Conv2d)]
    conv_flops = [0]
    for conv in convs:
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise AssertionError(f"cost model: unsupported conv {conv}")  # none is built here
        conv.forward = _shape_only(conv, conv_flops)
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        part(inputs)
    flops = fc.get_total_flops() + conv_flops[0]
    convs = convs if count_layers else []
    log_width = sum(math.log(c.out_channels) for c in convs)
    return Cost(flops, params, count_params(part), len(convs), log_width)


class CostModel:
    """Exact costs at one input size, computed part by part and cached.

    FLOPs and parameters are sums over modules, so the cost of a network is the sum
    of its backbone stages' costs (each depends on its input width, its spec and its
    input size only) and of the neck + head's (which depend on the three backbone
    output widths and the neck/head specs). A search mutates one or two genes at a
    time, so most parts are already cached. Every counted op (conv, the head's
    matmuls) scales with the area of its feature map, and at a multiple of 32 every
    map is exactly ``imgsz / stride`` wide, so parts are run at 32 px and their FLOPs
    multiplied by ``(imgsz / 32) ** 2`` -- an exact integer identity. The counts are
    those of :func:`yoloslim.bench.flops.model_profile` on the whole deploy-form model
    (checked by the tests).
    """

    BASE = 32

    def __init__(self, imgsz: int) -> None:
        if imgsz % self.BASE:
            raise ConfigError(f"imgsz={imgsz} must be a multiple of {self.BASE}")
        self.imgsz = imgsz
        self.scale = (imgsz // self.BASE) ** 2

    def _stage(self, c_in: int, spec: dict, size: int, act: str) -> Cost:
        return _stage_cost(c_in, json.dumps(spec, sort_keys=True), size, act).scaled(self.scale)

    def _neck_head(self, arch: dict, chans: list[int], sizes: list[int]) -> Cost:
        spec = json.dumps({k: arch[k] for k in ("nc", "act", "neck", "head")}, sort_keys=True)
        return _neck_head_cost(spec, tuple(chans), tuple(sizes)).scaled(self.scale)

    def __call__(self, arch: dict) -> Cost:
        """Exact cost of ``arch`` (validated; a ``layers`` record is not supported)."""
        a = validate_arch(arch)
        if "layers" in a:
            raise ConfigError("CostModel: archs with a per-layer 'layers' record are not supported")
        size, c, total = self.BASE, 3, Cost(0, 0, 0, 0)
        sizes, chans, rho = [], [], 0.0
        for spec in a["backbone"]["stages"]:
            total = total + self._stage(c, spec, size, a["act"])
            if total.layers:  # rho_i over the convs from the input to the end of stage i
                rho = max(rho, total.layers / math.exp(total.log_width / total.layers))
            size = -(-size // spec["stride"])
            c = spec["out"]
            sizes.append(size)
            chans.append(c)
        idx = a["backbone"]["out_indices"]
        total = total + self._neck_head(a, [chans[i] for i in idx], [sizes[i] for i in idx])
        return dataclasses.replace(total, effectiveness=rho)


def measure_cost(arch: dict, imgsz: int) -> Cost:
    """FLOPs, parameters (training and deploy form), backbone layers and effectiveness of
    ``arch`` at ``imgsz``."""
    return CostModel(imgsz)(arch)


def _flag(name: str) -> str:
    """The ``nas`` command's option of the budget ``name`` (``latency_ms``: --budget-latency)."""
    return "--budget-" + name.removesuffix("_ms").replace("_", "-")
