"""`diffseg cache info | verify | show | migrate`: what a cache holds, whether every sample reads
back, pictures of its features (docs/design/architecture.md "Command line"), and format-1 and -2 caches brought
to format 3."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from diffseg.cache import CacheReader, schema
from diffseg.cache.expected import unnamed
from diffseg.cache.fastread import keep_freed_memory
from diffseg.core.classes import IGNORE

MAX_LISTED = 20  # problems printed one per line before "... and N more"


def describe(r: CacheReader) -> dict:
    """The cache's description as `info --json` prints it."""
    complete = int((r.status == schema.COMPLETE).sum())
    skipped = int((r.status == schema.SKIPPED).sum())
    layers = {}
    for name, spec in r.layer_specs.items():
        held = [b for b in r.branches if schema.feature_name(b, name) in r.feature_names()]
        shape = r.array_shape(schema.feature_name(held[0], name)) if held else ()
        layers[name] = {
            **spec.to_dict(),
            "branches": held,
            "shape": list(shape),
            "bytes": int(np.prod(shape)) * 2 if held else 0,
        }
    bps = r.bytes_per_sample()
    rec = r.record.to_dict()
    stored, decoded = r.stored_feature_bytes()
    return {
        "path": str(r.path),
        "format_version": rec["format_version"],
        "diffseg_version": rec["diffseg_version"],
        "kind": rec["kind"],
        "model": rec["model"],
        "dataset": rec["dataset"],
        "resolution": rec["resolution"],
        "save_steps": r.save_steps,
        "branches": r.branches,
        "layers": layers,
        "bytes_per_sample": bps,
        "bytes_complete": bps * complete,
        "samples": r.n,
        "complete": complete,
        "pending": r.n - complete - skipped,
        "skipped": skipped,
        "skipped_samples": rec["skipped"],
        "codecs": rec["codecs"],
        "codec": rec["codecs"].get("features", "raw"),
        "feature_bytes_stored": stored,
        "feature_bytes_decoded": decoded,
        "compression_ratio": decoded / stored if stored else None,
        "sample_hash": rec["sample_hash"],
        "packs": rec["packs"],
        "files_per_sample": files_per_sample(r),
        "views": r.record.extract.views_rule.describe(),
        "extract": rec["extract"],
        "timings": rec["timings"],
    }


def files_per_sample(r: CacheReader) -> int:
    """Chunk files (objects) one sample owns: every per-sample array's chunk (packs and their codec
    parts, labels, status, source hash, an evaluation cache's original labels and sizes)."""
    packs = len(r.packing.arrays)
    own = [schema.LABELS, schema.STATUS, schema.ORIG_LABELS, schema.ORIG_SIZES, r.record.sample_hash]
    return packs + sum(1 for k in own if k is not None and k in r.group)


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError


def _ratio_text(d: dict) -> str:
    """How much smaller the written features are than raw float16 (files on disk, complete samples)."""
    if not d["feature_bytes_stored"]:
        return ""
    return (
        f"   features on disk {_size(d['feature_bytes_stored'])} for {_size(d['feature_bytes_decoded'])} of "
        f"float16: ratio {d['compression_ratio']:.2f}x"
    )


def _extract_lines(extract: dict) -> list[str]:
    """The extraction config, one `key: value` per line (long values shortened)."""
    lines = []
    for key, value in extract.items():
        text = value if isinstance(value, str) else json.dumps(value)
        lines.append(f"  {key}: {text if len(text) <= 100 else text[:97] + '...'}")
    return lines


def info(cache: str | Path, as_json: bool) -> int:
    d = describe(CacheReader(cache))
    if as_json:
        print(json.dumps(d))
        return 0
    m, ds = d["model"] or {}, d["dataset"] or {}
    W, H = d["resolution"]
    out = [
        f"cache      {d['path']}  ({d['kind']} cache, format {d['format_version']}, diffseg {d['diffseg_version']})",
        f"model      {m.get('name')}  fingerprint {m.get('fingerprint')}  ({m.get('prediction_type')})",
        f"dataset    {ds.get('name')} / {ds.get('split')}  ({ds.get('label_space')}) {json.dumps(ds.get('info', {}))}",
        f"resolution {W}x{H}   branches {', '.join(d['branches'])}   saved steps {d['save_steps']}",
        f"codec      {d['codec']}" + _ratio_text(d),
        f"codecs     {json.dumps(d['codecs'])}",
        f"packs      {len(d['packs'])} feature arrays ({', '.join(d['packs'])}); {d['files_per_sample']} files per sample",
        f"views      {d['views']}",
        "config",
        *_extract_lines(d["extract"] or {}),
        "",
        f"  {'layer':12s} {'kind':5s} {'stride':>6s} {'channels':>8s} {'size':>7s} {'bytes/branch':>13s}  branches",
    ]
    for name, L in d["layers"].items():
        size = f"{L['size'][0]}x{L['size'][1]}"
        out.append(
            f"  {name:12s} {L['kind']:5s} {L['stride']:6d} {L['channels']:8d} {size:>7s} "
            f"{_size(L['bytes']):>13s}  {','.join(L['branches']) or '-'}"
        )
    out += [
        "",
        f"bytes per sample {_size(d['bytes_per_sample'])} ({d['bytes_per_sample']} B, all branches and labels)",
        f"samples {d['samples']} planned: {d['complete']} complete, {d['pending']} pending, {d['skipped']} skipped"
        f"  ({_size(d['bytes_complete'])} written)",
    ]
    for s in d["skipped_samples"][:MAX_LISTED]:
        out.append(f"  skipped {s.get('id')}: {s.get('reason')}")
    print("\n".join(out))
    return 0


