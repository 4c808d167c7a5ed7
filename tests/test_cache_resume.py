"""Feature cache: resuming with the same config, refusing a different one (naming both values)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from diffseg.cache import CacheReader, CacheWriter, schema
from diffseg.cache.synthetic import layer_set, make_cache, synthetic_attrs
from diffseg.core.errors import CacheMismatch, DiffsegError


def request(save_steps=(60, 20, 1), n=3, fingerprint=None, split="train"):
    """(attrs, ids, arrays) as make_cache(n=3) asks for them."""
    layers = layer_set("tiny", (64, 64))
    attrs = synthetic_attrs(layers, list(save_steps), ["uncond", "cond"], (64, 64))
    if fingerprint:
        attrs["model"]["fingerprint"] = fingerprint
    attrs["dataset"]["split"] = split
    arrays = {
        f"{b}/{k}": ((len(save_steps), s.channels, *s.size), np.float16)
        for b in ("uncond", "cond")
        for k, s in layers.items()
    }
    return attrs, [f"city/img_{k:05d}" for k in range(n)], arrays


def test_same_config_opens_for_resume(tmp_path):
    make_cache(tmp_path / "c", 3, write=1)
    w = CacheWriter.create(tmp_path / "c", *request())
    assert w.pending() == [1, 2]
    assert CacheReader(tmp_path / "c").complete_indices() == [0]  # nothing was reset


def test_different_save_steps_refused_naming_both_values(tmp_path):
    make_cache(tmp_path / "gtav", 3, write=1)
    with pytest.raises(CacheMismatch) as err:
        CacheWriter.create(tmp_path / "gtav", *request(save_steps=(91, 52)))
    assert str(err.value) == (
        f"{tmp_path / 'gtav'} was extracted with extract.save_steps=[60, 20, 1]; this run asks for "
        "[91, 52]: use another --out or delete it"
    )


@pytest.mark.parametrize(
    "kw, key, old, new",
    [
        ({"fingerprint": "ab" * 8}, "model.fingerprint", "5e" * 8, "ab" * 8),
        ({"split": "val"}, "dataset.split", "train", "val"),
        ({"n": 4}, "samples", "3", "4"),
    ],
)
def test_other_differences_are_named(tmp_path, kw, key, old, new):
    make_cache(tmp_path / "c", 3, write=0)
    with pytest.raises(CacheMismatch, match=rf"extracted with {key}={old}; this run asks for {new}:"):
        CacheWriter.create(tmp_path / "c", *request(**kw))


def test_different_ids_are_named(tmp_path):
    make_cache(tmp_path / "c", 3, write=0)
    attrs, ids, arrays = request()
    ids[1] = "city/other"
    with pytest.raises(CacheMismatch, match=r"ids\[1\]=city/img_00001; this run asks for city/other"):
        CacheWriter.create(tmp_path / "c", attrs, ids, arrays)


def test_a_folder_that_is_not_a_cache_is_refused(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "notes.txt").write_text("mine")
    with pytest.raises(DiffsegError, match="exists and is not a diffseg cache"):
        CacheWriter.create(tmp_path / "c", *request())
    with pytest.raises(DiffsegError, match="not a Zarr group"):
        CacheReader(tmp_path / "c")


def test_writer_pickles_for_worker_processes_and_attrs_merge(tmp_path):
    w = make_cache(tmp_path / "c", 2, write=1)
    w2 = pickle.loads(pickle.dumps(w))  # what a dask worker receives: it reopens the cache and writes
    assert w2.pending() == [1]
    w2.mark_skipped(1)
    assert CacheReader(tmp_path / "c").status.tolist() == [schema.COMPLETE, schema.SKIPPED]
    w.update_attrs(timings={"extract_s": 1.5})
    w.update_attrs(skipped=[])
    attrs = CacheReader(tmp_path / "c").attrs
    assert attrs["timings"] == {"extract_s": 1.5} and attrs["skipped"] == []
    assert attrs["format_version"] == 1 and attrs["samples"] == 2
    assert attrs["codec"]["features"].startswith("bytes")
