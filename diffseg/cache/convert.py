"""`diffseg cache convert SRC --codec SPEC --out DST`: re-encode a cache without the U-Net.

DST gets SRC's record with another feature codec (codecs.py) and the same samples: every complete
SRC sample is decoded to float16 and written through the CacheWriter (status last), skipped ones
stay skipped, pending ones stay pending. A rerun resumes: DST's complete samples are kept, the others
written. pca's basis is fitted on the same seeded calibration subset an extraction would use
(`calibration_indices` over the N planned samples; the complete ones among them), so a converted raw
cache equals a direct extraction with that codec, byte for byte.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from diffseg.cache import codecs, schema
from diffseg.cache.reader import CacheReader
from diffseg.cache.store import is_cache
from diffseg.cache.writer import CacheWriter, feature_arrays
from diffseg.core.errors import DiffsegError


def fit_shared(
    spec: str, names: Sequence[str], n: int, sample: Callable[[int], dict[str, np.ndarray] | None]
) -> dict[str, dict[str, np.ndarray]]:
    """{array: {".basis", ".mean"}} for the pca arrays of `spec`, fitted on the seeded calibration subset.

    `sample(i)` -> {array: float16 [S, C, h, w]} of planned sample i (None: it cannot be read; skipped)."""
    resolved = codecs.resolve(spec, names)
    pca = {k: c for k, c in resolved.items() if c.name == "pca"}
    if not pca:
        return {}
    # one fit per layer and codec, pooled over the branches that share them: both branches feed the same
    # fusion block, so a shared basis lets training fold it into the block's first 1x1 maps (nn/fusion.py)
    groups: dict[tuple[str, str], list[str]] = {}
    for k, c in pca.items():
        groups.setdefault((k.partition("/")[2], str(c)), []).append(k)
    needs = {
        key: set(codecs.calibration_indices(n, int(pca[m[0]].p["calib"]), int(pca[m[0]].p["seed"])))
        for key, m in groups.items()
    }
    fits: dict[tuple[str, str], codecs.PcaFit] = {}
    for i in sorted(set().union(*needs.values())):  # each sample computed (or read) once
        arrays = sample(i)
        if arrays is None:
            continue
        for key, members in sorted(groups.items()):
            if i in needs[key]:
                for k in sorted(members):  # one order always: the float64 sums are then bit-identical
                    fits.setdefault(key, codecs.PcaFit(arrays[k].shape[1])).add(arrays[k])
    missing = sorted(k for key, members in groups.items() if key not in fits for k in members)
    if missing:
        raise DiffsegError(f"pca: no calibration sample could be read for {missing}")
    bases = {key: fits[key].basis(pca[members[0]].k(fits[key].sum.shape[0])) for key, members in groups.items()}
    return {k: bases[key] for key, members in groups.items() for k in members}


def convert(src: str | Path, spec: str, out: str | Path, progress: bool = True) -> dict:
    """Re-encode SRC into OUT with the codec spec; -> {"written", "skipped", "kept"} counts."""
    if str(src).rstrip("/") == str(out).rstrip("/"):
        raise DiffsegError(f"cache convert: --out {out} is the source cache; choose another folder")
    r = CacheReader(src)
    spec = codecs.normalize_spec(spec)
    names = r.feature_names()
    arrays = {k: v for k, v in feature_arrays(r.record).items() if k in names}
    record = dataclasses.replace(r.record, codecs={"features": spec})
    orig_max = tuple(r.zarr_array(schema.ORIG_LABELS).shape[1:]) if r.is_eval else None

    def sample(i: int) -> dict[str, np.ndarray] | None:
        return r.read(i, names) if r.status[i] == schema.COMPLETE else None

    shared = None if is_cache(out) else fit_shared(spec, names, r.n, sample)  # a resume keeps its basis
    writer = CacheWriter.create(out, record, r.ids, arrays, orig_label_max=orig_max, shared=shared)  # type: ignore[arg-type]
    done = writer.status()
    counts = {"written": 0, "skipped": 0, "kept": int((done != schema.PENDING).sum())}
    hashes = r.record.sample_hash is not None and r.record.sample_hash in r.group
    for i in range(r.n):
        if done[i] != schema.PENDING or r.status[i] == schema.PENDING:
            continue
        if r.status[i] == schema.SKIPPED:
            writer.mark_skipped(i)
            counts["skipped"] += 1
            continue
        feats = r.read(i, names)
        label = r.read(i, [schema.LABELS])[schema.LABELS]
        digest = np.asarray(r.zarr_array(r.record.sample_hash)[i]) if hashes else None  # type: ignore[arg-type]
        writer.write_sample(i, feats, label, r.orig_label(i) if r.is_eval else None, digest)
        counts["written"] += 1
        if progress and counts["written"] % 50 == 0:
            print(f"convert: {counts['written']} samples written", flush=True)
    if r.record.skipped:
        writer.update_record(skipped=r.record.skipped)
    return counts