def array_problems(r: CacheReader) -> dict[str, str]:
    """{array: how its metadata disagrees with the cache record} (dtype, shape, chunks, codecs)."""
    found = {name: r.array_problem(name) for name in r.array_names()}
    return {name: p for name, p in found.items() if p is not None}


def stray_arrays(r: CacheReader) -> list[str]:
    """Arrays the cache record says nothing of: an interrupted `cache migrate` leaves its old ones."""
    root = str(r.path).rstrip("/")
    return [
        f"{root}/{name}: an array the cache record does not name (left by an interrupted `diffseg cache migrate`? "
        "run it again to delete it)"
        for name in unnamed(r.record, r.array_names())
    ]


def sample_problems(
    r: CacheReader, i: int, names: list[str] | None = None, orig_label: bool | None = None
) -> list[str]:
    """What is wrong with complete sample i: unreadable (a chunk missing or corrupt), wrong shape,
    non-finite, bad label. `names`: the arrays to read (default: every feature array and the labels);
    `orig_label`: read the original label too (default: in an evaluation cache)."""
    who = f"sample {r.ids[i]} (index {i})"
    names = r.feature_names() + [schema.LABELS] if names is None else names
    try:
        arrays = r.read(i, names)
        orig = r.orig_label(i) if (r.is_eval if orig_label is None else orig_label) else None
    except (OSError, ValueError, RuntimeError) as err:  # reported with the sample id, not raised
        text = str(err)
        return [text if text.startswith(who) else f"{who}: unreadable: {text}"]
    problems = []
    for name, a in arrays.items():
        if a.shape != r.array_shape(name):
            problems.append(f"{who}: {name} has shape {list(a.shape)}, expected {list(r.array_shape(name))}")
        elif a.dtype.kind == "f" and not np.isfinite(a).all():
            problems.append(f"{who}: {name} holds {int(a.size - np.isfinite(a).sum())} NaN/inf values")
    if schema.LABELS in arrays:
        k = r.record.dataset.class_table.num_classes
        bad = np.setdiff1d(np.unique(arrays[schema.LABELS]), np.r_[np.arange(k), IGNORE])
        if bad.size:
            problems.append(f"{who}: labels hold values {bad.tolist()} outside 0..{k - 1} and {IGNORE}")
    if orig is not None and min(orig.shape) == 0:
        problems.append(f"{who}: original label has empty size {list(orig.shape)}")
    return problems


def _readable(r: CacheReader, bad: dict[str, str]) -> list[str]:
    """The arrays verify reads for every sample (features, labels, an evaluation cache's original labels
    and sizes), less those whose metadata is already reported (each would fail every sample alike)."""
    names = r.feature_names() + [schema.LABELS] + ([schema.ORIG_LABELS, schema.ORIG_SIZES] if r.is_eval else [])
    slots = r.packing.slots

    def stored(k: str) -> str:  # the array a name's bytes are in: its pack, for a feature array
        return slots[k].pack if k in slots else k

    return [
        k
        for k in names
        if not any(b in (k, stored(k)) or b.startswith((k + ".", stored(k) + ".")) for b in bad)  # pca's basis: k.
    ]


