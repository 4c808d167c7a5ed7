"""The sample stream of a run: which cached sample each stream position trains on.

Uniform over images with one view per visit (sampling.StreamOrder), or rare-class sampling
(rcs.py) when its temperature is in force; both pure functions of (seed, position).
"""

from __future__ import annotations

from collections.abc import Sequence

from diffseg.cache import CacheReader
from diffseg.stages.runs.files import digest
from diffseg.stages.train.classstats import class_counts
from diffseg.stages.train.config import TrainConfig
from diffseg.stages.train.rcs import RareClassSampler
from diffseg.stages.train.sampling import Order, StreamOrder, image_groups


def build_order(cfg: TrainConfig, reader: CacheReader, indices: Sequence[int]) -> tuple[Order, dict | None]:
    """(stream position -> position in `indices`, the class statistics recorded in the run or None: their
    digest, frequencies and class probabilities, not the per-sample counts: a few MB on GTAV).
    `indices`: the cache sample indices the dataset serves, in dataset order."""
    groups = image_groups([reader.ids[i] for i in indices])
    if cfg.rcs_temperature == 0:
        return StreamOrder(len(indices), cfg.seed, groups), None
    assert cfg.rcs_min_pixels is not None  # resolved by job.resolve_config
    counts, record = class_counts(reader, indices)
    rcs = RareClassSampler(
        counts, groups, temperature=cfg.rcs_temperature, min_pixels=cfg.rcs_min_pixels, seed=cfg.seed
    )
    names = reader.record.dataset.class_table.names
    stats = {
        "digest": digest(record["counts"]),
        "min_pixels": cfg.rcs_min_pixels,
        "temperature": cfg.rcs_temperature,
        "frequencies": {names[c]: float(f) for c, f in enumerate(rcs.freq_K)},
        "probabilities": {names[int(c)]: float(rcs.probs_K[c]) for c in rcs.classes},
        # what identifies the per-sample counts (kept in the class-stats sidecar, classstats.py); the
        # cache's absolute path stays out of the run (caches.json alone records it)
        "key": {k: v for k, v in record["key"].items() if k != "path"},
    }
    return rcs, stats
