"""The run's trainable model built from its layer specs, and which layers a cache's branches hold.
Shared by train, eval, predict and ablate (evaluation targets: record.run_targets)."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from diffseg.cache import CacheReader, split_name
from diffseg.core.classes import CITYSCAPES
from diffseg.nn import Segmentor


def held_layers(reader: CacheReader) -> dict[str, list[str]]:
    """{branch: [layers that branch holds]} from the cache's arrays."""
    held: dict[str, list[str]] = {b: [] for b in reader.branches}
    for name in reader.feature_names():
        branch, layer = split_name(name)
        held.setdefault(branch, []).append(layer)
    return held


def build_segmentor(
    layer_specs: Mapping, n_steps: int, fusion: str, seed: int, num_classes: int = CITYSCAPES.num_classes
) -> Segmentor:
    """The trainable model, initialised from `seed` (the global RNG is reseeded here on purpose), its head
    `num_classes` wide (the training cache's label space)."""
    torch.manual_seed(seed)
    specs = {l: {"stride": int(s["stride"]), "channels": int(s["channels"])} for l, s in layer_specs.items()}
    return Segmentor(specs, n_steps, fusion=fusion, num_classes=num_classes)