def stale_samples(r: CacheReader, root: str | Path | None) -> list[str]:
    """Complete samples whose source (image and label pixels) no longer hashes as at extraction."""
    from tqdm import tqdm

    from diffseg.core.errors import DataError
    from diffseg.data import open_dataset
    from diffseg.stages.extract.hashing import sample_digest

    name = r.record.sample_hash
    if name is None:
        return [f"{r.path} keeps no source hashes (extracted before they were recorded): --data cannot check it"]
    ds_rec = r.record.dataset
    info = ds_rec.info
    ds = open_dataset(
        ds_rec.name,
        root=root,
        split=ds_rec.split,
        mapillary_map=info.get("mapillary_map", "A"),  # the adapter options the cache recorded
        conditions=info.get("conditions"),
        demo_size=tuple(info.get("size", r.record.resolution)),
        demo_count=info.get("count"),
        seed=info.get("seed", 0),
    )
    index = {sid: k for k, sid in enumerate(ds.ids)}
    hashes = r.zarr_array(name)
    problems = []
    for i in tqdm(r.complete_indices(), desc=f"hash sources of {r.path}", unit="sample", disable=None):
        who = f"sample {r.ids[i]} (index {i})"
        image_id = schema.image_of(r.ids[i])
        if image_id not in index:
            problems.append(f"{who}: stale: no longer in {ds_rec.name} {ds_rec.split} (root {ds.root})")
            continue
        try:
            s = ds.load(index[image_id])
        except DataError as err:
            problems.append(f"{who}: stale: the source no longer loads: {err}")
            continue
        if not np.array_equal(sample_digest(s.image, s.label), np.asarray(hashes[i])):
            problems.append(f"{who}: stale: its image or label changed since extraction (sha256 differs)")
    return problems


def verify(cache: str | Path, as_json: bool, data: bool = False, root: str | Path | None = None) -> int:
    from tqdm import tqdm

    keep_freed_memory()  # cache/fastread.py: reused sample buffers instead of page faults on every read
    r = CacheReader(cache)
    pending = r.pending_indices()
    problems = [f"sample {r.ids[i]} (index {i}): pending (never completed)" for i in pending]
    bad = array_problems(r)
    problems += list(bad.values()) + stray_arrays(r)
    names = _readable(r, bad)
    orig = {schema.ORIG_LABELS, schema.ORIG_SIZES} <= set(names)
    names = [k for k in names if k not in (schema.ORIG_LABELS, schema.ORIG_SIZES)]
    complete = r.complete_indices()
    read_back = 0
    for i in tqdm(complete, desc=f"verify {cache}", unit="sample", disable=None):
        found = sample_problems(r, i, names, orig)
        problems += found
        read_back += not found
    if bad:
        read_back = 0  # an array that disagrees with the record: no sample reads back whole
    if data:
        problems += stale_samples(r, root)
    result = {
        "path": str(cache),
        "samples": r.n,
        "complete": len(complete),
        "read_back": read_back,
        "pending": len(pending),
        "skipped": int((r.status == schema.SKIPPED).sum()),
        "problems": problems,
    }
    if as_json:
        print(json.dumps(result))
    else:
        print(
            f"{cache}: {r.n} samples: {read_back} of {len(complete)} complete samples read back, "
            f"{len(pending)} pending, {result['skipped']} skipped; {_count(len(problems), 'problem')}"
        )
        for p in problems[:MAX_LISTED]:
            print(f"  {p}")
        if len(problems) > MAX_LISTED:
            print(f"  ... and {len(problems) - MAX_LISTED} more")
    return 1 if problems else 0


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def show(cache: str | Path, out: Path, sample: int, overwrite: bool = False) -> int:
    from diffseg.stages.tools import cacheshow

    paths = cacheshow.write_pictures(CacheReader(cache), Path(out), sample, overwrite=overwrite)
    for p in paths:
        print(p)
    return 0


def migrate(cache: str | Path) -> int:
    """Bring a format-1 or -2 cache to format 3 in place (cache/migrate.py), holding the cache's
    extraction lock and its record lock: no extraction writes it meanwhile."""
    from diffseg.cache.migrate import migrate as migrate_cache
    from diffseg.stages.extract import share

    with share.exclusive(str(cache), None), share.creating(str(cache)):
        share.refuse_live_shards(str(cache))
        was, record = migrate_cache(cache)
    packs = sorted(record.packs)
    print(
        f"{cache}: migrated from cache format {was} to {record.format_version} ({record.samples} samples; "
        f"features in {len(packs)} packs: {', '.join(packs)})"
    )
    return 0


def convert(cache: str | Path, codec: str, out: str | Path) -> int:
    """Re-encode `cache` with another feature codec into `out` (cache/convert.py)."""
    from diffseg.cache.convert import convert as convert_cache

    counts = convert_cache(cache, codec, out)
    d = describe(CacheReader(out))
    print(
        f"{out}: {counts['written']} samples written, {counts['kept']} already done, {counts['skipped']} skipped; "
        f"codec {d['codecs']['features']}, features {_size(d['feature_bytes_stored'])} on disk "
        f"(ratio {d['compression_ratio']:.2f}x to raw float16)"
    )
    return 0
