"""A painter's canvas for the demo scenes: label, base colour, depth and light sources.

Shapes are painted far to near; each call touches only the shape's bounding box.
Coordinates are pixels (x right, y down), float; depth is metres from the camera.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

SKY_DEPTH = 1.0e4


@dataclass
class Canvas:
    label: np.ndarray  # [H, W] uint8 train ids
    color: np.ndarray  # [H, W, 3] float32 base colour in 0..1
    depth: np.ndarray  # [H, W] float32 metres
    window: np.ndarray  # [H, W] bool: window panes (lit at night)
    lights: list = field(default_factory=list)  # (x, y, radius px, (r, g, b)) glows at night

    @classmethod
    def blank(cls, h: int, w: int) -> Canvas:
        return cls(
            label=np.full((h, w), 10, np.uint8),
            color=np.zeros((h, w, 3), np.float32),
            depth=np.full((h, w), SKY_DEPTH, np.float32),
            window=np.zeros((h, w), bool),
        )

    @property
    def shape(self) -> tuple[int, int]:
        return self.label.shape

    def box(self, x0: float, x1: float, y0: float, y1: float):
        """Clipped integer box -> (slices, yy [h,1], xx [1,w] pixel centres) or None when empty."""
        h, w = self.shape
        xi0, xi1 = max(math.floor(x0), 0), min(math.ceil(x1), w)
        yi0, yi1 = max(math.floor(y0), 0), min(math.ceil(y1), h)
        if xi1 <= xi0 or yi1 <= yi0:
            return None
        yy = np.arange(yi0, yi1, dtype=np.float32)[:, None] + 0.5
        xx = np.arange(xi0, xi1, dtype=np.float32)[None, :] + 0.5
        return (slice(yi0, yi1), slice(xi0, xi1)), yy, xx

    def fill(self, sl, mask, cls: int, color, depth: float) -> None:
        """Paint `mask` (bool [h, w] or None for the whole box) inside slices `sl`."""
        if mask is None:
            self.label[sl] = cls
            self.color[sl] = color
            self.depth[sl] = depth
            self.window[sl] = False
            return
        self.label[sl][mask] = cls
        self.color[sl][mask] = color
        self.depth[sl][mask] = depth
        self.window[sl][mask] = False

    def rect(self, x0, x1, y0, y1, cls, color, depth) -> None:
        # Thin shapes (poles far away) keep at least one pixel so they never vanish.
        if x1 - x0 < 1.0:
            c = 0.5 * (x0 + x1)
            x0, x1 = c - 0.5, c + 0.5
        b = self.box(x0, x1, y0, y1)
        if b is not None:
            self.fill(b[0], None, cls, color, depth)

    def ellipse(self, cx, cy, rx, ry, cls, color, depth, inner: float = 0.0) -> None:
        """Filled ellipse, or a ring when `inner` (fraction of the radius) > 0."""
        rx, ry = max(rx, 0.5), max(ry, 0.5)
        b = self.box(cx - rx, cx + rx, cy - ry, cy + ry)
        if b is None:
            return
        sl, yy, xx = b
        r2 = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2
        mask = r2 <= 1.0
        if inner > 0:
            mask &= r2 >= inner * inner
        self.fill(sl, mask, cls, color, depth)
