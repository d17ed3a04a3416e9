"""The detector: backbone -> RepGFPN neck -> decoupled GFL head."""

from __future__ import annotations

import torch
from torch import nn

from yoloslim.models.backbone import Backbone
from yoloslim.models.blocks import ConvBNAct, RepConv
from yoloslim.models.head import DetectHead
from yoloslim.models.neck import RepGFPN
from yoloslim.torch_state import float32_default

__all__ = ["Detector", "default_names"]


def default_names(nc: int) -> list[str]:
    """The names of a detector built without any: ``"0"`` .. ``"nc-1"``."""
    return [str(i) for i in range(nc)]


class Detector(nn.Module):
    """A DAMO-YOLO-style detector built from an explicit arch dict.

    In training mode ``forward`` returns the raw per-level head maps; in eval mode
    it returns decoded predictions ``(B, A, 4 + nc)`` (boxes xyxy in input pixels,
    sigmoid scores) ready for :func:`yoloslim.eval.postprocess.postprocess`.

    Build it with :func:`yoloslim.models.build_model`, which validates the arch.
    """

    @float32_default()  # float32 weights, whatever the caller's default dtype
    def __init__(self, arch: dict, names: list[str] | None = None) -> None:
        super().__init__()
        act = arch.get("act", "silu")
        bb, nk, hd = arch["backbone"], arch["neck"], arch["head"]
        n = len(bb["stages"])  # default taps: the last three stages, as validate_arch fills in
        self.backbone = Backbone(
            bb["stages"], act=act, out_indices=bb.get("out_indices", (n - 3, n - 2, n - 1))
        )
        self.neck = RepGFPN(
            self.backbone.out_channels,
            nk["out"],
            depth=nk.get("depth", 1),
            kernel=nk.get("kernel", 3),
            ratio=nk.get("ratio", 0.5),
            act=act,
        )
        self.head = DetectHead(
            self.neck.out_channels,
            arch["nc"],
            width=hd.get("width"),
            num_convs=hd.get("num_convs", 1),
            reg_max=hd.get("reg_max", 16),
            strides=tuple(hd.get("strides", (8, 16, 32))),
            act=act,
        )
        self.spec = arch
        self.names = list(names) if names else default_names(arch["nc"])
        self.deploy = False
        # the input size it was trained at, once known (from a checkpoint or a training run);
        # validate() evaluates at it when no imgsz is given
        self.imgsz: int | None = None

    @property
    def nc(self) -> int:
        return self.head.nc

    @property
    def reg_max(self) -> int:
        return self.head.reg_max

    @property
    def strides(self) -> tuple[int, ...]:
        return self.head.strides

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Neck outputs (one map per stride): the features distillation uses."""
        return self.neck(self.backbone(x))

    def forward_raw(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Raw head maps whatever the mode (used by losses)."""
        return self.head(self.features(x))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor] | torch.Tensor:
        raw = self.forward_raw(x)
        return raw if self.training else self.head.decode(raw)

    def fuse(self) -> Detector:
        """Re-parameterise in place: fold RepConv branches and Conv+BN pairs. Idempotent.

        Returns ``self`` in eval mode: the BatchNorms are folded with their running
        statistics, so the deploy form computes what the eval-mode model does, whatever mode
        it was in (audit45 reparam F3: a model fused in train mode stayed in it, its output
        the raw training one)."""
        for m in self.modules():
            if isinstance(m, (RepConv, ConvBNAct)):
                m.fuse()
        self.deploy = True
        return self.eval()
