"""Feature cache: resuming with the same config, refusing a different one (naming both values)."""

from __future__ import annotations

import pickle
from dataclasses import replace

import pytest

from diffseg.cache import CacheReader, CacheWriter, ViewsRule, schema
from diffseg.cache.synthetic import DEFAULT_LAYERS, TINY, make_cache, synthetic_record
from diffseg.core.errors import CacheMismatch, DiffsegError
from diffseg.core.layers import layer_specs


def request(save_steps=(60, 20, 1), n=3, fingerprint="5e" * 8, split="train", views_rule=None):
    """(record, ids) as make_cache(n=3) asks for them."""
    record = synthetic_record(
        layer_specs(TINY, DEFAULT_LAYERS, (64, 64), 0),
        n=n,
        save_steps=save_steps,
        branches=("uncond", "cond"),
        resolution=(64, 64),
        fingerprint=fingerprint,
        split=split,
    )
    if views_rule is not None:
        record = replace(record, extract=replace(record.extract, views_rule=views_rule))
    return record, [f"city/img_{k:05d}" for k in range(n)]


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
        f"{tmp_path / 'gtav'} was extracted with extract.trajectory.steps=[1, 20, 60]; this run asks for "
        "[52, 91]: use another --out or delete it"
    )


@pytest.mark.parametrize(
    "kw, key, old, new",
    [
        ({"fingerprint": "ab" * 8}, "model.fingerprint", "5e" * 8, "ab" * 8),
        ({"split": "val"}, "dataset.split", "train", "val"),
        ({"n": 4}, "extract.images", "3", "4"),
    ],
)
def test_other_differences_are_named(tmp_path, kw, key, old, new):
    make_cache(tmp_path / "c", 3, write=0)
    with pytest.raises(CacheMismatch, match=rf"extracted with {key}={old}; this run asks for {new}:"):
        CacheWriter.create(tmp_path / "c", *request(**kw))


def test_different_ids_are_named(tmp_path):
    make_cache(tmp_path / "c", 3, write=0)
    record, ids = request()
    ids[1] = "city/other"
    with pytest.raises(CacheMismatch, match=r"ids\[1\]=city/img_00001; this run asks for city/other"):
        CacheWriter.create(tmp_path / "c", record, ids)


def test_a_folder_that_is_not_a_cache_is_refused(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "notes.txt").write_text("mine")
    with pytest.raises(DiffsegError, match="exists and is not a diffseg cache"):
        CacheWriter.create(tmp_path / "c", *request())
    with pytest.raises(DiffsegError, match="not a Zarr group"):
        CacheReader(tmp_path / "c")


def test_writer_pickles_for_worker_processes_and_record_updates_merge(tmp_path):
    w = CacheWriter.open(make_cache(tmp_path / "c", 2, write=1))
    w2 = pickle.loads(pickle.dumps(w))  # what a dask worker receives: it reopens the cache and writes
    assert w2.pending() == [1]
    w2.mark_skipped(1)
    assert CacheReader(tmp_path / "c").status.tolist() == [schema.COMPLETE, schema.SKIPPED]
    w.update_record(timings={"extract_s": 1.5})
    w.update_record(skipped=())
    record = CacheReader(tmp_path / "c").record
    assert record.timings == {"extract_s": 1.5} and record.skipped == ()
    assert record.format_version == 3 and record.samples == 2 and record.codecs["features"] == "raw+crc32c"


def test_rewording_the_views_description_cannot_break_resume(tmp_path, monkeypatch):
    """The views rule is fields; its sentence is derived for people, never stored or compared."""
    crop = ViewsRule(mode="crop", scale=(96, 64), cat_max_ratio=0.75, redraws=10, flip=True)
    record, ids = request(views_rule=crop)
    CacheWriter.create(tmp_path / "c", record, ids)
    monkeypatch.setattr(ViewsRule, "describe", lambda self: "reworded: crops of the fitted image, see views.py")
    assert CacheWriter.create(tmp_path / "c", *request(views_rule=crop)).pending() == [0, 1, 2]
    assert "reworded" not in (tmp_path / "c" / "zarr.json").read_text()
    with pytest.raises(CacheMismatch, match=r"extract.views_rule.cat_max_ratio=0.75; this run asks for 0.5"):
        CacheWriter.create(tmp_path / "c", *request(views_rule=replace(crop, cat_max_ratio=0.5)))


def test_attention_backend_is_recorded_and_a_resume_with_another_is_refused(tmp_path):
    """xformers and SDPA round differently, so one cache holds one backend's features; caches written
    before the field ran SDPA (xformers serves only on CUDA) and read as such."""
    make_cache(tmp_path / "c", 3, write=1)
    assert CacheReader(tmp_path / "c").record.attention_backend == "sdpa"
    record, ids = request()
    old = record.to_dict()
    assert old.pop("attention_backend") == "sdpa"
    assert type(record).from_dict(old) == record
    with pytest.raises(CacheMismatch, match=r"extracted with attention_backend=sdpa; this run asks for xformers:"):
        CacheWriter.create(tmp_path / "c", replace(record, attention_backend="xformers"), ids)


def test_a_blk_sum_summed_in_float16_is_not_resumed_in_float32(tmp_path):
    """Caches before blk_sum_dtype summed --blk-sum's copies in the compute dtype (None, left out of the
    record so their hashes stay); a float16 run now sums in float32 and must not continue one."""
    make_cache(tmp_path / "c", 3, write=1)
    record, ids = request()
    assert "blk_sum_dtype" not in record.extract.to_dict() and record.extract.blk_sum_dtype is None
    now = replace(record, extract=replace(record.extract, blk_sum_dtype="float32"))
    assert type(record).from_dict(now.to_dict()) == now
    with pytest.raises(CacheMismatch, match=r"extracted with extract.blk_sum_dtype=null; this run asks for float32:"):
        CacheWriter.create(tmp_path / "c", now, ids)
