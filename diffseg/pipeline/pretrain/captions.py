"""Captions for pre-training images: the classes present, in the masked prompts' words.

Stable Diffusion learned what a word means from alt-text next to photos; here the "alt-text"
is built from the classes an image shows (the label is read only for that), worded exactly
as the extractor's prompts name them (diffseg.pipeline.prompts), so the cross-attention of
a class name has something to learn. Variety keeps the text encoder from keying on one
layout: style and time-of-day words, several openings, shuffled or canonical class order, a
class sometimes left out, sometimes one class written as its masked prompt
("A high quality photo; europe city; car, cars, vans ..."), and empty captions (the
unconditional branch's prompt) for classifier-free guidance.
"""

from __future__ import annotations

import numpy as np

from diffseg.core.classes import CLASS_NAMES, NUM_CLASSES
from diffseg.pipeline.prompts import DEFAULT_DESCRIPTIONS, PREFIX, TEMPLATE

STYLE_WORDS = {
    "source": ("daytime", "on a sunny day", "day", "in the morning"),
    "night": ("at night", "night", "a dark night"),
    "fog": ("in fog", "foggy", "misty", "fog"),
    "dusk": ("at dusk", "sunset", "in the evening", "dusk"),
    "rain": ("in the rain", "rainy", "wet street in rain", "rain"),
}
OPENINGS = (PREFIX, "a photo of a city street,", "street scene;", "a photo of a street:", "city street view,", "")
MIN_FRACTION = 0.003  # a class named in a caption covers at least ~50 px of a 128 x 128 image
P_EMPTY, P_CLASS_PROMPT, P_DROP_CLASS, P_SHUFFLE, P_STYLE = 0.1, 0.2, 0.15, 0.5, 0.8


def present_classes(label: np.ndarray, min_fraction: float = MIN_FRACTION) -> tuple[int, ...]:
    """Train ids covering at least `min_fraction` of the label, in train-id order."""
    counts = np.bincount(label.ravel(), minlength=256)[:NUM_CLASSES]
    return tuple(int(c) for c in np.nonzero(counts >= min_fraction * label.size)[0])


def caption(rng: np.random.Generator, classes: tuple[int, ...], style: str) -> str:
    """One random caption of an image of `style` showing `classes`."""
    u = rng.random()
    if u < P_EMPTY or not classes:
        return ""
    if u < P_EMPTY + P_CLASS_PROMPT:  # the masked prompt of one class, as the extractor writes it
        name = CLASS_NAMES[classes[int(rng.integers(len(classes)))]]
        return TEMPLATE.format(name=name, description=DEFAULT_DESCRIPTIONS[name])
    kept = [c for c in classes if rng.random() >= P_DROP_CLASS] or [classes[0]]
    if rng.random() < P_SHUFFLE:
        kept = [kept[i] for i in rng.permutation(len(kept))]
    names = ", ".join(CLASS_NAMES[c] for c in kept)
    opening = OPENINGS[int(rng.integers(len(OPENINGS)))]
    words = STYLE_WORDS[style]
    style_text = words[int(rng.integers(len(words)))] if rng.random() < P_STYLE else ""
    if style_text and rng.random() < 0.5:
        parts = [opening, style_text + ";", names]
    else:
        parts = [opening, names, ("; " + style_text) if style_text else ""]
    return " ".join(p for p in parts if p).replace(" ;", ";").strip()
