"""MultiDiffusion latent fusion of the path-controlled branch (docs/design/method.md §4).

Each prompt k moves the shared latent to its own x_k; the next latent is the masked average
sum_k m_k x_k / sum_k m_k. Copy 0 is the global/unconditional prompt with a mask of ones, so
the denominator is never zero. Suffixes: K copies, B batch, C channels, H/W latent size.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def masked_average(latents_KBCHW, masks_K1HW: torch.Tensor) -> torch.Tensor:
    """sum_k m_k x_k / sum_k m_k over the K copies -> [B, C, H, W] (or [C, H, W] for [K, C, H, W])."""
    x = torch.stack(list(latents_KBCHW)) if isinstance(latents_KBCHW, (list, tuple)) else latents_KBCHW
    m = masks_K1HW.to(x.dtype)
    if x.dim() == 5 and m.dim() == 4:
        m = m.unsqueeze(1)  # [K, 1, 1, H, W] broadcasts over B and C
    return (m * x).sum(0) / m.sum(0)


def class_masks(label_HW: np.ndarray, class_ids, latent_hw: tuple[int, int]) -> torch.Tensor:
    """[1 + n, 1, h, w] float masks: ones (global prompt), then one binary mask per class id,
    nearest-resized from the label to the latent size."""
    ones = torch.ones(1, 1, *latent_hw)
    if len(class_ids) == 0:
        return ones
    lab = torch.from_numpy(np.ascontiguousarray(label_HW)).long()
    ids = torch.tensor(list(class_ids), dtype=torch.long)
    bin_n1HW = (lab[None, None] == ids[:, None, None, None]).float()
    small = F.interpolate(bin_n1HW, size=tuple(latent_hw), mode="nearest")
    return torch.cat([ones, small], 0)
