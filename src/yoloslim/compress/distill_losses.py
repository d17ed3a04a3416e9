"""Distillation losses: logits (classification + DFL box bins) and neck features.

Every feature loss takes a student map already mapped to the teacher's width
(see :class:`FeatureAdapters`) and a teacher map of the same shape ``(B, C, H, W)``:

- ``mimic``: mean squared error (FitNets-style feature mimicking).
- ``cwd``: channel-wise distillation (Shu et al., 2021): per channel, a softmax over
  the spatial positions with temperature ``tau``; KL(teacher || student) times
  ``tau**2``, averaged over channels and images. DAMO-YOLO's choice for the neck.
- ``at``: attention transfer (Zagoruyko & Komodakis, 2017): the spatial map
  ``mean_c(f**2)``, L2-normalised per image, compared by squared distance. It does
  not need an align conv (it averages channels away).
- ``mgd``: masked generative distillation (Yang et al., 2022): random positions of
  the student map are zeroed and a small generator must rebuild the teacher map
  from what is left (MSE). Unlike the others it is *not* zero when student equals
  teacher: the generator has to learn to fill the holes.

Logit losses (:func:`logit_kd`) follow the head's layout ``(B, 4*(reg_max+1)+nc, H, W)``:
a binary KL per class on the temperature-softened sigmoid scores at every anchor
(modulated like quality focal loss by the squared score gap, so agreeing background
anchors fade out),
and a KL on the four DFL bin distributions at the anchors the teacher deems
foreground (max class score >= ``fg_threshold``), weighted by that score.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from yoloslim.models.head import flatten_maps

__all__ = [
    "FEATURE_LOSSES",
    "FeatureAdapters",
    "attention_transfer",
    "channel_wise_divergence",
    "logit_kd",
    "mimic",
    "normalize_feature",
]

FEATURE_LOSSES = ("cwd", "mimic", "mgd", "at")


def normalize_feature(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Standardise each channel over (batch, H, W): a BatchNorm without affine or running stats.

    DAMO-YOLO normalises both maps this way before CWD, so the loss compares the
    shape of the activations rather than their scale (which differs between models).
    """
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    var = x.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    return (x - mean) / (var + eps).sqrt()


