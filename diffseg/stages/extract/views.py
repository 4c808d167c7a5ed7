"""What stage one feeds the VAE for one sample (docs/design/method.md §8 "A cache freezes augmentation").

- training view: the image fitted inside `scale` (image and label resized as mmcv does, see
  `resize_image`), then one seeded crop of `resolution` and a seeded horizontal flip; the crop is
  redrawn (up to CAT_REDRAWS times, mmseg's `cat_max_ratio`) while one class covers
  CAT_MAX_RATIO or more of its labelled pixels (docs/design/method.md §8), then mmseg's photometric
  distortion (photometric.py) when a generator for it is given;
- evaluation view: the whole image resized to `resolution` (label nearest at that size);
  the label at its original size is kept separately by the caller. `eval_image` is its image
  half, which `diffseg predict` feeds the VAE too (no train/inference skew).

Every resize of a network input goes through `resize_image` / `resize_label` (OpenCV, as mmcv's
`imresize`: INTER_LINEAR for images, no antialiasing; INTER_NEAREST for labels, as mmseg resizes
segmentation maps). Pure functions on uint8 arrays; the crop randomness is a torch.Generator passed in, seeded
by the caller from (seed, sample id, view) so a view never depends on run order.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from diffseg.core.classes import IGNORE
from diffseg.core.errors import DataError
from diffseg.stages.extract import photometric

CAT_MAX_RATIO = 0.75  # largest single-class share of a training crop's labelled pixels (below it)
CAT_REDRAWS = 10  # redraws at most; the last draw is kept when none passes
IMAGE_INTERPOLATION = "cv2.INTER_LINEAR"  # as recorded in the views rule
LABEL_INTERPOLATION = "cv2.INTER_NEAREST"


def fit_inside(size_wh: tuple[int, int], box_wh: tuple[int, int]) -> tuple[int, int]:
    """The largest size with the aspect of `size_wh` that fits inside `box_wh` (rounded)."""
    w, h = size_wh
    f = min(box_wh[0] / w, box_wh[1] / h)
    return (max(1, round(w * f)), max(1, round(h * f)))


def resize_image(image_HW3: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    """mmcv's imresize: OpenCV bilinear (INTER_LINEAR, no antialiasing when shrinking, unlike
    Pillow); same size -> unchanged. The one resize of every image the VAE sees."""
    return _resize(image_HW3, size_wh, cv2.INTER_LINEAR)


def resize_label(label_HW: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    """OpenCV nearest (train ids stay train ids); same size -> unchanged."""
    return _resize(label_HW, size_wh, cv2.INTER_NEAREST)


def _resize(array: np.ndarray, size_wh: tuple[int, int], interpolation: int) -> np.ndarray:
    size_wh = (int(size_wh[0]), int(size_wh[1]))
    if array.shape[1::-1] == size_wh:
        return array
    return cv2.resize(np.ascontiguousarray(array), size_wh, interpolation=interpolation)


def resize_pair(image_HW3: np.ndarray, label_HW: np.ndarray, size_wh: tuple[int, int]):
    """An image and its label (same size) resized together: image bilinear, label nearest."""
    return resize_image(image_HW3, size_wh), resize_label(label_HW, size_wh)


def crop_box(
    size_wh: tuple[int, int],
    crop_wh: tuple[int, int],
    gen: torch.Generator,
    label_HW: np.ndarray | None = None,
    cat_max_ratio: float = CAT_MAX_RATIO,
):
    """(x, y, flip) drawn from `gen`: offsets uniform over valid positions, then the flip.

    With `label_HW` (the label at `size_wh`) and cat_max_ratio < 1, mmseg's RandomCrop rule:
    while the crop's labels (255 ignored) are a single class, or its largest class covers
    `cat_max_ratio` or more of them, draw (x, y) again, at most CAT_REDRAWS times; the last
    draw is kept even if it fails. A first draw that passes consumes the same numbers as
    without the rule (x, y, flip)."""
    x, y = _offsets(size_wh, crop_wh, gen)
    if label_HW is not None and cat_max_ratio < 1:
        for _ in range(CAT_REDRAWS):
            if _mixed(label_HW[y : y + crop_wh[1], x : x + crop_wh[0]], cat_max_ratio):
                break
            x, y = _offsets(size_wh, crop_wh, gen)
    flip = bool(torch.randint(0, 2, (1,), generator=gen))
    return x, y, flip


def _offsets(size_wh, crop_wh, gen: torch.Generator) -> tuple[int, int]:
    x = int(torch.randint(0, size_wh[0] - crop_wh[0] + 1, (1,), generator=gen))
    y = int(torch.randint(0, size_wh[1] - crop_wh[1] + 1, (1,), generator=gen))
    return x, y


def _mixed(label_hw: np.ndarray, cat_max_ratio: float) -> bool:
    """mmseg: more than one labelled class and the largest one's share below `cat_max_ratio`."""
    counts = np.bincount(label_hw[label_hw != IGNORE].ravel(), minlength=1)
    counts = counts[counts > 0]
    return len(counts) > 1 and counts.max() / counts.sum() < cat_max_ratio


