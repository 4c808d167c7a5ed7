"""Appearance of the demo scenes: texture, lighting and the shifted target domains.

`source` (train/val): daylight. `night`: dark, blue cast, lit windows and glowing lights.
`fog`: low contrast, haze growing with depth (Koschmieder: I = J t + A (1 - t), t = e^(-beta z)).
Noise at two scales keeps classes from being separable by colour alone.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from diffseg.data.demo.canvas import Canvas

STYLES = ("source", "night", "fog")
_VEG, _TERRAIN, _SKY = 8, 9, 10
_ROUGH = np.full(256, 0.06, np.float32)  # grain strength per train id: leaves and grass are rough
_ROUGH[[_VEG, _TERRAIN, _SKY]] = (0.30, 0.15, 0.02)


@lru_cache(maxsize=16)
def _bilinear_index(n: int, cell: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    g = (np.arange(n, dtype=np.float32) + 0.5) / cell
    i0 = np.floor(g).astype(np.intp)
    return i0, i0 + 1, (g - i0).astype(np.float32)


def smooth_noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    """Bilinearly interpolated value noise [h, w], unit variance at the grid points."""
    grid = rng.standard_normal((h // cell + 2, w // cell + 2), dtype=np.float32)
    y0, y1, fy = _bilinear_index(h, cell)
    x0, x1, fx = _bilinear_index(w, cell)
    fy, fx = fy[:, None], fx[None, :]
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x1] * fx
    bot = grid[y1][:, x0] * (1 - fx) + grid[y1][:, x1] * fx
    return top * (1 - fy) + bot * fy


def _add_glows(img: np.ndarray, lights: list, gain: float, spread: float) -> None:
    h, w = img.shape[:2]
    for x, y, r, col in lights:
        s = min(r, 0.02 * w) * spread
        x0, x1 = max(int(x - 3 * s), 0), min(int(x + 3 * s) + 1, w)
        y0, y1 = max(int(y - 3 * s), 0), min(int(y + 3 * s) + 1, h)
        if x1 <= x0 or y1 <= y0:
            continue
        yy = np.arange(y0, y1, dtype=np.float32)[:, None] + 0.5 - y
        xx = np.arange(x0, x1, dtype=np.float32)[None, :] + 0.5 - x
        g = np.exp(-(xx * xx + yy * yy) / (2 * s * s))
        img[y0:y1, x0:x1] += gain * g[..., None] * np.asarray(col, np.float32)


def render(cv: Canvas, rng: np.random.Generator, style: str) -> np.ndarray:
    """Canvas -> uint8 [H, W, 3] RGB picture in the given style."""
    assert style in STYLES, style
    h, w = cv.shape
    # 1. texture: low-frequency blotches, fine grain, stronger on vegetation and terrain
    low = smooth_noise(rng, h, w, 12)
    grain = rng.standard_normal((h, w, 3), dtype=np.float32)
    img = cv.color * (1 + 0.12 * low + _ROUGH[cv.label] * grain[..., 0])[..., None]
    img += 0.03 * grain
    # 2. domain
    if style == "source":
        img *= rng.uniform(0.85, 1.1)
    elif style == "night":
        img *= np.float32(rng.uniform(0.12, 0.22)) * np.array([0.7, 0.8, 1.25], np.float32)
        img[cv.label == _SKY] = np.array([0.02, 0.03, 0.07], np.float32)
        lit = cv.window & (smooth_noise(rng, h, w, 4) > 0.3)
        img[lit] = np.array([0.75, 0.6, 0.3], np.float32) * rng.uniform(0.6, 1.0)
        _add_glows(img, cv.lights, gain=rng.uniform(0.5, 0.8), spread=1.5)
        img += 0.025 * grain[:, ::-1]  # sensor noise (the grain mirrored: no second draw)
    else:
        beta = rng.uniform(0.03, 0.06)
        t = np.exp(-beta * np.minimum(cv.depth, 500.0))[..., None]
        air = np.float32(rng.uniform(0.72, 0.86)) * np.array([0.98, 1.0, 1.03], np.float32)
        img = img * t + air * (1 - t)
        img = 0.7 * img + 0.15
    np.clip(img, 0, 1, out=img)
    img *= 255
    img += 0.5
    return img.astype(np.uint8)
