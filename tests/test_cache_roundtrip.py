"""Feature cache: byte-exact round trips, the completion marker, refusals, plain-Zarr readability."""

from __future__ import annotations

import os

import numpy as np
import pytest
import zarr
from helpers import by_hand

from diffseg.cache import CacheReader, CacheWriter, SkippedSample, schema
from diffseg.cache.chunkwrite import ChunkWriter
from diffseg.cache.synthetic import make_cache, sample_arrays, street_label
from diffseg.core.errors import DiffsegError


def expected(i: int, writer: CacheWriter, seed: int = 0):
    """What make_cache wrote for sample i (same seeded draws)."""
    r = CacheReader(writer.path)
    rng = np.random.default_rng([seed, i])
    H, W = r.label_shape
    label = street_label(rng, (H, W))
    return sample_arrays(rng, r.layer_specs, sorted(r.feature_names()), len(r.save_steps), label, "scene", 0.0), label


def test_round_trip_is_byte_exact(tmp_path):
    w = CacheWriter.open(make_cache(tmp_path / "c", 3, xattn_classes=4))
    r = CacheReader(tmp_path / "c")
    assert r.ids == ["city/img_00000", "city/img_00001", "city/img_00002"]
    assert r.complete_indices() == [0, 1, 2]
    for i in range(3):
        feats, label = expected(i, w)
        got = r.read(i, list(feats) + ["labels"])
        for name, a in feats.items():
            assert got[name].dtype == np.float16 and got[name].tobytes() == a.tobytes(), name
        assert np.array_equal(got["labels"], label)


def test_fast_path_equals_zarr_array_api(tmp_path):
    make_cache(tmp_path / "c", 2, save_steps=(60, 40, 20, 1), kind="eval")
    r = CacheReader(tmp_path / "c")
    assert {r.source(k).pack.mode for k in r.feature_names()} == {"raw"}
    assert r.source("labels").mode == "zstd"
    for name in r.feature_names() + ["labels", "orig_labels", "orig_sizes"]:
        full = by_hand(r, name, 1)
        assert np.array_equal(r.read(1, [name])[name], full), name
        if "/" in name:
            for steps in ([2], [1, 2], [3, 0], [0, 1, 2, 3]):
                assert np.array_equal(r.read(1, [name], steps=steps)[name], full[steps]), (name, steps)
    out = {"labels": np.zeros(r.label_shape, np.uint8)}
    r.read(0, ["labels"], out=out)
    assert np.array_equal(out["labels"], r.zarr_array("labels")[0])


def test_status_is_written_last_a_crash_leaves_the_sample_pending(tmp_path, monkeypatch):
    w = CacheWriter.open(make_cache(tmp_path / "c", 3, write=1))
    feats, label = expected(1, w)

    class Crash(Exception):
        pass

    zarr_setitem, chunk_write = zarr.Array.__setitem__, ChunkWriter.write

    def dies_on_status_write(array, key, value):
        """zarr's array assignment, except that writing the status array kills the process."""
        if array.path == schema.STATUS:
            raise Crash("killed before the marker")
        zarr_setitem(array, key, value)

    def dies_on_status_file(writer, i, value, exact=False):
        """The writer's direct chunk files (chunkwrite.py), likewise."""
        if writer.dir.endswith(f"/{schema.STATUS}"):
            raise Crash("killed before the marker")
        chunk_write(writer, i, value, exact)

    with monkeypatch.context() as m:
        m.setattr(zarr.Array, "__setitem__", dies_on_status_write)
        m.setattr(ChunkWriter, "write", dies_on_status_file)
        with pytest.raises(Crash):
            w.write_sample(1, feats, label)
    r = CacheReader(tmp_path / "c")
    name = r.feature_names()[0]
    assert r.source(name).file(1).exists()  # the arrays went out ...
    assert r.status.tolist() == [schema.COMPLETE, schema.PENDING, schema.PENDING]  # ... the marker did not
    with pytest.raises(DiffsegError, match=r"sample city/img_00001 \(index 1\) of .* is incomplete"):
        r.read(1, [name])
    # the rerun completes it, byte for byte what an uninterrupted run writes
    w2 = CacheWriter.open(tmp_path / "c")
    assert w2.pending() == [1, 2]
    w2.write_sample(1, feats, label)
    make_cache(tmp_path / "ref", 3, write=2)
    ref = CacheReader(tmp_path / "ref")
    assert CacheReader(tmp_path / "c").complete_indices() == [0, 1]
    for k in r.feature_names() + ["labels"]:
        assert r.source(k).file(1).read_bytes() == ref.source(k).file(1).read_bytes(), k


def test_non_finite_and_wrong_shapes_are_refused_naming_the_sample(tmp_path):
    w = CacheWriter.open(make_cache(tmp_path / "c", 2, write=0))
    feats, label = expected(0, w)
    name = sorted(feats)[0]
    bad = dict(feats, **{name: feats[name].copy()})
    bad[name].flat[3] = np.nan
    with pytest.raises(DiffsegError, match=rf"sample city/img_00000 \(index 0\): {name} holds 1 NaN/inf"):
        w.write_sample(0, bad, label)
    bad[name] = np.full_like(feats[name], np.inf)
    with pytest.raises(DiffsegError, match="NaN/inf"):
        w.write_sample(0, bad, label)
    with pytest.raises(DiffsegError, match=r"is float32\["):
        w.write_sample(0, dict(feats, **{name: feats[name].astype(np.float32)}), label)
    with pytest.raises(DiffsegError, match="label is uint8"):
        w.write_sample(0, feats, label[:-1])
    with pytest.raises(DiffsegError, match="do not match"):
        w.write_sample(0, {k: v for k, v in feats.items() if k != name}, label)
    assert w.pending() == [0, 1]


