"""Segmentor = DIFF fusion block + DAFormer head (docs/design/method.md §6); both IPKL branches share one.

Parameter counts (measured on the meta device, `tests/test_nn_fusion.py`), SD 2.1
`reference` layer set (res + blk, all j, up blocks 1-3 -> 6 layers per stride with
1280/640/320 channels) and 9 saved steps, 19 classes:
  reference widths: fusion 305.6 M (stride-32 reduction 180.4 M) + head 4.4 M = 310.0 M
  light widths:     fusion  30.2 M (stride-32 reduction 22.2 M) + head 0.25 M = 30.4 M
(in `light` the 1x1 projections of the 69,120 stride-32 input channels dominate).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from diffseg.nn.config import FusionConfig, fusion_preset
from diffseg.nn.fusion import DiffFusion
from diffseg.nn.head import DAFormerHead


class Segmentor(nn.Module):
    """feats {layer: [B, S, C, h, w]} -> logits [B, num_classes, H/4, W/4] (H = h * stride)."""

    def __init__(
        self, layer_specs: Mapping, n_steps: int, fusion: str | FusionConfig = "reference", num_classes: int = 19
    ):
        super().__init__()
        self.cfg = fusion if isinstance(fusion, FusionConfig) else fusion_preset(fusion)
        self.num_classes = num_classes
        self.fusion = DiffFusion(layer_specs, n_steps, self.cfg)
        self.head = DAFormerHead(self.fusion.out_channels, self.cfg.head_channels, num_classes, self.cfg.dropout)

    def forward(self, feats: Mapping[str, torch.Tensor], dropout_seeds: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.fusion(feats), dropout_seeds)

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """{"fusion": [...], "head": [...]}: the head takes 10x the learning rate (docs/design/method.md §8)."""
        return {"fusion": list(self.fusion.parameters()), "head": list(self.head.parameters())}
