"""The writer's direct chunk files (cache/chunkwrite.py) are the bytes zarr's array API writes."""

from __future__ import annotations

import numpy as np
import pytest

from diffseg.cache import CacheReader, CacheWriter, schema
from diffseg.cache import writer as writer_module
from diffseg.cache.synthetic import make_cache, sample_arrays, street_label
from diffseg.core.errors import DiffsegError


def _fill(path, n: int) -> None:
    """Write samples 0..n-2 (the last twice: a rewrite), skip sample n-1, as extraction would."""
    w = CacheWriter.open(path)
    r = CacheReader(path)
    H, W = r.label_shape
    for i in [*range(n - 1), n - 2]:
        rng = np.random.default_rng([7, i])
        label = street_label(rng, (H, W))
        feats = sample_arrays(rng, r.layer_specs, sorted(r.feature_names()), len(r.save_steps), label, "scene", 0.0)
        orig = street_label(rng, (H + 3, W + 5))
        digest = rng.integers(0, 256, 32, dtype=np.uint8)
        w.write_sample(i, feats, label, orig, digest)
    w.mark_skipped(n - 1)


def _files(path) -> dict[str, bytes]:
    return {str(f.relative_to(path)): f.read_bytes() for f in sorted(path.rglob("*")) if f.is_file()}


def test_direct_chunks_equal_zarr_array_api(tmp_path, monkeypatch):
    for name in ("direct", "zarr"):
        make_cache(tmp_path / name, 4, kind="eval", xattn_classes=3, write=0)
        CacheWriter.open(tmp_path / name).update_record(sample_hash=schema.SAMPLE_HASH)
    _fill(tmp_path / "direct", 4)
    monkeypatch.setattr(writer_module, "chunk_writer", lambda array, root: None)
    _fill(tmp_path / "zarr", 4)
    direct, via_zarr = _files(tmp_path / "direct"), _files(tmp_path / "zarr")
    assert sorted(direct) == sorted(via_zarr)
    assert sum(1 for k in direct if "/c/" in k) > 10  # chunk files, not only metadata
    for k in direct:
        assert direct[k] == via_zarr[k], k
    assert not [k for k in direct if k.endswith(".partial")]
    r = CacheReader(tmp_path / "direct")
    assert list(r.status) == [schema.COMPLETE] * 3 + [schema.SKIPPED]


def test_nonfinite_counts_float16_bits_and_other_dtypes():
    a = np.zeros((3, 5, 4), np.float16)
    assert writer_module.nonfinite(a) == 0
    a[0, 1, 2], a[2, 4, 3], a[1, 0, 0] = np.inf, np.nan, -np.inf
    a[1, 1, 1] = np.float16(65504)  # the largest finite float16
    assert writer_module.nonfinite(a) == 3
    assert writer_module.nonfinite(a[:, ::2]) == 2  # a strided view takes the np.isfinite path
    assert writer_module.nonfinite(a.astype(np.float32)) == 3


def test_a_sample_with_nan_is_refused_and_stays_pending(tmp_path):
    path = make_cache(tmp_path / "c", 2, write=0)
    w, r = CacheWriter.open(path), CacheReader(path)
    rng = np.random.default_rng(0)
    label = street_label(rng, r.label_shape)
    feats = sample_arrays(rng, r.layer_specs, sorted(r.feature_names()), len(r.save_steps), label, "scene", 0.0)
    name = sorted(feats)[0]
    feats[name].reshape(-1)[5] = np.nan
    with pytest.raises(DiffsegError, match=f"{name} holds 1 NaN/inf"):
        w.write_sample(0, feats, label)
    assert w.pending() == [0, 1]


def test_direct_bitround_chunks_are_rounded_as_zarr_rounds_them(tmp_path):
    """bitround is an array-to-array codec: the direct path applies it before zstd, as zarr does (it once
    wrote the values unrounded, losslessly, into a cache that says bitround)."""
    import zarr

    from diffseg.cache import codecs, store
    from diffseg.cache.chunkwrite import chunk_writer

    group = zarr.open_group(str(tmp_path), mode="w", zarr_format=3)
    with store.quiet_numcodecs():
        filters = codecs.zarr_filters(codecs.parse_codec("bitround:keepbits=3"))
        store.create_feature_array(group, "x", 2, (2, 3, 4, 4), np.float16, filters)
        array = group["x"]
        x = np.random.default_rng(0).standard_normal((2, 3, 4, 4)).astype(np.float16)
        writer = chunk_writer(array, tmp_path)
        assert writer is not None
        writer.write(0, x)
        array[1] = x
        assert np.array_equal(array[0], array[1]) and not np.array_equal(array[0], x)
    assert (tmp_path / "x/c/0/0/0/0/0").read_bytes() == (tmp_path / "x/c/1/0/0/0/0").read_bytes()
