"""The built-in `demo` dataset: procedurally generated street scenes in the 19-class space.

No files: sample i of split s is rendered from `np.random.default_rng((seed, s, i))`, so
it is the same on every machine. `train` and `val` share the daylight source style;
`val-night` and `val-fog` are shifted target domains for domain generalisation. `dev`
(daylight, its own split index, so its own scenes) is for tuning: choices such as the
demo's head recipe, iterations, or the steps and layers read from `mini` are made on `dev`,
never on `val`, `val-night` or `val-fog`, which only report. It is in the source style on
purpose: domain generalisation may not look at the target domains to choose anything.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from diffseg.core.classes import CITYSCAPES
from diffseg.data.base import Sample
from diffseg.data.demo.scene import draw_scene
from diffseg.data.demo.style import render
from diffseg.data.splits import check_split, restrict

# The position in DEMO_SPLITS is the split's word in the sample seed: append, never reorder.
DEMO_SPLITS = ("train", "val", "val-night", "val-fog", "dev")
DEMO_COUNTS = {"train": 48, "val": 16, "val-night": 16, "val-fog": 16, "dev": 32}
_STYLE = {"train": "source", "val": "source", "val-night": "night", "val-fog": "fog", "dev": "source"}


def render_sample(
    seed: int, split: str, index: int, size: tuple[int, int] = (128, 128)
) -> tuple[np.ndarray, np.ndarray]:
    """(image uint8 [H, W, 3], label uint8 [H, W]) of one demo sample; `size` is (W, H)."""
    w, h = size
    rng = np.random.default_rng((seed, DEMO_SPLITS.index(split), index))
    canvas = draw_scene(rng, h, w)
    return render(canvas, rng, _STYLE[split]), canvas.label


class DemoDataset:
    """Same interface as FileDataset; `root` is None."""

    classes = CITYSCAPES  # the label space its train ids index

    def __init__(
        self,
        split: str = "train",
        size: tuple[int, int] = (128, 128),
        count: int | None = None,
        seed: int = 0,
        split_file: Path | str | None = None,
    ):
        check_split("demo", split, DEMO_SPLITS)
        w, h = size
        assert w > 0 and h > 0, size
        self.name, self.split, self.root = "demo", split, None
        self.size, self.seed = (int(w), int(h)), int(seed)
        n = DEMO_COUNTS[split] if count is None else int(count)
        indices = list(range(n))
        indices = restrict(indices, self._id, split_file, "demo", split)
        self._indices = indices
        self.ids = [self._id(i) for i in indices]
        self.info = {"size": list(self.size), "count": n, "seed": self.seed}

    def _id(self, index: int) -> str:
        return f"{self.split}/{index:04d}"

    def __len__(self) -> int:
        return len(self._indices)

    def __repr__(self) -> str:
        return f"DemoDataset(split={self.split!r}, n={len(self)}, size={self.size})"

    def load(self, i: int) -> Sample:
        image, label = render_sample(self.seed, self.split, self._indices[i], self.size)
        return Sample(id=self.ids[i], image=image, label=label)

    def check(self, i: int) -> list[str]:
        self.load(i)  # generated data cannot be corrupt; rendering is still exercised
        return []

    def label_size(self, i: int) -> tuple[int, int]:
        return self.size[1], self.size[0]
