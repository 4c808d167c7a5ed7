"""IPKL losses (docs/design/method.md §7) as pure functions.

L = w_cond * CE(D(F_cond), y) + w_uncond * CE(D(F_uncond), y) + w_cons * C(D(F_cond), D(F_uncond))

CE: logits [B, K, h, w] (1/4 resolution) are upsampled bilinearly (align_corners=False)
to the label size [B, H, W] as in DAFormer, ignore index 255, mean over labelled pixels.
C: `l2` = MSE on the raw 1/4-resolution logits (mean over all elements, the reference),
`kl` = KL(p_cond || p_uncond) of the class softmax, summed over classes and averaged over
pixels, `kl-ref` = the reference code's KL, `0.1 * min(F.kl_div(log_softmax(uncond),
softmax(cond), reduction="batchmean"), 0.5)`: summed over classes *and pixels*, divided by the
batch size, so it exceeds 0.5 (and the clamp zeroes its gradient) unless the branches almost
agree; `none`. `detach_teacher` stops gradients into the conditional side of C.
Either branch may be None: baseline / DIFF-only train on uncond alone, "without
consistency" on cond alone; C needs both and is left out otherwise.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
from torch.nn import functional as F

from diffseg.core.classes import IGNORE
from diffseg.core.errors import DiffsegError

CONSISTENCY = ("l2", "kl", "kl-ref", "none")
KL_REF_WEIGHT, KL_REF_CLAMP = 0.1, 0.5  # the reference code's KL weight and clamp (applied to the KL)


@dataclass(frozen=True, kw_only=True)
class LossConfig:
    w_cond: float = 1.0  # CE weight of the conditional (label-steered) branch
    w_uncond: float = 1.0  # CE weight of the unconditional branch
    w_cons: float = 1.0  # weight of the consistency term
    consistency: str = "l2"  # "l2" | "kl" | "kl-ref" | "none"
    detach_teacher: bool = False  # True: the cond side of the consistency term gets no gradient

    def __post_init__(self):
        if self.consistency not in CONSISTENCY:
            raise DiffsegError(f"unknown consistency {self.consistency!r}: expected one of {CONSISTENCY}")
        for name in ("w_cond", "w_uncond", "w_cons"):
            w = getattr(self, name)
            if not (math.isfinite(w) and w >= 0):
                raise DiffsegError(f"loss weight {name}={w} must be finite and >= 0")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> LossConfig:
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise DiffsegError(f"unknown LossConfig fields {sorted(unknown)}")
        return cls(**d)


def segmentation_ce(logits_BKhw: torch.Tensor, labels_BHW: torch.Tensor) -> torch.Tensor:
    """Cross-entropy at the label size, ignoring 255; 0 (with a graph) when every pixel is ignored."""
    if logits_BKhw.shape[-2:] != labels_BHW.shape[-2:]:
        logits_BKhw = F.interpolate(logits_BKhw, size=labels_BHW.shape[-2:], mode="bilinear", align_corners=False)
    labels_BHW = labels_BHW.long()
    if not bool((labels_BHW != IGNORE).any()):
        return logits_BKhw.sum() * 0.0  # F.cross_entropy would give 0/0 = NaN
    return F.cross_entropy(logits_BKhw, labels_BHW, ignore_index=IGNORE)


def consistency_loss(
    logits_cond: torch.Tensor, logits_uncond: torch.Tensor, kind: str, detach_teacher: bool = False
) -> torch.Tensor:
    """l2: mean squared difference of logits; kl: mean over pixels of KL(p_cond || p_uncond);
    kl-ref: 0.1 * min(sum over pixels of KL(p_cond || p_uncond) / B, 0.5) (the reference code)."""
    if detach_teacher:
        logits_cond = logits_cond.detach()
    if kind == "l2":
        return F.mse_loss(logits_uncond, logits_cond)
    if kind == "kl":
        logp_cond = F.log_softmax(logits_cond, dim=1)
        logp_uncond = F.log_softmax(logits_uncond, dim=1)
        kl_BHW = (logp_cond.exp() * (logp_cond - logp_uncond)).sum(dim=1)
        return kl_BHW.mean()
    if kind == "kl-ref":
        kl = F.kl_div(F.log_softmax(logits_uncond, dim=1), F.softmax(logits_cond, dim=1), reduction="batchmean")
        return KL_REF_WEIGHT * torch.clamp(kl, max=KL_REF_CLAMP)
    raise DiffsegError(f"consistency {kind!r} has no loss (expected 'l2', 'kl' or 'kl-ref')")


def ipkl_loss(
    logits_cond: torch.Tensor | None, logits_uncond: torch.Tensor | None, labels: torch.Tensor, cfg: LossConfig
) -> tuple[torch.Tensor, dict[str, float]]:
    """-> (total loss, {"ce_cond", "ce_uncond", "cons" (those computed), "total"} as floats).

    Raises DiffsegError naming the term when a term or the total is NaN/inf."""
    if logits_cond is None and logits_uncond is None:
        raise DiffsegError("ipkl_loss needs at least one branch's logits; both are None")
    terms: dict[str, torch.Tensor] = {}
    weights: dict[str, float] = {}
    if logits_cond is not None:
        terms["ce_cond"], weights["ce_cond"] = segmentation_ce(logits_cond, labels), cfg.w_cond
    if logits_uncond is not None:
        terms["ce_uncond"], weights["ce_uncond"] = segmentation_ce(logits_uncond, labels), cfg.w_uncond
    if logits_cond is not None and logits_uncond is not None and cfg.consistency != "none":
        terms["cons"] = consistency_loss(logits_cond, logits_uncond, cfg.consistency, cfg.detach_teacher)
        weights["cons"] = cfg.w_cons
    total = sum(weights[k] * v for k, v in terms.items())
    assert isinstance(total, torch.Tensor)  # at least one CE term (checked above): not sum()'s start value 0
    terms["total"] = total
    values = {k: float(v.detach()) for k, v in terms.items()}
    for name, value in values.items():
        if not math.isfinite(value):
            raise DiffsegError(f"IPKL loss term {name!r} is {value} (terms: {values})")
    return total, values
