"""Does a model's cross-attention find its classes? The inside/outside ratio of cached `xattn` maps.

For one cached image, one `xattn` layer and one saved step, the map of class k (the mean over
heads and class tokens that stage one stores) is upscaled (nearest) to the label's size; the
ratio is its mean inside class k's mask divided by its mean outside it. 1 means the map does
not know where the class is (random weights give about 1); Stable Diffusion's maps of a
present class are several times brighter on it (the paper's Fig. 3).

`xattn_ratio` averages that ratio over every present class (at least MIN_FRACTION of the
pixels, and not all of them), image, `xattn` layer and saved step of a cache: one number per
cache, as the demo report and the premise benchmark quote it, plus the same mean per layer.

Its chance level comes with it: the same mean with each class's mask scored on the maps of the
*other* present classes. A mean of ratios exceeds 1 for maps that vary with the image without
knowing their class (a ratio of 3 on one class and 1/3 on another averages 1.67): `mini` with its
text tokens re-drawn and its cross-attention keys x16, untrained, scored 1.68 on `dev` against a
chance level of 1.43 (README, "Why the cross-attention stays flat"). A map finds its class by as
much as its ratio beats the chance level.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from diffseg.cache import CacheReader, schema
from diffseg.core.classes import present_classes
from diffseg.core.errors import DiffsegError
from diffseg.stages.viz import upscale

MIN_FRACTION = 0.01  # a class counts as present from 1 % of the image's pixels


def _present_masks(label_HW: np.ndarray, class_ids: list[int]) -> dict[int, np.ndarray]:
    """{channel k: mask of class class_ids[k]} for each class present (not too small, not everywhere)."""
    present, out = present_classes(label_HW, MIN_FRACTION), {}
    for k, c in enumerate(class_ids):
        if c in present and not (inside := label_HW == c).all():
            out[k] = inside
    return out


def _ratio(full_HW: np.ndarray, inside_HW: np.ndarray) -> float:
    return float(full_HW[inside_HW].mean()) / max(float(full_HW[~inside_HW].mean()), 1e-12)


def ratios_and_chance(maps_Khw: np.ndarray, label_HW: np.ndarray, class_ids: list[int]) -> tuple[list, list]:
    """(inside/outside ratio of each present class's map, the same ratio of every other present
    class's map on each present class's mask: the chance level); channel k is class class_ids[k].
    Each map is upscaled once for both."""
    masks = _present_masks(label_HW, class_ids)
    full = {k: upscale(maps_Khw[k].astype(np.float64), label_HW.shape) for k in masks}
    own = [_ratio(full[k], inside) for k, inside in masks.items()]
    chance = [_ratio(full[j], inside) for k, inside in masks.items() for j in masks if j != k]
    return own, chance


def class_ratios(maps_Khw: np.ndarray, label_HW: np.ndarray, class_ids: list[int]) -> list[float]:
    """Inside/outside ratio of each present class's map (channel k is class class_ids[k])."""
    return ratios_and_chance(maps_Khw, label_HW, class_ids)[0]


def chance_ratios(maps_Khw: np.ndarray, label_HW: np.ndarray, class_ids: list[int]) -> list[float]:
    """The same ratio of every other present class's map on each present class's mask (chance level)."""
    return ratios_and_chance(maps_Khw, label_HW, class_ids)[1]


def xattn_ratio(cache: str | Path, branch: str = "uncond", limit: int | None = None) -> dict:
    """{"ratio": mean over classes, images, layers and steps; "chance": the same over mismatched
    (map, mask) pairs; "layers": {layer: mean}; "images": n; "pairs": number of (class, image,
    layer, step) ratios averaged}; the first `limit` complete samples. Refuses a cache whose branch
    holds no `xattn` layer (one line naming it)."""
    reader = CacheReader(cache)
    held = set(reader.feature_names())
    layers = [
        k for k, spec in reader.layer_specs.items() if spec.kind == "xattn" and schema.feature_name(branch, k) in held
    ]
    if not layers:
        raise DiffsegError(
            f"{cache}: the {branch} branch holds no xattn layer (extract with --kinds including xattn"
            + (" and --uncond-prompt classes)" if branch == "uncond" else ")")
        )
    class_ids = list(reader.record.extract.classes)
    indices = reader.complete_indices()[:limit]
    per_layer: dict[str, list[float]] = {k: [] for k in layers}
    chance: list[float] = []
    for i in indices:
        label = reader.orig_label(i) if reader.is_eval else reader.read(i, [schema.LABELS])[schema.LABELS]
        arrays = reader.read(i, [schema.feature_name(branch, k) for k in layers])
        for k in layers:
            maps_SKhw = arrays[schema.feature_name(branch, k)]
            for maps_Khw in maps_SKhw:
                own, mismatched = ratios_and_chance(maps_Khw, label, class_ids)
                per_layer[k] += own
                chance += mismatched
    every = [r for values in per_layer.values() for r in values]
    return {
        "ratio": float(np.mean(every)) if every else float("nan"),
        "chance": float(np.mean(chance)) if chance else float("nan"),
        "layers": {k: float(np.mean(v)) if v else float("nan") for k, v in per_layer.items()},
        "images": len(indices),
        "pairs": len(every),
    }
