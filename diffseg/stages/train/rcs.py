"""Rare-class sampling (DAFormer's RCS, docs/design/method.md §8) over a cache's images and views.

    f_c  = pixels of class c / labelled pixels, over the cached labels (classstats.py)
    P(c) = softmax((1 - f_c) / T)          over the classes some image holds enough of

Each stream position draws a class c from P, then uniformly an image holding at least
`min_pixels` of c (summed over its cached views: in a crop cache the views are all we see of
the image), then one of that image's views holding >= min_pixels of c, else one holding any
of c, else any. The reference's 3000 px are for 512x512 crops: `default_min_pixels` scales
them by the crop's area. Every draw is a function of (seed, stream position), so a resumed
run and every DDP rank see the same samples (sampling.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from diffseg.core.errors import DiffsegError
from diffseg.stages.train.sampling import CLASS_DRAW, position_rng

REFERENCE_MIN_PIXELS = 3000  # DAFormer's rcs_min_pixels, for 512x512 crops
REFERENCE_CROP = 512 * 512


def default_min_pixels(resolution_wh: tuple[int, int]) -> int:
    """The reference's 3000 px scaled by this cache's crop area (at least 1)."""
    w, h = resolution_wh
    return max(1, round(REFERENCE_MIN_PIXELS * w * h / REFERENCE_CROP))


def class_probabilities(freq_K: np.ndarray, temperature: float, allowed_K: np.ndarray) -> np.ndarray:
    """P(c) = softmax((1 - f_c) / T) over the allowed classes (0 elsewhere); float64 [K]."""
    assert temperature > 0, temperature
    logits = np.where(allowed_K, (1.0 - freq_K) / temperature, -np.inf)
    logits = logits - logits[allowed_K].max()
    p = np.where(allowed_K, np.exp(logits), 0.0)
    return p / p.sum()


class RareClassSampler:
    """Stream position -> sample position, by rare-class sampling.

    counts_NK: pixels of each class in each sample (dataset positions); groups: the sample
    positions of each image (sampling.image_groups)."""

    def __init__(
        self,
        counts_NK: np.ndarray,
        groups: Sequence[Sequence[int]],
        *,
        temperature: float,
        min_pixels: int,
        seed: int,
    ):
        counts_NK = np.asarray(counts_NK, dtype=np.int64)
        self.seed = seed
        self.groups = [np.asarray(g, dtype=np.int64) for g in groups]
        per_image_GK = np.stack([counts_NK[g].sum(axis=0) for g in self.groups])
        self.freq_K = counts_NK.sum(axis=0) / max(1, int(counts_NK.sum()))
        holders_GK = per_image_GK >= min_pixels
        allowed_K = np.asarray(holders_GK.any(axis=0))
        if not allowed_K.any():
            raise DiffsegError(
                f"no image holds {min_pixels} pixels of any class: rare-class sampling has nothing to draw"
            )
        self.probs_K = class_probabilities(self.freq_K, temperature, allowed_K)
        self.classes = np.flatnonzero(allowed_K)
        self.images = {int(c): np.flatnonzero(holders_GK[:, c]) for c in self.classes}
        self.counts_NK = counts_NK
        self.min_pixels = min_pixels

    def draw(self, pos: int) -> tuple[int, int]:
        """(class, sample position) of stream position `pos`."""
        rng = position_rng(self.seed, pos, CLASS_DRAW)
        c = int(rng.choice(self.classes, p=self.probs_K[self.classes]))
        image = self.groups[int(self.images[c][rng.integers(len(self.images[c]))])]
        held = self.counts_NK[image, c]
        for pick in (held >= self.min_pixels, held > 0, np.ones_like(held, dtype=bool)):
            if pick.any():
                views = image[pick]
                return c, int(views[rng.integers(len(views))])
        raise AssertionError("unreachable: the last pick holds every view")

    def __getitem__(self, pos: int) -> int:
        return self.draw(pos)[1]