def train_view(
    sample_id: str,
    image_HW3: np.ndarray,
    label_HW: np.ndarray,
    scale_wh,
    crop_wh,
    gen: torch.Generator,
    photometric_gen: torch.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One seeded crop (and flip) of the image fitted inside `scale_wh`, then a photometric
    distortion drawn from `photometric_gen` (None: none) -> ([h, w, 3], [h, w])."""
    _check_pair(sample_id, image_HW3, label_HW)
    fitted = fit_inside(image_HW3.shape[1::-1], scale_wh)
    if fitted[0] < crop_wh[0] or fitted[1] < crop_wh[1]:
        raise DataError(
            sample_id,
            f"image {image_HW3.shape[1]}x{image_HW3.shape[0]} fitted inside "
            f"{scale_wh[0]}x{scale_wh[1]} is {fitted[0]}x{fitted[1]}, smaller "
            f"than the crop {crop_wh[0]}x{crop_wh[1]}",
        )
    image, label = resize_pair(image_HW3, label_HW, fitted)
    x, y, flip = crop_box(fitted, crop_wh, gen, label)
    image = image[y : y + crop_wh[1], x : x + crop_wh[0]]
    label = label[y : y + crop_wh[1], x : x + crop_wh[0]]
    if flip:
        image, label = image[:, ::-1], label[:, ::-1]
    image = np.ascontiguousarray(image)
    if photometric_gen is not None:
        image = photometric.distort(image, photometric.draw(photometric_gen))
    return image, np.ascontiguousarray(label)


def eval_image(image_HW3: np.ndarray, resolution_wh) -> np.ndarray:
    """The whole image at `resolution_wh` as the VAE gets it: evaluation caches and `predict`."""
    return np.ascontiguousarray(resize_image(image_HW3, tuple(resolution_wh)))


def eval_view(sample_id: str, image_HW3: np.ndarray, label_HW: np.ndarray, resolution_wh):
    """The whole image (`eval_image`) and its label (nearest) at `resolution_wh`."""
    _check_pair(sample_id, image_HW3, label_HW)
    label = resize_label(label_HW, tuple(resolution_wh))
    return eval_image(image_HW3, resolution_wh), np.ascontiguousarray(label)


def _check_pair(sample_id: str, image_HW3: np.ndarray, label_HW: np.ndarray) -> None:
    if image_HW3.ndim != 3 or image_HW3.shape[2] != 3 or image_HW3.dtype != np.uint8:
        raise DataError(sample_id, f"image is not uint8 RGB (shape {image_HW3.shape}, {image_HW3.dtype})")
    if image_HW3.shape[:2] != label_HW.shape:
        raise DataError(
            sample_id,
            f"label size {label_HW.shape[1]}x{label_HW.shape[0]} differs from "
            f"image size {image_HW3.shape[1]}x{image_HW3.shape[0]}",
        )