def mimic(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean squared error between the maps."""
    return F.mse_loss(student, teacher)


def channel_wise_divergence(
    student: torch.Tensor, teacher: torch.Tensor, tau: float = 1.0
) -> torch.Tensor:
    """KL between per-channel spatial softmaxes, times ``tau**2``, mean over (B, C)."""
    b, c = teacher.shape[:2]
    t = (teacher / tau).flatten(2)
    s = (student / tau).flatten(2)
    kl = (t.softmax(-1) * (t.log_softmax(-1) - s.log_softmax(-1))).sum(-1)
    return kl.sum() * tau**2 / (b * c)


def _attention(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x.pow(2).mean(1).flatten(1), dim=1)


def attention_transfer(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Squared distance between L2-normalised spatial attention maps, mean over images.

    Channel counts may differ: the attention map averages over channels.
    """
    return (_attention(student) - _attention(teacher)).pow(2).sum(1).mean()


class FeatureAdapters(nn.Module):
    """Learnable maps from the student's neck widths to the teacher's, one per scale.

    ``align[i]`` is a 1x1 conv where the widths of scale ``i`` differ, else an
    identity. ``loss="mgd"`` adds one generator (3x3 conv, ReLU, 3x3 conv) per
    scale; ``loss="at"`` needs no align convs at all.
    """

    def __init__(self, student_widths: list[int], teacher_widths: list[int], loss: str) -> None:
        super().__init__()
        self.loss = loss
        self.align = nn.ModuleList(
            nn.Conv2d(s, t, 1) if s != t and loss != "at" else nn.Identity()
            for s, t in zip(student_widths, teacher_widths, strict=True)
        )
        self.generators = nn.ModuleList(
            nn.Sequential(nn.Conv2d(t, t, 3, padding=1), nn.ReLU(), nn.Conv2d(t, t, 3, padding=1))
            for t in (teacher_widths if loss == "mgd" else [])
        )

    def forward(
        self,
        student: list[torch.Tensor],
        teacher: list[torch.Tensor],
        *,
        tau: float = 1.0,
        normalize: bool = True,
        mask_ratio: float = 0.65,
    ) -> torch.Tensor:
        """The feature loss summed over scales."""
        total = student[0].new_zeros(())
        for i, (s, t) in enumerate(zip(student, teacher, strict=True)):
            if self.loss == "at":
                total = total + attention_transfer(s, t)
                continue
            s = self.align[i](s)
            if normalize:
                s, t = normalize_feature(s), normalize_feature(t)
            if self.loss == "mimic":
                total = total + mimic(s, t)
            elif self.loss == "cwd":
                total = total + channel_wise_divergence(s, t, tau)
            else:
                keep = (torch.rand_like(s[:, :1]) >= mask_ratio).to(s.dtype)
                total = total + mimic(self.generators[i](s * keep), t)
        return total


def _binary_kl(s_logits: torch.Tensor, t_logits: torch.Tensor) -> torch.Tensor:
    """Elementwise KL(Bernoulli(sigmoid(t)) || Bernoulli(sigmoid(s))), zero iff s == t."""
    p = t_logits.sigmoid()
    return p * (F.logsigmoid(t_logits) - F.logsigmoid(s_logits)) + (1 - p) * (
        F.logsigmoid(-t_logits) - F.logsigmoid(-s_logits)
    )


def logit_kd(
    student: list[torch.Tensor],
    teacher: list[torch.Tensor],
    reg_max: int,
    *,
    temperature: float = 1.0,
    fg_threshold: float = 0.25,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Classification and box-distribution distillation from raw head maps.

    Both terms are per-image sums normalised by that image's teacher foreground weight (at
    least 1), then averaged over the images: a per-image loss, as the detection loss is, that
    does not grow with the batch when the teacher is unsure (a batch-wide weight clamped at 1
    made it a batch sum, then). They are scaled by ``temperature**2`` (Hinton et al.).

    What the temperature does here is not Hinton's constant gradient. Measured with the
    demo's trained damo-nano as the teacher on 8 of its training images, the class term's
    gradient at T = 2 was 2.1x T = 1's for a random student and 1.1x for a fine-tuned one
    (0.6x and 0.9x at T = 8): softening moves the many background anchors' scores towards
    0.5, which widens the gap there, until at a high T it evens everything out. The DFL
    term's gradient grows with T (1.1-1.6x at T = 2, 1.5-2.6x at T = 8).

    Returns:
        ``(cls, dfl)``: the binary KL on class scores (all anchors, each weighted by the
        squared gap of the two softened scores, a weight the gradient does not flow through)
        and the KL on the DFL bins (teacher-foreground anchors only; zero when there are none).
    """
    nreg = 4 * (reg_max + 1)
    s = flatten_maps(student)  # (B, A, no)
    t = flatten_maps(teacher).to(s.dtype)
    t_score = t[..., nreg:].sigmoid().amax(-1)  # (B, A)
    fg = t_score >= fg_threshold
    weight = t_score * fg
    norm = weight.sum(-1).clamp(min=1.0)  # (B,): each image's own
    tt = temperature
    s_cls, t_cls = s[..., nreg:] / tt, t[..., nreg:] / tt
    # QFL-style modulation: the thousands of background anchors where the scores already
    # agree would otherwise swamp the sum (measured: 25x the detection cls term at start).
    # The factor is a weight, held constant (detached): the gradient is the KL's scaled per
    # anchor, not the product's (which QFL, a focal loss on its own target, takes whole)
    focus = (t_cls.sigmoid() - s_cls.sigmoid()).abs().pow(2).detach()
    cls = ((_binary_kl(s_cls, t_cls) * focus).sum((1, 2)) / norm).mean() * tt**2
    if not fg.any():
        return cls, s.new_zeros(())
    bins = (-1, 4, reg_max + 1)
    s_reg = (s[..., :nreg][fg] / tt).reshape(bins)
    t_reg = (t[..., :nreg][fg] / tt).reshape(bins)
    kl = (t_reg.softmax(-1) * (t_reg.log_softmax(-1) - s_reg.log_softmax(-1))).sum(-1).mean(-1)
    per_anchor = torch.zeros_like(weight).masked_scatter(fg, kl * weight[fg])  # (B, A)
    dfl = (per_anchor.sum(-1) / norm).mean() * tt**2
    return cls, dfl
