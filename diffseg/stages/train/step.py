"""Pieces of one training step: moving a batch to the device, the NaN check, both branches
through the shared Segmentor in one forward (so DDP sees a single forward per backward),
and the mixed-precision policy (CUDA only).

Legend: B batch, S saved steps, C channels, h/w feature size, H/W label size.
"""

from __future__ import annotations

import torch
from torch import nn

from diffseg.core.errors import DiffsegError


class BranchForward(nn.Module):
    """{branch: {layer: [B, S, C, h, w]}} -> {branch: logits [B, K, H/4, W/4]} through one Segmentor."""

    def __init__(self, segmentor: nn.Module):
        super().__init__()
        self.seg = segmentor

    def forward(
        self, feats: dict[str, dict[str, torch.Tensor]], seeds: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        return {b: self.seg(f, seeds[b]) for b, f in feats.items()}


def flip_samples(
    feats: dict[str, dict[str, torch.Tensor]], labels_BHW: torch.Tensor, mask_B: torch.Tensor
) -> tuple[dict[str, dict[str, torch.Tensor]], torch.Tensor]:
    """Mirror the masked samples left-right: every branch's features and the label together."""
    if not bool(mask_B.any()):
        return feats, labels_BHW
    mask_B = mask_B.to(labels_BHW.device)
    m5 = mask_B.view(-1, 1, 1, 1, 1)
    flipped = {b: {l: torch.where(m5, x.flip(-1), x) for l, x in f.items()} for b, f in feats.items()}
    return flipped, torch.where(mask_B.view(-1, 1, 1), labels_BHW.flip(-1), labels_BHW)


def nonfinite_samples(feats: dict[str, dict[str, torch.Tensor]]) -> list[tuple[int, str]]:
    """[(batch position, "branch/layer")] of samples holding NaN/inf; one device sync."""
    flags, names = [], []
    for b, f in feats.items():
        for l, x_BSChw in f.items():
            flags.append(~torch.isfinite(x_BSChw).flatten(1).all(1))  # [B]
            names.append(f"{b}/{l}")
    bad_LB = torch.stack(flags)
    if not bool(bad_LB.any()):
        return []
    return [(int(pos), names[int(li)]) for li, pos in bad_LB.nonzero().tolist()]


def raise_nonfinite(bad: list[tuple[int, str]], ids: list[str], cache: str) -> None:
    where = sorted({f"{ids[pos]} ({name})" for pos, name in bad})
    raise DiffsegError(
        f"{cache}: NaN/inf in the features of sample {', '.join(where)}; run `diffseg cache verify` on it"
    )
