"""`diffseg cache migrate`: bring a format-1 or format-2 cache to format 3, in place.

Two steps, each finished by one atomic write of the root zarr.json (a local temporary file
renamed over the old one; one PUT on an object store, which replaces an object whole):

1. **The record.** Format 2 held the same arrays as format 3 packed one layer per array
   (packs.py, packing "layer"): its record becomes a format-3 record whose `packs` say so; the
   arrays are untouched and the cache reads, trains and resumes from here on. Format 1 held the
   same facts with repeats (save_steps three times, the layer names and resolution twice) and the
   views rule as a sentence; `record_from_format1` maps them and refuses, naming the field, what
   it cannot map (an unknown views sentence or codec, repeats that disagree, a cache without an
   extraction config, such as the synthetic caches of older tests).
2. **The packs** (`repack`): every complete sample's stored values are copied, as stored (no
   codec applied again), into the new packs (a few files per sample instead of one per layer), read back and compared,
   then the record switches to the new packs and the old arrays are deleted. Interrupted before
   the switch, the cache is still the old packing (the rerun starts the copy over); interrupted
   after it, the rerun deletes what is left of the old arrays.
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import zarr
from tqdm import tqdm

from diffseg.cache import schema, store
from diffseg.cache.codecs import zarr_filters
from diffseg.cache.expected import unnamed
from diffseg.cache.packs import packing_of, packs_for
from diffseg.cache.reader import CacheReader
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
from diffseg.cache.writer import CacheWriter
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


def migrate(path: str | Path, progress: bool = True) -> tuple[int, CacheRecord]:
    """Bring the cache at `path` to format 3 (see the module docstring); -> (the format it had, the
    record now). A format-3 cache packed by layer is repacked by stride; one left with old arrays by
    an interrupted migration is cleaned; one that needs nothing is refused with one line."""
    meta_bytes = _read_meta(path)
    if meta_bytes is None:
        raise DiffsegError(f"{path} is not a Zarr group (no zarr.json): not a diffseg cache")
    meta = json.loads(meta_bytes)
    attrs = meta.get("attributes", {})
    version = attrs.get("format_version")
    if version not in (1, 2, FORMAT_VERSION):
        raise DiffsegError(f"{path} has cache format version {version}: only formats 1 and 2 can be migrated")
    if version != FORMAT_VERSION:
        if version == 1:
            record = record_from_format1(attrs)
        else:
            try:
                record = CacheRecord.from_dict({**attrs, "format_version": FORMAT_VERSION})
            except DiffsegError as err:
                raise DiffsegError(f"cannot migrate {path}: damaged format-2 attributes: {err}") from err
        group = store.open_group(path, "r")
        held = [n for b in record.branches for layer in record.layers if (n := schema.feature_name(b, layer)) in group]
        record = dataclasses.replace(record, packs=packs_for(record, held, "layer"))
        meta["attributes"] = record.to_dict()
        _write_meta(path, json.dumps(meta, indent=2).encode())
    record, work = repack(path, progress=progress)
    if version == FORMAT_VERSION and not work:
        raise DiffsegError(f"{path} is already a format-{FORMAT_VERSION} cache packed by stride: nothing to migrate")
    return version, record


def repack(path: str | Path, packing: str = "stride", progress: bool = True) -> tuple[CacheRecord, bool]:
    """Copy every complete sample into the packs of `packing`, check the copy, switch the record to
    them and delete the old pack arrays (and any an interrupted repack left); -> (record, whether
    there was anything to do)."""
    reader = CacheReader(path)
    record = reader.record
    target = packs_for(record, reader.feature_names(), packing)
    old = reader.packing
    work = False
    if target != record.packs:
        work = True
        new_record = dataclasses.replace(record, packs=target)
        new = packing_of(new_record)
        made = list(new.arrays)
        if set(old.arrays) & set(made):  # creating them would empty arrays the record still reads
            raise DiffsegError(
                f"cannot migrate {path}: the new packs {sorted(set(old.arrays) & set(made))} have the names of "
                "arrays it holds now (a layer named like a pack?); nothing was changed"
            )
        checksum = str(record.codecs.get("features", "")).endswith(store.CHECKSUM_SUFFIX)
        group = store.open_group(path, "r+")
        for pack in new.packs.values():  # overwrite: a copy an interrupted run began starts over
            for suffix, (shape, dtype) in pack.parts.items():
                filters = zarr_filters(pack.codec) if suffix == "" else ()
                store.create_feature_array(
                    group, pack.name + suffix, record.samples, shape, np.dtype(dtype), filters, checksum=checksum
                )
        try:
            _copy(path, reader, new_record, progress)
        except Exception:
            for name in made:  # the partial copy goes; the record never named it
                store.delete_array(path, name)
            raise
        meta = json.loads(_read_meta(path) or b"{}")
        record = new_record
        meta["attributes"] = record.to_dict()
        _write_meta(path, json.dumps(meta, indent=2).encode())
    stale = sorted((set(old.arrays) - set(packing_of(record).arrays)) | set(_leftovers(path, record)))
    for name in stale:
        work = True
        store.delete_array(path, name)
    return record, work


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


def _copy(path, reader: CacheReader, new_record: CacheRecord, progress: bool) -> None:
    """Every complete sample's stored values into the packs of `new_record` (as stored: exact), each
    sample read back from them and compared."""
    writer = CacheWriter.open(path)
    view = CacheReader(path)
    view.record, view.packing = new_record, packing_of(new_record)  # the new packs, before the record names them
    for i in tqdm(reader.complete_indices(), desc=f"repack {path}", unit="sample", disable=not progress or None):
        parts = reader.read_stored(i, reader.feature_names())
        writer.write_packs(i, parts, view.packing, exact=True)
        _check_copy(path, reader, view, i, parts)


def _check_copy(path, reader: CacheReader, view: CacheReader, i: int, parts: Mapping) -> None:
    """Read sample i back from the new packs (`view`) and compare every stored part with the old one."""
    for name, old_parts in parts.items():
        got = view.read_parts(i, name)
        for suffix, value in old_parts.items():
            if not np.array_equal(got[suffix], value):
                raise DiffsegError(
                    f"cannot migrate {path}: sample {reader.ids[i]} (index {i}) reads back differently from the "
                    f"new packs ({name}{suffix}); the cache is left in its old packing (the partial copy deleted)"
                )


def _leftovers(path, record: CacheRecord) -> list[str]:
    """Arrays the record does not name that are named like a feature array or one of its parts: old
    pack arrays an interrupted migration left behind (any other array is not ours to delete)."""
    group = store.open_group(path, "r")
    old = {schema.feature_name(b, layer) for b in record.branches for layer in record.layers}
    names = [k for k, node in group.members(max_depth=None) if isinstance(node, zarr.Array)]
    return [k for k in unnamed(record, names) if k in old or k.rpartition(".")[0] in old]
