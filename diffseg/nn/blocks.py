"""Convolution blocks of the DIFF fusion block (docs/design/method.md §6).

`Bottleneck`: detectron2-style 1x1 -> 3x3 -> 1x1 residual block with a projected
shortcut (the per-stride channel reduction). `ResBlock`: two 3x3 convs with a
residual (the decoder). `UpFuse`: 2x transposed conv, optional lateral add, ResBlock.
`StridedDown`: derives a missing coarser level from a finer one.
Tensors are [B, C, h, w].
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def conv_gn(c_in: int, c_out: int, k: int, groups: int, stride: int = 1) -> nn.Sequential:
    """Conv (no bias: the norm has one) + GroupNorm."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, bias=False), nn.GroupNorm(groups, c_out)
    )


class Bottleneck(nn.Module):
    """relu(conv1x1-gn-relu -> conv3x3-gn-relu -> conv1x1-gn  +  conv1x1-gn shortcut)."""

    def __init__(self, c_in: int, c_mid: int, c_out: int, groups: int = 16):
        super().__init__()
        self.conv1 = conv_gn(c_in, c_mid, 1, groups)
        self.conv2 = conv_gn(c_mid, c_mid, 3, groups)
        self.conv3 = conv_gn(c_mid, c_out, 1, groups)
        self.shortcut = conv_gn(c_in, c_out, 1, groups)

    def forward(self, x: torch.Tensor, project: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """`project` (P [c_in, c'], m [c_in]): x holds coefficients c [B, c', h, w] of the input P c + m;
        the two 1x1 maps that read the input apply W P and W m instead (the same values, fewer MACs)."""
        if project is None:
            y = F.relu(self.conv1(x))
            short = self.shortcut(x)
        else:
            y = F.relu(_folded(self.conv1, x, *project))
            short = _folded(self.shortcut, x, *project)
        y = F.relu(self.conv2(y))
        return F.relu(self.conv3(y) + short)


def _folded(conv_gn_: nn.Sequential, c: torch.Tensor, P: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """conv_gn_(P c + m) for a bias-free 1x1 conv: conv with weight W P and bias W m, then the norm."""
    conv, norm = conv_gn_[0], conv_gn_[1]
    assert isinstance(conv, nn.Conv2d) and conv.bias is None, "a bias-free 1x1 conv"
    W = conv.weight[:, :, 0, 0]  # [out, c_in]
    return norm(F.conv2d(c, (W @ P)[:, :, None, None], W @ m))


class ResBlock(nn.Module):
    """relu(x + gn(conv3x3(relu(gn(conv3x3(x))))))."""

    def __init__(self, c: int, groups: int = 32):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.gn1 = nn.GroupNorm(groups, c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)
        self.gn2 = nn.GroupNorm(groups, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.gn1(self.conv1(x)))
        return F.relu(x + self.gn2(self.conv2(y)))


class UpFuse(nn.Module):
    """2x transposed conv (k4 s2 p1: exactly doubles h, w), + lateral level if given, ResBlock."""

    def __init__(self, c_in: int, c_out: int, groups: int = 32):
        super().__init__()
        self.up = nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1)
        self.res = ResBlock(c_out, groups)

    def forward(self, x: torch.Tensor, lateral: torch.Tensor | None = None) -> torch.Tensor:
        x = self.up(x)
        if lateral is not None:
            assert lateral.shape == x.shape, (lateral.shape, x.shape)
            x = x + lateral
        return self.res(x)


class StridedDown(nn.Module):
    """relu(gn(conv3x3 stride 2)): a coarser level derived from the next finer one."""

    def __init__(self, c_in: int, c_out: int, groups: int = 16):
        super().__init__()
        self.conv = conv_gn(c_in, c_out, 3, groups, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(x))
