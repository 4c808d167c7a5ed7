"""The pre-training image set: rendered once, kept as one .npz beside the checkpoints.

Images come from an `ImageSource` the caller passes in (the demo world's unlabelled renderer,
diffseg.data.demo.pretrain, given by stages/pretrain.py: pretrain/ takes any source, it does not import data/).
They are a pure function of (seed, index, size), so the file is only a cache: a missing or
mismatching one is rendered again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from diffseg.core.atomic import atomic_target
from diffseg.core.classes import NUM_CLASSES, present_classes
from diffseg.pretrain.captions import MIN_FRACTION, dominant_colors
from diffseg.pretrain.config import PretrainConfig


class ImageSource(Protocol):
    """Unlabelled training images: `render(seed, index, (W, H), zoom, variety)` -> (image uint8 [H, W, 3], label
    uint8 [H, W] (only to caption the classes present), style name); `zoom` > 1 lets the source
    show close-ups (windows of scenes rendered up to `zoom` times larger), `variety` > 0 scenes that
    leave kinds of things out (each with that probability); `styles` names every style."""

    styles: tuple[str, ...]

    def render(
        self, seed: int, index: int, size: tuple[int, int], zoom: float = 1.0, variety: float = 0.0
    ) -> tuple[np.ndarray, np.ndarray, str]: ...


@dataclass(frozen=True)
class ImageSet:
    images: np.ndarray  # [N, H, W, 3] uint8
    present: np.ndarray  # [N, NUM_CLASSES] bool: the classes a caption may name
    colors: np.ndarray  # [N, NUM_CLASSES] int8: each class's colour word (captions.dominant_colors)
    styles: np.ndarray  # [N] int index into style_names
    style_names: tuple[str, ...]

    def classes(self, i: int) -> tuple[int, ...]:
        return tuple(int(c) for c in np.nonzero(self.present[i])[0])

    def style(self, i: int) -> str:
        return self.style_names[int(self.styles[i])]


def render_set(source: ImageSource, cfg: PretrainConfig) -> ImageSet:
    n, size = cfg.images, cfg.size
    images = np.empty((n, size, size, 3), np.uint8)
    present = np.zeros((n, NUM_CLASSES), bool)
    colors = np.empty((n, NUM_CLASSES), np.int8)
    styles = np.empty(n, np.int64)
    for i in range(n):
        images[i], label, style = source.render(cfg.seed, i, (size, size), cfg.zoom, cfg.variety)
        present[i, list(present_classes(label, MIN_FRACTION))] = True
        colors[i] = dominant_colors(images[i], label)
        styles[i] = source.styles.index(style)
    return ImageSet(images, present, colors, styles, tuple(source.styles))


def load_or_render(path: Path, source: ImageSource, cfg: PretrainConfig) -> ImageSet:
    """The image set of `cfg` (its seed, images, size, zoom and variety), from `path` when it holds it."""
    key = np.array([cfg.seed, cfg.images, cfg.size, cfg.zoom, cfg.variety], np.float64)
    if path.is_file():
        with np.load(path) as f:
            if np.array_equal(f["key"], key) and "colors" in f:  # (files from before colour words: render again)
                return ImageSet(f["images"], f["present"], f["colors"], f["styles"], tuple(source.styles))
    data = render_set(source, cfg)
    with atomic_target(path) as tmp, open(tmp, "wb") as f:  # a file object: np.savez would add ".npz" to a name
        np.savez(f, key=key, images=data.images, present=data.present, colors=data.colors, styles=data.styles)
    return data
