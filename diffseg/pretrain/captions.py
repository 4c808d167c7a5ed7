"""Captions for pre-training images: the classes present, in the masked prompts' words.

Stable Diffusion learned what a word means from alt-text next to photos; here the "alt-text"
is built from the classes an image shows (the label is read only for that), worded exactly
as the extractor's prompts name them (diffseg.pipeline.prompts), so the cross-attention of
a class name has something to learn. Variety keeps the text encoder from keying on one
layout: style and time-of-day words, several openings, shuffled or canonical class order, a
class sometimes left out, sometimes one class written as its masked prompt
("A high quality photo; europe city; car, cars, vans ..."), and empty captions (the
unconditional branch's prompt) for classifier-free guidance.

Colour words (`PretrainConfig.color_words`): a class name may come with the colour most of its
pixels show ("red car, grey building"), read off the image as alt-text would describe it. A
class list alone tells the U-Net little it cannot see; the colour of *this* image's cars is
something only the caption says, and only at the cars, which gives the U-Net a reason to look
up the car token at car pixels (attribute binding, as in captioned CLEVR-like worlds). Measured
(README, "Why the cross-attention stays flat"): the U-Net uses the colours, but reads them
without looking them up by place.

Every class (`PretrainConfig.all_classes`): a class list may name all 19 classes, the absent ones
with a random colour word. Such a caption no longer says which classes are present, only colours,
and more of them than the mean of its values can carry cleanly: a pixel that looks up its own
class's token gets its colour without the 18 others' in the way.
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
# Basic colour terms the built-in tokenizer holds whole, each with its reference RGBs (0-1)
COLOR_REFERENCES = (
    ("black", (0.1, 0.1, 0.1)), ("white", (0.88, 0.88, 0.88)), ("grey", (0.5, 0.5, 0.5)),
    ("red", (0.65, 0.12, 0.1)), ("blue", (0.18, 0.3, 0.6)), ("blue", (0.5, 0.68, 0.9)),
    ("yellow", (0.88, 0.75, 0.15)), ("green", (0.25, 0.4, 0.15)), ("brown", (0.5, 0.36, 0.24)),
)  # fmt: skip
COLOR_WORDS = tuple(dict.fromkeys(w for w, _ in COLOR_REFERENCES))
_REF_RGB = np.array([rgb for _, rgb in COLOR_REFERENCES], np.float32)
_REF_WORD = np.array([COLOR_WORDS.index(w) for w, _ in COLOR_REFERENCES])


def dominant_colors(image_HW3: np.ndarray, label_HW: np.ndarray) -> np.ndarray:
    """[NUM_CLASSES] int8: per class, the index in COLOR_WORDS most of its pixels are nearest to
    (-1 where the class has no pixel)."""
    rgb = image_HW3.reshape(-1, 3).astype(np.float32) / 255.0
    nearest = _REF_WORD[((rgb[:, None, :] - _REF_RGB[None]) ** 2).sum(-1).argmin(1)]
    k = len(COLOR_WORDS)
    counts = np.bincount(label_HW.ravel().astype(np.int64) * k + nearest, minlength=256 * k)[: NUM_CLASSES * k]
    counts = counts.reshape(NUM_CLASSES, k)
    return np.where(counts.sum(1) > 0, counts.argmax(1), -1).astype(np.int8)


def caption(
    rng: np.random.Generator,
    classes: tuple[int, ...],
    style: str,
    colors: np.ndarray | None = None,
    p_color: float = 0.0,
    p_all: float = 0.0,
) -> str:
    """One random caption of an image of `style` showing `classes`; with `p_color` > 0, each listed
    class name comes after its colour word (`colors`, from dominant_colors) with that probability;
    with `p_all` > 0, a class list names every class with that probability, the absent ones (not
    in `classes`) with a random colour word. `p_color` and `p_all` 0 draw exactly the random
    numbers they always did (the shipped weights' captions)."""
    u = rng.random()
    if u < P_EMPTY or not classes:
        return ""
    if u < P_EMPTY + P_CLASS_PROMPT:  # the masked prompt of one class, as the extractor writes it
        name = CLASS_NAMES[classes[int(rng.integers(len(classes)))]]
        return TEMPLATE.format(name=name, description=DEFAULT_DESCRIPTIONS[name])
    kept = [c for c in classes if rng.random() >= P_DROP_CLASS] or [classes[0]]
    every = p_all > 0 and rng.random() < p_all
    if every:
        kept = list(range(NUM_CLASSES))
    if rng.random() < P_SHUFFLE:
        kept = [kept[i] for i in rng.permutation(len(kept))]
    words_of = [CLASS_NAMES[c] for c in kept]
    if p_color > 0 and colors is not None:
        if every:  # the absent classes' colours are drawn: only the present ones' say anything
            drawn = rng.integers(len(COLOR_WORDS), size=NUM_CLASSES)
            colors = np.where(np.isin(np.arange(NUM_CLASSES), classes), colors, drawn)
        words_of = [
            f"{COLOR_WORDS[colors[c]]} {w}" if colors[c] >= 0 and rng.random() < p_color else w
            for c, w in zip(kept, words_of)
        ]
    names = ", ".join(words_of)
    opening = OPENINGS[int(rng.integers(len(OPENINGS)))]
    words = STYLE_WORDS[style]
    style_text = words[int(rng.integers(len(words)))] if rng.random() < P_STYLE else ""
    if style_text and rng.random() < 0.5:
        parts = [opening, style_text + ";", names]
    else:
        parts = [opening, names, ("; " + style_text) if style_text else ""]
    return " ".join(p for p in parts if p).replace(" ;", ";").strip()
