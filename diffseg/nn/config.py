"""Width settings of the trainable part (docs/design/method.md §6): the fusion block and the DAFormer head.

`reference` follows the paper's code: reductions to 2048/1024/512 channels at strides
32/16/8 through bottlenecks of 512/256/128, a 256-channel 1/4 level, a 256-wide head.
`light` divides the fusion widths by 8 (GroupNorm group counts stay divisors) and
uses a 64-wide head: a CPU-sized model for tests, demos and ablations.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from diffseg.core.errors import DiffsegError
from diffseg.core.records import from_record

STRIDES = (8, 16, 32)  # strides the fusion block consumes, fine to coarse
FUSION_PRESETS = ("reference", "light")  # fusion_preset's names


@dataclass(frozen=True, kw_only=True)
class FusionConfig:
    name: str  # preset name, recorded with the run
    widths: tuple[int, int, int]  # reduced channels at strides 8, 16, 32
    bottlenecks: tuple[int, int, int]  # bottleneck channels at strides 8, 16, 32
    width_x4: int  # channels of the decoded 1/4 level
    reduce_groups: int = 16  # GroupNorm groups inside the reduction blocks
    decoder_groups: int = 32  # GroupNorm groups on levels and in the decoder
    head_channels: int = 256  # DAFormer embedding / ASPP / fuse width
    dropout: float = 0.1  # channel dropout before the classifier

    def __post_init__(self):
        for w, b in zip(self.widths, self.bottlenecks):
            if w % self.decoder_groups or b % self.reduce_groups or w % self.reduce_groups:
                raise DiffsegError(
                    f"fusion widths {self.widths}/bottlenecks {self.bottlenecks} must be multiples of "
                    f"the GroupNorm groups ({self.reduce_groups}, {self.decoder_groups})"
                )
        if self.width_x4 % self.decoder_groups:
            raise DiffsegError(f"width_x4 {self.width_x4} is not a multiple of {self.decoder_groups} groups")
        if not 0.0 <= self.dropout < 1.0:
            raise DiffsegError(f"dropout {self.dropout} must be in [0, 1)")

    def width(self, stride: int) -> int:
        return self.widths[STRIDES.index(stride)]

    def bottleneck(self, stride: int) -> int:
        return self.bottlenecks[STRIDES.index(stride)]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> FusionConfig:
        return from_record(cls, d, tuples=("widths", "bottlenecks"))


def fusion_preset(name: str) -> FusionConfig:
    """`reference` (paper widths, ~300 M parameters with the SD 2.1 reference layers) or `light`."""
    if name == "reference":
        return FusionConfig(
            name="reference", widths=(512, 1024, 2048), bottlenecks=(128, 256, 512), width_x4=256, head_channels=256
        )
    if name == "light":
        return FusionConfig(
            name="light", widths=(64, 128, 256), bottlenecks=(16, 32, 64), width_x4=32, head_channels=64
        )
    raise DiffsegError(f"unknown fusion setting {name!r}: expected {' or '.join(map(repr, FUSION_PRESETS))}")
