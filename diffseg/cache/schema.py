"""The feature cache schema, format version 1 (DESIGN.md "The feature cache").

One Zarr v3 group per dataset split:

    attrs        format_version, diffseg_version, model {name, fingerprint, prediction_type},
                 dataset {name, split, label_space, info}, extract {full config}, codec {...},
                 layers {name: {kind, stride, channels, size: [h, w]}}, save_steps, branches,
                 kind ("train" | "eval"), resolution [W, H], samples N, skipped [{id, reason}],
                 timings {...}
    ids          [N] string, written at creation
    labels       [N, H, W] uint8, chunk (1, H, W), zstd
    <branch>/<layer>  [N, S, C, h, w] float16, chunk (1, S, C, h, w), no compressor
    orig_labels  [N, Hmax, Wmax] uint8, fill 255, zstd     (eval caches)
    orig_sizes   [N, 2] int32 (h, w of the original label)  (eval caches)
    status       [N] uint8, chunk (1,): PENDING, COMPLETE (written last), SKIPPED

This module is pure: names, constants, and the comparison that decides whether an
existing cache may be resumed. It does not import zarr.
"""

from __future__ import annotations

import json
from typing import Any

FORMAT_VERSION = 1
PENDING, COMPLETE, SKIPPED = 0, 1, 2
LABEL_SPACE = "cityscapes19"
BRANCHES = ("uncond", "cond")

# Root attributes CacheWriter.create needs from the caller (the rest it fills in).
REQUIRED_ATTRS = ("model", "dataset", "extract", "layers", "save_steps", "branches", "kind", "resolution")
# What must be equal for an existing cache to be resumed, as dotted keys into the attrs.
RESUME_KEYS = ("format_version", "model.fingerprint", "dataset.name", "dataset.split", "dataset.info", "extract")

# Arrays that are not features.
LABELS, STATUS, IDS, ORIG_LABELS, ORIG_SIZES = "labels", "status", "ids", "orig_labels", "orig_sizes"


def feature_name(branch: str, layer: str) -> str:
    """Array name of one branch's layer, e.g. "uncond/up1.res2"."""
    return f"{branch}/{layer}"


def split_name(name: str) -> tuple[str, str]:
    """ "cond/up2.blk0" -> ("cond", "up2.blk0")."""
    branch, _, layer = name.partition("/")
    assert layer, f"not a feature array name: {name!r}"
    return branch, layer


def jsonable(value: Any) -> Any:
    """The value as it reads back from the attributes (tuples become lists, keys strings)."""
    return json.loads(json.dumps(value))


def lookup(attrs: dict, dotted: str) -> Any:
    """attrs["a"]["b"] for "a.b"; None where a key is missing."""
    node: Any = attrs
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


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


def resume_difference(old_attrs: dict, new_attrs: dict) -> tuple[str, Any, Any] | None:
    """Where a requested cache differs from an existing one in what decides resumability."""
    new_attrs = jsonable(new_attrs)
    for key in RESUME_KEYS:
        diff = first_difference(lookup(old_attrs, key), lookup(new_attrs, key), key)
        if diff:
            return diff
    return None


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
