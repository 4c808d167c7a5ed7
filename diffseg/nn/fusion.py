"""DIFF fusion block (docs/design/method.md §6): cached diffusion features -> a 4-level pyramid.

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
        self.folded: dict[str, int] = {}  # layer -> k: inputs are coefficients on a fixed basis (fold)

    def fold(self, bases: Mapping[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Take layer inputs as coefficients c [B, S, k, h, w] of x = basis @ c + mean (basis [C, k],
        mean [C]; a channel projection such as the cache's pca codec): the basis is folded into the
        reduction's first 1x1 maps, which is mathematically the same as expanding x first. The
        trainable weights keep their shapes (a checkpoint reads features either way); the bases are
        buffers that are not saved. A folded layer still takes features: its input's channel count
        (k < C) says which it got, so evaluation on decoded features runs the same model."""
        for layer, (basis, mean) in bases.items():
            if layer not in self.channels:
                raise DiffsegError(f"fold: the fusion block has no layer {layer!r}")
            C = self.channels[layer]
            if basis.shape[0] != C or basis.shape[1] >= C or mean.shape != (C,):
                raise DiffsegError(f"fold: basis {list(basis.shape)} does not fit layer {layer!r} ({C} channels)")
            self.register_buffer(f"basis_{layer.replace('.', '_')}", basis.float(), persistent=False)
            self.register_buffer(f"mean_{layer.replace('.', '_')}", mean.float(), persistent=False)
            self.folded[layer] = int(basis.shape[1])

    def _projection(self, s: int, feats: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(P, m) mapping stride s's concatenated inputs back to features, or None when none is folded."""
        layers = self.layers_at[s]
        coef = {layer for layer in layers if layer in self.folded and feats[layer].shape[2] == self.folded[layer]}
        if not coef:
            return None
        blocks, means = [], []
        dev = next(self.reduce[str(s)].parameters()).device
        for layer in layers:
            for _ in range(self.n_steps):
                if layer in coef:
                    blocks.append(getattr(self, f"basis_{layer.replace('.', '_')}"))
                    means.append(getattr(self, f"mean_{layer.replace('.', '_')}"))
                else:
                    blocks.append(torch.eye(self.channels[layer], device=dev))
                    means.append(torch.zeros(self.channels[layer], device=dev))
        return torch.block_diag(*blocks), torch.cat(means)

    def forward(self, feats: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
        self._check(feats)
        # 1. per-stride concatenation and reduction; missing coarser strides derived bottom-up
        levels: dict[int, torch.Tensor] = {}
        for s in STRIDES:
            if str(s) in self.reduce:
                x_BChw = torch.cat([feats[layer].flatten(1, 2) for layer in self.layers_at[s]], dim=1)
                levels[s] = self.norm[str(s)](self.reduce[str(s)](x_BChw, self._projection(s, feats)))
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
                c = self.channels[layer]
                if f.dim() != 5 or f.shape[1] != self.n_steps or f.shape[2] not in (c, self.folded.get(layer, c)):
                    k = f" (or {self.folded[layer]} coefficients)" if layer in self.folded else ""
                    raise DiffsegError(
                        f"layer {layer!r}: expected [B, {self.n_steps}, {c}, h, w]{k}, got {list(f.shape)}"
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