def test_orig_labels_round_trip_with_varying_sizes(tmp_path):
    w = CacheWriter.open(make_cache(tmp_path / "c", 4, kind="eval", resolution=(64, 32), write=0))
    sizes = [(32, 64), (48, 96), (33, 70), (40, 50)]
    rng = np.random.default_rng(1)
    origs = [rng.integers(0, 19, s, dtype=np.uint8) for s in sizes]
    for i, orig in enumerate(origs):
        feats, label = expected(i, w)
        w.write_sample(i, feats, label, orig)
    r = CacheReader(tmp_path / "c")
    assert r.is_eval and r.zarr_array("orig_labels").shape == (4, 48, 96)
    for i, orig in enumerate(origs):
        assert np.array_equal(r.orig_label(i), orig)
    assert r.zarr_array("orig_labels")[0, 40, 90] == 255  # padding is ignore
    feats, label = expected(0, w)
    with pytest.raises(DiffsegError, match="exceeds the planned maximum"):
        w.write_sample(0, feats, label, np.zeros((49, 10), np.uint8))
    with pytest.raises(DiffsegError, match="needs the original"):
        w.write_sample(0, feats, label)


def test_skipped_samples_are_refused_and_not_pending(tmp_path):
    w = CacheWriter.open(make_cache(tmp_path / "c", 3, write=1))
    w.mark_skipped(2)
    w.update_record(skipped=(SkippedSample(id=w.ids[2], reason="corrupt label"),))
    r = CacheReader(tmp_path / "c")
    assert r.status.tolist() == [1, 0, 2] and w.pending() == [1]
    assert r.record.skipped == (SkippedSample(id="city/img_00002", reason="corrupt label"),)
    with pytest.raises(DiffsegError, match="index 2.*is skipped"):
        r.read(2, ["labels"])


def test_plain_zarr_and_dask_read_the_cache(tmp_path):
    import dask.array as da

    make_cache(tmp_path / "c", 2, xattn_classes=3)
    r = CacheReader(tmp_path / "c")
    g = zarr.open_group(str(tmp_path / "c"), mode="r")
    assert g.attrs["format_version"] == 3 and g.attrs["layers"]["up3.xattn1"]["channels"] == 3
    assert list(g["ids"][:]) == r.ids
    assert g["status"][:].tolist() == [1, 1]
    name = "cond/up2.res2"
    pack = next(p for p, layers in g.attrs["packs"].items() if p.startswith("cond/") and "up2.res2" in layers)
    arr = g[pack]
    assert arr.chunks == (1, *arr.shape[1:]) and arr.dtype == np.float16
    x = da.from_zarr(str(tmp_path / "c"), component=pack)
    assert x.chunks[0] == (1, 1)
    assert np.array_equal(x.compute(), np.stack([by_hand(r, pack, i) for i in range(2)]))
    assert np.array_equal(
        np.stack([by_hand(r, name, i) for i in range(2)]), np.stack([r.read(i, [name])[name] for i in range(2)])
    )
    assert np.array_equal(
        da.from_zarr(str(tmp_path / "c"), component="labels")[1].compute(), r.read(1, ["labels"])["labels"]
    )


def test_a_layer_subset_reads_only_its_own_runs_of_the_pack(tmp_path, monkeypatch):
    """A pack holds a stride's layers side by side: after a sample's first (checked, whole) read, one layer
    at a step subset reads that layer's runs and nothing else."""
    from diffseg.cache import fastread

    layers = [f"up2.{kind}{j}" for kind in ("res", "blk") for j in (0, 1, 2)]
    make_cache(tmp_path / "c", 2, save_steps=(60, 40, 20, 1), layers=layers)
    r = CacheReader(tmp_path / "c")
    name = "cond/up2.res1"
    slot = r.packing.slots[name]
    assert len(r.packing.packs[slot.pack].layers) == 6  # res0-2 and blk0-2 of up2 share the pack
    counted = []
    real_open = open

    class Counting:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def seek(self, offset):
            return self.f.seek(offset)

        def read(self, n=-1):
            data = self.f.read(n)
            counted.append(len(data))
            return data

        def readinto(self, buf):
            got = self.f.readinto(buf)
            counted.append(got)
            return got

    real_preadv = os.preadv

    def preadv(fd, buffers, offset):
        got = real_preadv(fd, buffers, offset)
        counted.append(got)
        return got

    monkeypatch.setattr(fastread, "open", lambda *a, **k: Counting(real_open(*a, **k)), raising=False)
    monkeypatch.setattr(os, "preadv", preadv)
    whole = r.read(1, [name])[name]  # the first read checks the pack's chunk: whole
    assert sum(counted) >= 6 * whole.nbytes
    counted.clear()
    got = r.read(1, [name], steps=[3, 1])[name]
    assert np.array_equal(got, whole[[3, 1]])
    assert sum(counted) == got.nbytes  # two runs: this layer at two steps
    counted.clear()
    assert np.array_equal(r.read_parts(1, name)[""], whole) and sum(counted) == whole.nbytes


def test_step_selections_outside_the_saved_steps_are_refused_and_none_reads_nothing(tmp_path):
    make_cache(tmp_path / "c", 1, save_steps=(60, 20, 1))
    r = CacheReader(tmp_path / "c")
    name = r.feature_names()[0]
    for _ in range(2):  # the first read (checked, whole chunk) and a later one (runs) alike
        for steps in ([3], [-1], [0, 5]):
            with pytest.raises(DiffsegError, match=r"steps .* outside the 3 saved steps"):
                r.read(0, [name], steps=steps)
        r.read(0, [name])
    assert r.read(0, [name], steps=[])[name].shape[0] == 0
