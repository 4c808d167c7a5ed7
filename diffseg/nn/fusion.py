"""DIFF fusion block (METHOD.md §6): cached diffusion features -> a 4-level pyramid.

Per stride s in {8, 16, 32}: the maps of all steps and layers at s are concatenated on
channels ([B, S, C, h, w] -> [B, S*C, h, w], layers in spec order) and reduced by one
`Bottleneck` to widths[s]. Every level then gets GroupNorm(32), and a top-down decoder
(transposed conv 2x + add + ResBlock) runs 1/32 -> 1/16 -> 1/8 -> 1/4. Output, fine to
coarse: [x4 (width_x4 @ 1/4), x8, x16, x32] where x8..x32 are the normalised reductions
(as in the reference code, the decoder feeds only the 1/4 level).

Missing strides (ablations select layer subsets; any non-empty subset works):
- a missing stride with a finer level available (present or itself derived) is derived
  bottom-up from the next finer level by a `StridedDown` (3x3 stride-2 conv, GN, ReLU);
- a missing stride with no finer level (stride 8, or 8 and 16 when only coarser layers
  are selected) is the decoder's upsampled output there, without a lateral add.
Up block 0 (stride 64) is refused: the reference fusion discards it.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from torch.nn import init

from diffseg.core.errors import DiffsegError
from diffseg.nn.blocks import Bottleneck, StridedDown, UpFuse
from diffseg.nn.config import STRIDES, FusionConfig
from diffseg.nn.specs import channels_per_stride, spec_field


class DiffFusion(nn.Module):
    """feats {layer: [B, S, C, h, w]} -> pyramid [x4, x8, x16, x32] ([B, C_l, H/s, W/s])."""

    def __init__(self, layer_specs: Mapping, n_steps: int, cfg: FusionConfig):
        super().__init__()
        self.cfg = cfg
        self.n_steps = n_steps
        self.layers_at = channels_per_stride(layer_specs, n_steps)  # {stride: [layer]}
        self.channels = {layer: spec_field(layer, spec, "channels") for layer, spec in layer_specs.items()}
        self.reduce = nn.ModuleDict()  # str(stride) -> Bottleneck, for present strides
        self.derive = nn.ModuleDict()  # str(stride) -> StridedDown, for missing strides with a finer level
        finer = None
        for s in STRIDES:
            if s in self.layers_at:
                c_in = n_steps * sum(self.channels[layer] for layer in self.layers_at[s])
                self.reduce[str(s)] = Bottleneck(c_in, cfg.bottleneck(s), cfg.width(s), cfg.reduce_groups)
                finer = s
            elif finer is not None:
                self.derive[str(s)] = StridedDown(cfg.width(finer), cfg.width(s), cfg.reduce_groups)
                finer = s
        self.norm = nn.ModuleDict(
            {  # only levels that exist before the decoder: no unused parameters
                k: nn.GroupNorm(cfg.decoder_groups, cfg.width(int(k))) for k in (*self.reduce, *self.derive)
            }
        )
        self.up = nn.ModuleDict(
            {  # "32" upsamples 1/32 -> 1/16, ..., "8": 1/8 -> 1/4
                "32": UpFuse(cfg.width(32), cfg.width(16), cfg.decoder_groups),
                "16": UpFuse(cfg.width(16), cfg.width(8), cfg.decoder_groups),
                "8": UpFuse(cfg.width(8), cfg.width_x4, cfg.decoder_groups),
            }
        )
        self.out_channels = (cfg.width_x4, cfg.width(8), cfg.width(16), cfg.width(32))
        self.apply(_init_weights)

    def forward(self, feats: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
        self._check(feats)
        # 1. per-stride concatenation and reduction; missing coarser strides derived bottom-up
        levels: dict[int, torch.Tensor] = {}
        for s in STRIDES:
            if str(s) in self.reduce:
                x_BChw = torch.cat([feats[layer].flatten(1, 2) for layer in self.layers_at[s]], dim=1)
                levels[s] = self.norm[str(s)](self.reduce[str(s)](x_BChw))
            elif str(s) in self.derive:
                levels[s] = self.norm[str(s)](self.derive[str(s)](levels[s // 2]))
        # 2. top-down decoder; a missing finest level is the decoder output at that stride
        x = levels[32]
        for s in (32, 16):
            x = self.up[str(s)](x, levels.get(s // 2))
            levels.setdefault(s // 2, x)
        x4 = self.up["8"](x)
        return [x4, levels[8], levels[16], levels[32]]

    def _check(self, feats: Mapping[str, torch.Tensor]) -> None:
        expected = set(self.channels)
        if set(feats) != expected:
            raise DiffsegError(f"fusion block built for layers {sorted(expected)}, got {sorted(feats)}")
        sizes = set()
        for s, layers in self.layers_at.items():
            for layer in layers:
                f = feats[layer]
                if f.dim() != 5 or f.shape[1] != self.n_steps or f.shape[2] != self.channels[layer]:
                    raise DiffsegError(
                        f"layer {layer!r}: expected [B, {self.n_steps}, "
                        f"{self.channels[layer]}, h, w], got {list(f.shape)}"
                    )
                sizes.add((f.shape[3] * s, f.shape[4] * s))
        if len(sizes) != 1:
            raise DiffsegError(f"layers imply different image sizes (h*stride, w*stride): {sorted(sizes)}")
        ((H, W),) = sizes
        if H % 32 or W % 32:
            raise DiffsegError(f"image size {H}x{W} implied by the features is not a multiple of 32")


def _init_weights(m: nn.Module) -> None:
    """Reference-code init: Kaiming (fan_out, relu) convs, zero biases, unit norms."""
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if m.bias is not None:
            init.zeros_(m.bias)
    elif isinstance(m, nn.GroupNorm):
        init.ones_(m.weight)
        init.zeros_(m.bias)
