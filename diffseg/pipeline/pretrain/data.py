"""The pre-training image set: rendered once, kept as one .npz beside the checkpoints.

Images are a pure function of (seed, index, size) (diffseg.data.demo_pretrain), so the file
is only a cache: a missing or mismatching one is rendered again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diffseg.core.classes import NUM_CLASSES
from diffseg.data.demo_pretrain import PRETRAIN_STYLES, render_pretrain
from diffseg.pipeline.pretrain.captions import present_classes


@dataclass(frozen=True)
class ImageSet:
    images: np.ndarray  # [N, H, W, 3] uint8
    present: np.ndarray  # [N, NUM_CLASSES] bool: the classes a caption may name
    styles: np.ndarray  # [N] int index into PRETRAIN_STYLES

    def classes(self, i: int) -> tuple[int, ...]:
        return tuple(int(c) for c in np.nonzero(self.present[i])[0])

    def style(self, i: int) -> str:
        return PRETRAIN_STYLES[int(self.styles[i])]


def render_set(seed: int, n: int, size: int) -> ImageSet:
    images = np.empty((n, size, size, 3), np.uint8)
    present = np.zeros((n, NUM_CLASSES), bool)
    styles = np.empty(n, np.int64)
    for i in range(n):
        images[i], label, style = render_pretrain(seed, i, (size, size))
        present[i, list(present_classes(label))] = True
        styles[i] = PRETRAIN_STYLES.index(style)
    return ImageSet(images, present, styles)


def load_or_render(path: Path, seed: int, n: int, size: int) -> ImageSet:
    key = np.array([seed, n, size])
    if path.is_file():
        with np.load(path) as f:
            if np.array_equal(f["key"], key):
                return ImageSet(f["images"], f["present"], f["styles"])
    data = render_set(seed, n, size)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, key=key, images=data.images, present=data.present, styles=data.styles)
    tmp.replace(path)
    return data
