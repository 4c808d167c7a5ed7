"""From a run's record to what scoring needs: the Segmentor, and evaluation targets checked
against the run (model fingerprint, trajectory and prompt, layers, steps). Shared by train and eval."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from diffseg.cache import CacheReader, split_name
from diffseg.nn import Segmentor
from diffseg.stages.runs.scoring import Target, target_names
from diffseg.stages.train.selection import match_eval_cache


def held_layers(reader: CacheReader) -> dict[str, list[str]]:
    """{branch: [layers that branch holds]} from the cache's arrays."""
    held: dict[str, list[str]] = {b: [] for b in reader.branches}
    for name in reader.feature_names():
        branch, layer = split_name(name)
        held.setdefault(branch, []).append(layer)
    return held


def build_segmentor(layer_specs: Mapping, n_steps: int, fusion: str, seed: int) -> Segmentor:
    """The trainable model, initialised from `seed` (the global RNG is reseeded here on purpose)."""
    torch.manual_seed(seed)
    specs = {l: {"stride": int(s["stride"]), "channels": int(s["channels"])} for l, s in layer_specs.items()}
    return Segmentor(specs, n_steps, fusion=fusion)


def eval_targets(
    paths: Sequence[str | Path],
    *,
    fingerprint: str,
    train_cache: str,
    train_extract: Mapping,
    layers: Sequence[str],
    layer_specs: Mapping,
    save_steps: Sequence[int],
) -> list[Target]:
    """Open and check every evaluation cache against the run (`train_extract`: the training cache's
    extract config); CacheMismatch names both values."""
    names = target_names([str(p) for p in paths])
    targets = []
    for path, name in zip(paths, names):
        reader = CacheReader(path)
        idx = match_eval_cache(
            str(path),
            reader.record,
            held_layers(reader).get("uncond", []),
            fingerprint=fingerprint,
            train_cache=train_cache,
            train_extract=train_extract,
            layers=layers,
            layer_specs=layer_specs,
            save_steps=save_steps,
        )
        targets.append(
            Target(
                path=str(path),
                name=name,
                dataset=reader.record.dataset.name,
                layers=tuple(layers),
                step_indices=idx,
            )
        )
    return targets
