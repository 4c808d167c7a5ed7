"""Channel dropout whose masks are drawn per sample from a seeded generator.

Data-parallel runs split a batch across processes; for a sample to get the same
mask whether it sits in a batch of 2 in one process or alone in each of two, its
mask must depend only on its own seed, not on its batch position or a global RNG
state. `seeded_dropout2d` draws the mask of sample b from
`torch.Generator().manual_seed(seeds[b])` (on the CPU, so it is also the same on every
device) and drops whole channels like `nn.Dropout2d` (mmseg's head dropout).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def seeded_dropout2d(x_BCHW: torch.Tensor, p: float, seeds_B: torch.Tensor) -> torch.Tensor:
    """Zero channel c of sample b with probability p (mask from seed seeds_B[b]); scale by 1/(1-p)."""
    B, C = x_BCHW.shape[:2]
    assert seeds_B.shape == (B,), (seeds_B.shape, B)
    if p == 0.0:
        return x_BCHW
    keep_BC = torch.empty(B, C, dtype=torch.bool)
    for b, seed in enumerate(seeds_B.tolist()):
        g = torch.Generator().manual_seed(int(seed))
        keep_BC[b] = torch.rand(C, generator=g) >= p
    scale_BC11 = keep_BC.to(device=x_BCHW.device, dtype=x_BCHW.dtype)[:, :, None, None] / (1.0 - p)
    return x_BCHW * scale_BC11


class SeededDropout2d(nn.Module):
    """`nn.Dropout2d(p)` when seeds is None, else `seeded_dropout2d`; identity in eval mode."""

    def __init__(self, p: float = 0.1):
        super().__init__()
        self.p = p

    def forward(self, x_BCHW: torch.Tensor, seeds_B: torch.Tensor | None = None) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x_BCHW
        if seeds_B is None:
            return F.dropout2d(x_BCHW, self.p, training=True)
        return seeded_dropout2d(x_BCHW, self.p, seeds_B)

    def extra_repr(self) -> str:
        return f"p={self.p}"
