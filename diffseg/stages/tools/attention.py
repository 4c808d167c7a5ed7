"""Does a model's cross-attention find its classes? The inside/outside ratio of cached `xattn` maps.

For one cached image, one `xattn` layer and one saved step, the map of class k (the mean over
heads and class tokens that stage one stores) is upscaled (nearest) to the label's size; the
ratio is its mean inside class k's mask divided by its mean outside it. 1 means the map does
not know where the class is (random weights give about 1); Stable Diffusion's maps of a
present class are several times brighter on it (the paper's Fig. 3).

`xattn_ratio` averages that ratio over every present class (at least MIN_FRACTION of the
pixels, and not all of them), image, `xattn` layer and saved step of a cache: one number per
cache, as the demo report and the premise benchmark quote it, plus the same mean per layer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from diffseg.cache import CacheReader, schema
from diffseg.core.classes import CLASS_NAMES
from diffseg.core.errors import DiffsegError
from diffseg.stages.tools.cacheshow import upscale

MIN_FRACTION = 0.01  # a class counts as present from 1 % of the image's pixels


def class_ratios(maps_Khw: np.ndarray, label_HW: np.ndarray, class_ids: list[int]) -> list[float]:
    """Inside/outside ratio of each present class's map (channel k is class class_ids[k])."""
    n = label_HW.size
    out = []
    for k, c in enumerate(class_ids):
        inside = label_HW == c
        count = int(inside.sum())
        if count < MIN_FRACTION * n or count == n:
            continue
        full = upscale(maps_Khw[k].astype(np.float64), label_HW.shape)
        outside_mean = float(full[~inside].mean())
        out.append(float(full[inside].mean()) / max(outside_mean, 1e-12))
    return out


def xattn_ratio(cache: str | Path, branch: str = "uncond", limit: int | None = None) -> dict:
    """{"ratio": mean over classes, images, layers and steps; "layers": {layer: mean}; "images": n;
    "pairs": number of (class, image, layer, step) ratios averaged}; the first `limit` complete
    samples. Refuses a cache whose branch holds no `xattn` layer (one line naming it)."""
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
    names = reader.record.extract.class_names
    class_ids = [CLASS_NAMES.index(name) for name in names]
    indices = reader.complete_indices()[:limit]
    per_layer: dict[str, list[float]] = {k: [] for k in layers}
    for i in indices:
        label = reader.orig_label(i) if reader.is_eval else reader.read(i, [schema.LABELS])[schema.LABELS]
        arrays = reader.read(i, [schema.feature_name(branch, k) for k in layers])
        for k in layers:
            maps_SKhw = arrays[schema.feature_name(branch, k)]
            for maps_Khw in maps_SKhw:
                per_layer[k] += class_ratios(maps_Khw, label, class_ids)
    every = [r for values in per_layer.values() for r in values]
    return {
        "ratio": float(np.mean(every)) if every else float("nan"),
        "layers": {k: float(np.mean(v)) if v else float("nan") for k, v in per_layer.items()},
        "images": len(indices),
        "pairs": len(every),
    }
