"""Layer names and geometry: which U-Net layer a name means, and the shape of its features.

Names: "up{i}.res{j}" (conv2 output of up_blocks[i].resnets[j]), "up{i}.blk{j}" (output tokens
of up_blocks[i].attentions[j].transformer_blocks[0]), "up{i}.xattn{j}" (cross-attention maps of
that block's attn2, one per active class). `parse_layer` is the one reader of these names.

Geometry comes from the U-Net config alone (`layer_specs`), so the extractor (from
`unet.config`), the dry run (from unet/config.json), synthetic caches and benchmarks agree:
up block i has channels reversed(block_out_channels)[i] and stride vae_stride * 2**(n-1-i)
(every up block but the last upsamples by 2).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from diffseg.core.errors import DiffsegError

KINDS = ("res", "blk", "xattn")
N_UP_BLOCKS = 4  # SD 2.1 and tiny: up_blocks 0..3, up_blocks[0] without attention
N_PER_BLOCK = 3  # layers_per_block = 2 -> 3 resnets / transformers per up block
VAE_STRIDE = 8  # image pixels per latent pixel: SD's VAE (and tiny's) downsample 3 times
_LAYER_RE = re.compile(r"^up(\d+)\.(res|blk|xattn)(\d+)$")


@dataclass(frozen=True, kw_only=True)
class LayerSpec:
    """One tapped layer: what it is and its geometry at the extraction resolution."""

    kind: str  # "res" | "blk" | "xattn"
    stride: int  # image pixels per feature pixel
    channels: int  # C (xattn: number of active classes)
    size: tuple[int, int]  # (h, w) feature map size

    def __post_init__(self):
        object.__setattr__(self, "size", tuple(int(v) for v in self.size))

    def to_dict(self) -> dict:
        return {"kind": self.kind, "stride": self.stride, "channels": self.channels, "size": list(self.size)}

    @classmethod
    def from_dict(cls, d: Mapping) -> LayerSpec:
        unknown = sorted(set(d) - {"kind", "stride", "channels", "size"})
        if unknown:
            raise DiffsegError(f"unknown LayerSpec fields {unknown}")
        return cls(kind=str(d["kind"]), stride=int(d["stride"]), channels=int(d["channels"]), size=tuple(d["size"]))


def parse_layer(name: str) -> tuple[int, str, int]:
    """'up2.res1' -> (2, 'res', 1). Raises DiffsegError for unknown names."""
    m = _LAYER_RE.match(str(name))
    if m is None:
        raise DiffsegError(f"unknown layer name {name!r} (expected up<i>.res<j>|blk<j>|xattn<j>)")
    i, kind, j = int(m.group(1)), m.group(2), int(m.group(3))
    if not (0 <= i < N_UP_BLOCKS and 0 <= j < N_PER_BLOCK):
        raise DiffsegError(f"layer {name!r} out of range (up0-up{N_UP_BLOCKS - 1}, j 0-{N_PER_BLOCK - 1})")
    if i == 0 and kind != "res":
        raise DiffsegError(f"layer {name!r}: up_blocks[0] has no attention, only res layers")
    return i, kind, j


def layer_kind(name: str) -> str:
    """'up3.xattn1' -> 'xattn'."""
    return parse_layer(name)[1]


def layer_name(i: int, kind: str, j: int) -> str:
    return f"up{i}.{kind}{j}"


def layer_specs(
    unet_config: Mapping,
    layers: Iterable[str],
    resolution: tuple[int, int],
    n_classes: int,
    vae_stride: int = VAE_STRIDE,
) -> dict[str, LayerSpec]:
    """{layer: LayerSpec} at resolution (W, H) from a UNet2DConditionModel config (the keys
    block_out_channels, up_block_types, layers_per_block); xattn layers have n_classes channels."""
    chans = tuple(unet_config["block_out_channels"])[::-1]
    up_types = tuple(unet_config["up_block_types"])
    per_block = int(unet_config["layers_per_block"])
    n = len(chans)
    W, H = resolution
    out = {}
    for name in layers:
        i, kind, j = parse_layer(name)
        if i >= n or j > per_block:
            raise DiffsegError(
                f"layer {name} does not exist in this U-Net ({n} up blocks, {per_block + 1} layers each)"
            )
        if kind != "res" and not up_types[i].startswith("CrossAttn"):
            raise DiffsegError(f"layer {name}: up_blocks[{i}] ({up_types[i]}) has no attention")
        stride = vae_stride * 2 ** (n - 1 - i)
        channels = n_classes if kind == "xattn" else chans[i]
        out[name] = LayerSpec(kind=kind, stride=stride, channels=channels, size=(H // stride, W // stride))
    return out
