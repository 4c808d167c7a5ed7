"""The feature cache layout, format version 3 (docs/design/architecture.md "The feature cache").

One Zarr v3 group per dataset split:

    attrs        the cache record (record.py, CacheRecord.to_dict()): format_version 3, diffseg_version,
                 kind ("train" | "eval"), model {name, fingerprint, prediction_type}, attention_backend,
                 dataset {name, split, label_space, info, classes (a custom label space only)},
                 extract {preset, trajectory (steps, save_steps, layers, ...), views,
                 views_rule {mode, scale, cat_max_ratio, redraws, flip, ...}, prompts, classes, seeding, ...},
                 layers {name: {kind, stride, channels, size: [h, w]}}, branches, resolution [W, H],
                 samples N, codecs {array: codec}, sample_hash, packs {pack: [layer, ...]},
                 skipped [{id, reason}], timings {...}, host {...}
    ids          [N] string, written at creation: the image ids, or view_id(image, k) when each image
                 has several views
    labels       [N, H, W] uint8, chunk (1, H, W), zstd
    <branch>/s<stride>  [N, S, C1 + C2 + ..., h, w] float16, chunk (1, ...), no compressor (codec raw): a
                 pack (packs.py), the branch's layers of one stride side by side on the channel axis; a
                 feature array "<branch>/<layer>" [N, S, C, h, w] is its slab. Other feature codecs store
                 other arrays under that name and "<pack>.<part>" (cache/codecs.py: bitround, int8 codes +
                 scale/offset/outliers, pca coefficients; pca's basis per layer as "<branch>/<layer>.basis")
    orig_labels  [N, Hmax, Wmax] uint8, fill 255, zstd     (eval caches)
    orig_sizes   [N, 2] int32 (h, w of the original label)  (eval caches)
    status       [N] uint8, chunk (1,): PENDING, COMPLETE (written last), SKIPPED

Format 1 (diffseg up to commit 64b7e8a) and format 2 (up to 85eb529) held one array per branch and
layer; format 1's attributes repeated save_steps three times and described the views rule in a
sentence. `diffseg cache migrate` brings both to format 3 (migrate.py). This module is pure: array names, status values and value comparison; no zarr.
"""

from __future__ import annotations

import json
import re
from typing import Any

PENDING, COMPLETE, SKIPPED = 0, 1, 2
BRANCHES = ("uncond", "cond")

# Arrays that are not features.
LABELS, STATUS, IDS, ORIG_LABELS, ORIG_SIZES = "labels", "status", "ids", "orig_labels", "orig_sizes"
SAMPLE_HASH = "sample_sha256"  # [N, 32] uint8: sha256 of the decoded source sample (the record's sample_hash)

_VIEW_SUFFIX = re.compile(r"#v\d+$")


def view_id(image_id: str, view: int) -> str:
    """The cache id of view `view` of an image cached in several views: "<image id>#v<k>"."""
    return f"{image_id}#v{view}"


def image_of(cache_id: str) -> str:
    """The image id a cache id belongs to (view_id's inverse; an id without a view suffix is its own)."""
    return _VIEW_SUFFIX.sub("", cache_id)


def feature_name(branch: str, layer: str) -> str:
    """Array name of one branch's layer, e.g. "uncond/up1.res2"."""
    return f"{branch}/{layer}"


def split_name(name: str) -> tuple[str, str]:
    """ "cond/up2.blk0" -> ("cond", "up2.blk0")."""
    branch, _, layer = name.partition("/")
    assert layer, f"not a feature array name: {name!r}"
    return branch, layer


def first_difference(old: Any, new: Any, key: str) -> tuple[str, Any, Any] | None:
    """The first (dotted key, old value, new value) where two JSON values differ, or None."""
    if isinstance(old, dict) and isinstance(new, dict):
        for k in list(old) + [k for k in new if k not in old]:
            if k not in old or k not in new:
                return (f"{key}.{k}", old.get(k), new.get(k))
            diff = first_difference(old[k], new[k], f"{key}.{k}")
            if diff:
                return diff
        return None
    return None if old == new else (key, old, new)


def ids_difference(old_ids: list[str], new_ids: list[str]) -> tuple[str, Any, Any] | None:
    """Where two sample id lists first differ (count first, then the first differing id)."""
    if len(old_ids) != len(new_ids):
        return ("samples", len(old_ids), len(new_ids))
    for i, (a, b) in enumerate(zip(old_ids, new_ids)):
        if a != b:
            return (f"ids[{i}]", a, b)
    return None


def show_value(value: Any) -> str:
    """A value as a person reads it in one line: JSON without the noise."""
    return value if isinstance(value, str) else json.dumps(value)
