"""mmseg's `PhotoMetricDistortion` on a training view (docs/design/method.md §8), as a pure function of a draw.

The reference pipeline applies it after the crop and flip: brightness, then contrast either
before or after the HSV operations (one coin), saturation, hue; each operation with probability
0.5. mmseg's formulas, on uint8 images:
- brightness: convert(img, beta=U(-32, 32)); contrast: convert(img, alpha=U(0.5, 1.5)), where
  convert(img, alpha, beta) = uint8(clip(float32(img) * alpha + beta, 0, 255)) (truncation);
- saturation: in OpenCV's 8-bit HSV, S = convert(S, alpha=U(0.5, 1.5)), back to colour;
- hue: in OpenCV's 8-bit HSV (H in 0..179), H = (H + randint(-18, 18)) % 180 (numpy's randint:
  the upper bound excluded), back to colour.
mmseg works on BGR images and diffseg on RGB; the HSV values are the same either way.

`draw(gen)` takes its numbers in mmseg's order from a torch.Generator seeded by the caller
(seed, sample id, view); `distort(image, d)` applies a draw. Suffix: HW3 = [H, W, RGB] uint8.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

BRIGHTNESS_DELTA = 32
CONTRAST_RANGE = (0.5, 1.5)
SATURATION_RANGE = (0.5, 1.5)
HUE_DELTA = 18
PROBABILITY = 0.5  # of each operation


def rule() -> dict:
    """The parameters as the cache's views rule records them."""
    return {
        "kind": "mmseg.PhotoMetricDistortion",
        "brightness_delta": BRIGHTNESS_DELTA,
        "contrast_range": list(CONTRAST_RANGE),
        "saturation_range": list(SATURATION_RANGE),
        "hue_delta": HUE_DELTA,
        "probability": PROBABILITY,
        "order": "brightness, contrast (coin: here or last), saturation, hue",
    }


@dataclass(frozen=True, kw_only=True)
class Draw:
    """One distortion: None = that operation not applied."""

    brightness: float | None = None  # beta
    contrast: float | None = None  # alpha
    contrast_first: bool = True  # mmseg's mode == 1: contrast before the HSV operations
    saturation: float | None = None  # alpha on S
    hue: int | None = None  # added to H (mod 180)


def _coin(gen: torch.Generator) -> bool:
    return bool(torch.randint(0, 2, (1,), generator=gen))


def _uniform(lo: float, hi: float, gen: torch.Generator) -> float:
    return lo + (hi - lo) * float(torch.rand((1,), generator=gen, dtype=torch.float64))


def draw(gen: torch.Generator) -> Draw:
    """mmseg's random choices, in its order: brightness, mode, [contrast], saturation, hue, [contrast]."""
    brightness = _uniform(-BRIGHTNESS_DELTA, BRIGHTNESS_DELTA, gen) if _coin(gen) else None
    contrast_first = _coin(gen)
    contrast = None
    if contrast_first and _coin(gen):
        contrast = _uniform(*CONTRAST_RANGE, gen)
    saturation = _uniform(*SATURATION_RANGE, gen) if _coin(gen) else None
    hue = int(torch.randint(-HUE_DELTA, HUE_DELTA, (1,), generator=gen)) if _coin(gen) else None
    if not contrast_first and _coin(gen):
        contrast = _uniform(*CONTRAST_RANGE, gen)
    return Draw(brightness=brightness, contrast=contrast, contrast_first=contrast_first, saturation=saturation, hue=hue)


def convert(img: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
    """mmseg's convert: float32 affine, clip to 0..255, truncate to uint8."""
    return np.clip(img.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)


def distort(image_HW3: np.ndarray, d: Draw) -> np.ndarray:
    """The image after the draw's operations, in mmseg's order (a new uint8 array)."""
    img = np.ascontiguousarray(image_HW3)
    if d.brightness is not None:
        img = convert(img, beta=d.brightness)
    if d.contrast_first and d.contrast is not None:
        img = convert(img, alpha=d.contrast)
    if d.saturation is not None:
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
        hsv[:, :, 1] = convert(hsv[:, :, 1], alpha=d.saturation)
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if d.hue is not None:
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
        hsv[:, :, 0] = (hsv[:, :, 0].astype(int) + d.hue) % 180
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if not d.contrast_first and d.contrast is not None:
        img = convert(img, alpha=d.contrast)
    return img if img is not image_HW3 else img.copy()
