"""Class statistics of a training cache's labels: pixels of each class in each sample.

Rare-class sampling (rcs.py) needs them. Reading every label of a GTAV cache takes minutes,
so they are computed once and remembered in a JSON sidecar under
`$DIFFSEG_CACHE_DIR` (default `~/.cache/diffseg`)`/class-stats/`, keyed by what decides the
labels (cache path, model fingerprint, extract config hash, ids hash, the complete samples):
a second run on the same cache reads them back, and the cache itself is never written. Each
run records their digest, the class frequencies and probabilities in `class_stats.json`.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from diffseg.cache import CacheReader
from diffseg.cache.schema import LABELS
from diffseg.core.atomic import atomic_write
from diffseg.core.paths import user_cache_dir
from diffseg.stages.runs.files import cache_fingerprint, digest

CLASS_STATS = "class_stats.json"


def stats_dir() -> Path:
    return user_cache_dir("class-stats")


def stats_key(reader: CacheReader, indices: Sequence[int]) -> dict:
    fp = cache_fingerprint(reader.path, reader.record, reader.ids)
    keep = ("path", "model_fingerprint", "extract_hash", "ids_hash")
    return {**{k: fp[k] for k in keep}, "complete_hash": digest([int(i) for i in indices])}


def count_classes(reader: CacheReader, indices: Sequence[int]) -> np.ndarray:
    """int64 [len(indices), K]: labelled pixels of each of the cache's K classes in each listed sample."""
    k = reader.record.dataset.class_table.num_classes
    out = np.zeros((len(indices), k), np.int64)
    for row, i in enumerate(indices):
        label = reader.read(int(i), [LABELS])[LABELS]
        out[row] = np.bincount(label.ravel(), minlength=256)[:k]
    return out


def class_counts(reader: CacheReader, indices: Sequence[int]) -> tuple[np.ndarray, dict]:
    """(counts [len(indices), K], the record {key, counts}): from the sidecar when it matches, else
    counted and remembered."""
    key = stats_key(reader, indices)
    sidecar = stats_dir() / (hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32] + ".json")
    if sidecar.is_file():
        record = _read(sidecar)
        if record is not None and record.get("key") == key:
            k = reader.record.dataset.class_table.num_classes
            return np.asarray(record["counts"], np.int64).reshape(len(indices), k), record
    print(f"counting the class pixels of {len(indices)} labels of {reader.path} (once)", file=sys.stderr, flush=True)
    counts = count_classes(reader, indices)
    record = {"key": key, "counts": counts.tolist()}
    atomic_write(sidecar, json.dumps(record))  # DDP ranks may write the same sidecar: each its own temporary
    return counts, record


def _read(sidecar: Path) -> dict | None:
    """The sidecar's record; None (it is recounted and rewritten) when a crash left it truncated."""
    try:
        return json.loads(sidecar.read_text())
    except ValueError:
        return None
