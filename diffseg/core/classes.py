"""The 19 Cityscapes evaluation classes (train-id order), their palette, and subsets.

Every dataset is converted to these train ids; 255 (`IGNORE`) marks unlabelled pixels.
"""

from __future__ import annotations

import numpy as np

NUM_CLASSES = 19
IGNORE = 255

CLASS_NAMES: tuple[str, ...] = (
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
)

# The usual Cityscapes colours, one row per train id: [19, 3] uint8.
PALETTE = np.array(
    [
        (128, 64, 128),
        (244, 35, 232),
        (70, 70, 70),
        (102, 102, 156),
        (190, 153, 153),
        (153, 153, 153),
        (250, 170, 30),
        (220, 220, 0),
        (107, 142, 35),
        (152, 251, 152),
        (70, 130, 180),
        (220, 20, 60),
        (255, 0, 0),
        (0, 0, 142),
        (0, 0, 70),
        (0, 60, 100),
        (0, 80, 100),
        (0, 0, 230),
        (119, 11, 32),
    ],
    dtype=np.uint8,
)
PALETTE.setflags(write=False)

# Synthia has no terrain, truck or train: it is scored on 16 (and 13) classes.
SYNTHIA16: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 15, 17, 18)
SYNTHIA13: tuple[int, ...] = (0, 1, 2, 6, 7, 8, 10, 11, 12, 13, 15, 17, 18)

assert len(CLASS_NAMES) == NUM_CLASSES == len(PALETTE)


def colorize(label_HW: np.ndarray) -> np.ndarray:
    """Train-id map -> RGB picture [H, W, 3] uint8 (ignore is black)."""
    lut = np.zeros((256, 3), np.uint8)
    lut[:NUM_CLASSES] = PALETTE
    return lut[label_HW]


def present_classes(label_HW: np.ndarray, min_fraction: float = 0.0) -> tuple[int, ...]:
    """Train ids present in a label map (ignore excluded), in train-id order: those covering at
    least `min_fraction` of its pixels (0: any pixel).

    The thresholds differ where presence means different things: any pixel where a class gets
    drawn or its own mask (viz legends, MultiDiffusion's per-class prompts); 0.3 % where a caption
    names it (pretrain/captions.py MIN_FRACTION: ~50 px of a 128 x 128 image); 1 % where a
    cross-attention ratio is measured over it (the attention metric's MIN_FRACTION: a handful of
    pixels gives a noisy ratio)."""
    counts = np.bincount(np.asarray(label_HW).ravel(), minlength=NUM_CLASSES)[:NUM_CLASSES]
    return tuple(int(c) for c in np.flatnonzero((counts > 0) & (counts >= min_fraction * label_HW.size)))
