"""DAFormer decode head (docs/design/method.md §6) over the fusion pyramid.

Per level a linear map (1x1 conv with bias, DAFormer's `mlp` embedding) to `channels`,
bilinear resize to the 1/4 level (align_corners=False), concatenation, the separable
ASPP of DAFormer's `DepthwiseSeparableASPPModule` (dilation 1 is a 1x1 conv branch,
dilations 6/12/18 are depthwise-separable 3x3 convs; BatchNorm + ReLU, no image pool),
a 3x3 conv back to `channels` (BN + ReLU), channel dropout, a 1x1 classifier. Initialised as
mmseg does: the conv+BN+ReLU blocks with mmcv ConvModule's Kaiming init, the embeddings with
PyTorch's default (mmseg's `MLP` is a plain nn.Linear), the classifier normal(0, 0.01).
Logits at 1/4 resolution. Tensors are [B, C, h, w].
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from diffseg.nn.dropout import SeededDropout2d


def conv_bn_relu(c_in: int, c_out: int, k: int = 1, dilation: int = 1, groups: int = 1) -> nn.Sequential:
    """mmcv's ConvModule(conv, BN, ReLU), with its init: `kaiming_init(conv, a=0, nonlinearity="relu")`,
    i.e. Kaiming normal over fan_out = c_out * k * k (mmcv's default mode), BN weight 1 and bias 0."""
    pad = dilation * (k // 2)
    conv = nn.Conv2d(c_in, c_out, k, padding=pad, dilation=dilation, groups=groups, bias=False)
    nn.init.kaiming_normal_(conv.weight, a=0, mode="fan_out", nonlinearity="relu")
    return nn.Sequential(conv, nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class SeparableASPP(nn.Module):
    """Branches: 1x1 for dilation 1, depthwise(3x3, dilated) + pointwise(1x1) otherwise; concatenated."""

    def __init__(self, c_in: int, c_out: int, dilations: tuple[int, ...] = (1, 6, 12, 18)):
        super().__init__()
        self.branches = nn.ModuleList(
            conv_bn_relu(c_in, c_out, 1)
            if d == 1
            else nn.Sequential(conv_bn_relu(c_in, c_in, 3, dilation=d, groups=c_in), conv_bn_relu(c_in, c_out, 1))
            for d in dilations
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.branches], dim=1)


class DAFormerHead(nn.Module):
    """pyramid [x4, x8, x16, x32] -> logits [B, num_classes, h4, w4]."""

    def __init__(
        self,
        in_channels: tuple[int, ...],
        channels: int = 256,
        num_classes: int = 19,
        dropout: float = 0.1,
        dilations: tuple[int, ...] = (1, 6, 12, 18),
    ):
        super().__init__()
        self.embed = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in in_channels)
        self.aspp = SeparableASPP(len(in_channels) * channels, channels, dilations)
        self.fuse = conv_bn_relu(len(dilations) * channels, channels, 3)
        self.dropout = SeededDropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1)
        nn.init.normal_(self.classifier.weight, std=0.01)  # mmseg's conv_seg init
        assert self.classifier.bias is not None  # Conv2d's default bias=True
        nn.init.zeros_(self.classifier.bias)

    def forward(self, pyramid: list[torch.Tensor], dropout_seeds: torch.Tensor | None = None) -> torch.Tensor:
        # 1. embed every level and bring it to the 1/4 grid
        size = pyramid[0].shape[-2:]
        embedded = [
            F.interpolate(e(x), size=size, mode="bilinear", align_corners=False) if x.shape[-2:] != size else e(x)
            for e, x in zip(self.embed, pyramid)
        ]
        # 2. separable ASPP over the concatenation, 3x3 fuse
        x = self.fuse(self.aspp(torch.cat(embedded, dim=1)))
        # 3. dropout and classifier
        return self.classifier(self.dropout(x, dropout_seeds))
