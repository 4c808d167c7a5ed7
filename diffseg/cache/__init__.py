"""The feature store (docs/design/architecture.md "The feature cache"): the only package that imports zarr.

CacheWriter.create(path, record, ids, arrays=None, orig_label_max=None) -> writer (or resume)
CacheReader(path).read(i, names)                                   -> numpy arrays
FeatureDataset(path, branches, layers, step_indices, in_memory)    -> torch Dataset
is_cache(path)                                                     -> whether a cache exists there
"""

from diffseg.cache.dataset import FeatureDataset
from diffseg.cache.reader import CacheReader
from diffseg.cache.record import (
    FORMAT_VERSION,
    CacheRecord,
    DatasetRecord,
    ExtractRecord,
    ModelRecord,
    SkippedSample,
    ViewsRule,
)
from diffseg.cache.schema import COMPLETE, PENDING, SKIPPED, feature_name, split_name
from diffseg.cache.store import is_cache, stored_bytes
from diffseg.cache.writer import CacheWriter
from diffseg.core.layers import LayerSpec

__all__ = [
    "COMPLETE",
    "FORMAT_VERSION",
    "PENDING",
    "SKIPPED",
    "CacheReader",
    "CacheRecord",
    "CacheWriter",
    "DatasetRecord",
    "ExtractRecord",
    "FeatureDataset",
    "LayerSpec",
    "ModelRecord",
    "SkippedSample",
    "ViewsRule",
    "feature_name",
    "is_cache",
    "split_name",
    "stored_bytes",
]
