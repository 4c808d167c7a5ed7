"""`diffseg cache migrate`: rewrite a format-1 cache's attributes as a format-2 record, in place.

The arrays are untouched: only the root zarr.json changes, written to a temporary file in the
same folder and renamed over the old one (atomic on a local file system). Format 1 held the
same facts with repeats (save_steps three times, the layer names and resolution twice) and the
views rule as a sentence; `record_from_format1` maps them and refuses, naming the field, what
it cannot map (an unknown views sentence or codec, repeats that disagree, a cache without an
extraction config, such as the synthetic caches of older tests).
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping
from pathlib import Path

from diffseg.cache import store
from diffseg.cache.record import (
    DEFAULT_CODECS,
    FORMAT_VERSION,
    CacheRecord,
    DatasetRecord,
    ExtractRecord,
    ModelRecord,
    SkippedSample,
    ViewsRule,
)
from diffseg.core.atomic import atomic_target
from diffseg.core.errors import DiffsegError
from diffseg.core.layers import LayerSpec

FORMAT1_CODEC = {"features": "bytes (little endian, uncompressed)", "labels": "zstd level 3"}
FORMAT1_CROP = (
    "image fitted inside scale (bilinear, antialiased; label nearest), seeded crop redrawn up to 10 times "
    "while one class covers >= 0.75 of its labelled pixels (mmseg cat_max_ratio 0.75; last draw kept), "
    "and seeded horizontal flip"
)
FORMAT1_RESIZE = "whole image resized to resolution (bilinear, antialiased; label nearest)"
# extract keys format 1 repeated from elsewhere (checked equal, then dropped) or derived
_REPEATS = {"steps", "save_steps", "layers", "eta_window", "seed"}  # = extract.trajectory[key]
_DERIVED = {"kinds", "class_names", "dtype", "codec", "resolution", "branches"}


def _need(d: Mapping, key: str, where: str):
    if key not in d:
        raise DiffsegError(f"cannot migrate: format-1 attribute {where}{key} is missing")
    return d[key]


def _agree(where_a: str, a, where_b: str, b) -> None:
    if json.dumps(a) != json.dumps(b):
        raise DiffsegError(f"cannot migrate: {where_a}={json.dumps(a)} disagrees with {where_b}={json.dumps(b)}")


def _views_rule(extract: Mapping) -> ViewsRule:
    text = _need(extract, "views_rule", "extract.")
    if text == FORMAT1_CROP:
        scale = _need(extract, "scale", "extract.")
        return ViewsRule(mode="crop", scale=scale, cat_max_ratio=0.75, redraws=10, flip=True)
    if text == FORMAT1_RESIZE:
        return ViewsRule(mode="resize")
    raise DiffsegError(f"cannot migrate: unknown format-1 views rule {text!r} (not written by diffseg 64b7e8a)")


def _extract(attrs: Mapping) -> ExtractRecord:
    extract = _need(attrs, "extract", "")
    traj = _need(extract, "trajectory", "extract.")
    for key in sorted(_REPEATS & set(extract)):
        _agree(f"extract.{key}", extract[key], f"extract.trajectory.{key}", _need(traj, key, "extract.trajectory."))
    _agree("save_steps", _need(attrs, "save_steps", ""), "extract.trajectory.save_steps", traj["save_steps"])
    for key in ("resolution", "branches"):
        if key in extract:
            _agree(f"extract.{key}", extract[key], key, _need(attrs, key, ""))
    _agree("codec", attrs.get("codec"), "the format-1 codec", FORMAT1_CODEC)
    _agree("extract.codec", extract.get("codec", FORMAT1_CODEC), "the format-1 codec", FORMAT1_CODEC)
    known = _REPEATS | _DERIVED | {f for f in ExtractRecord.__dataclass_fields__ if f != "seeding"} | {"scale"}
    unknown = sorted(set(extract) - known)
    if unknown:
        raise DiffsegError(f"cannot migrate: unknown format-1 extract fields {unknown}")
    return ExtractRecord(
        preset=_need(extract, "preset", "extract."),
        trajectory=dict(traj),
        views=_need(extract, "views", "extract."),
        views_rule=_views_rule(extract),
        uncond_prompt=_need(extract, "uncond_prompt", "extract."),
        uncond_prompt_text=_need(extract, "uncond_prompt_text", "extract."),
        prompt_template=_need(extract, "prompt_template", "extract."),
        classes=_need(extract, "classes", "extract."),
        class_prompts=_need(extract, "class_prompts", "extract."),
        compute_dtype=_need(extract, "compute_dtype", "extract."),
        limit=extract.get("limit"),
        images=_need(extract, "images", "extract."),
        ids_sha256=_need(extract, "ids_sha256", "extract."),
    )


def record_from_format1(attrs: Mapping) -> CacheRecord:
    """The format-2 record of format-1 root attributes; DiffsegError naming what cannot be mapped."""
    if attrs.get("format_version") != 1:
        raise DiffsegError(f"cannot migrate: format_version is {attrs.get('format_version')}, not 1")
    root = {
        "format_version",
        "diffseg_version",
        "codec",
        "samples",
        "skipped",
        "timings",
        "host",
        "model",
        "dataset",
        "extract",
        "layers",
        "save_steps",
        "branches",
        "kind",
        "resolution",
    }
    unknown = sorted(set(attrs) - root)
    if unknown:
        raise DiffsegError(f"cannot migrate: unknown format-1 attributes {unknown}")
    extract = _extract(attrs)
    layers = {name: LayerSpec.from_dict(spec) for name, spec in _need(attrs, "layers", "").items()}
    return CacheRecord(
        kind=_need(attrs, "kind", ""),
        model=ModelRecord.from_dict(_need(attrs, "model", "")),
        dataset=DatasetRecord.from_dict(_need(attrs, "dataset", "")),
        extract=extract,
        layers=layers,
        branches=_need(attrs, "branches", ""),
        resolution=_need(attrs, "resolution", ""),
        samples=_need(attrs, "samples", ""),
        codecs=dict(DEFAULT_CODECS),
        skipped=tuple(SkippedSample.from_dict(s) for s in attrs.get("skipped", [])),
        timings=attrs.get("timings", {}),
        host=attrs.get("host", {}),
        diffseg_version=_need(attrs, "diffseg_version", ""),
    )


def migrate(path: str | Path) -> CacheRecord:
    """Rewrite the format-1 cache at `path` as format 2 (its zarr.json only, atomically: a local
    temp file + rename, or one PUT on an object store, which replaces an object whole); -> the record."""
    meta_bytes = _read_meta(path)
    if meta_bytes is None:
        raise DiffsegError(f"{path} is not a Zarr group (no zarr.json): not a diffseg cache")
    meta = json.loads(meta_bytes)
    attrs = meta.get("attributes", {})
    version = attrs.get("format_version")
    if version == FORMAT_VERSION:
        raise DiffsegError(f"{path} is already a format-{FORMAT_VERSION} cache: nothing to migrate")
    if version != 1:
        raise DiffsegError(f"{path} has cache format version {version}: only format 1 can be migrated")
    record = record_from_format1(attrs)
    meta["attributes"] = record.to_dict()
    _write_meta(path, json.dumps(meta, indent=2).encode())
    return record


def _read_meta(path: str | Path) -> bytes | None:
    if store.is_local(path):
        meta_path = store.local_path(path) / "zarr.json"
        return meta_path.read_bytes() if meta_path.is_file() else None
    fs, root = store.remote_fs(path)
    key = f"{root}/zarr.json"
    return fs.cat_file(key) if fs.exists(key) else None


def _write_meta(path: str | Path, data: bytes) -> None:
    if not store.is_local(path):
        fs, root = store.remote_fs(path)
        fs.pipe_file(f"{root}/zarr.json", data)
        return
    meta_path = store.local_path(path) / "zarr.json"
    with atomic_target(meta_path) as tmp:
        tmp.write_bytes(data)
        os.chmod(tmp, stat.S_IMODE(meta_path.stat().st_mode))  # keep the cache's own mode (a shared cache's group bits)
