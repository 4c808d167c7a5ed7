"""`diffseg pretrain`: train the built-in `mini` model on unlabelled images of the demo world.

The training itself is diffseg/pretrain/; this stage only
hands it the demo world's unlabelled renderer (diffseg/data/demo/pretrain.py: five styles,
seeds disjoint from every evaluation split), since pretrain/ takes its images from the caller.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from diffseg.data.demo.pretrain import PRETRAIN_STYLES, render_pretrain
from diffseg.pretrain.config import PretrainConfig
from diffseg.pretrain.run import pretrain


class DemoWorld:
    """The demo world as a pre-training ImageSource."""

    styles: tuple[str, ...] = tuple(PRETRAIN_STYLES)

    def render(
        self, seed: int, index: int, size: tuple[int, int], zoom: float = 1.0, variety: float = 0.0
    ) -> tuple[np.ndarray, np.ndarray, str]:
        return render_pretrain(seed, index, size, zoom, variety)


def main(cfg: PretrainConfig, out: str | os.PathLike, echo: bool = True) -> Path:
    """Run (or resume) every phase; returns the exported model directory `out/model`."""
    return pretrain(cfg, out, DemoWorld(), echo=echo)
