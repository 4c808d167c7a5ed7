"""Completeness where cached data is read: a chunk missing from a sample marked complete is an error
(reader, dataset, loader, verify, train; never the fill value), an array whose zarr.json disagrees
with the cache record is refused by name, and train/eval refuse a cache with pending samples unless
--allow-partial, recording the samples they used."""

import json
import re

import numpy as np
import pytest
import torch
from helpers import FAST_TRAIN, SMALL
from typer.testing import CliRunner

from diffseg.cache import CacheReader, CacheWriter, FeatureDataset
from diffseg.cache.fastread import MissingChunk
from diffseg.cache.loader import BatchLoader
from diffseg.cache.synthetic import make_cache
from diffseg.cli import app
from diffseg.core.errors import DiffsegError
from diffseg.stages.train import job as train

RUNNER = CliRunner()
CLI_TRAIN = ["--fusion", "light", "--iters", "2", "--warmup", "0", "--eval-every", "0", "--workers", "0"]
EVAL = dict(kind="eval", split="val", branches=("uncond",), **SMALL)


def _invoke(*args):
    return RUNNER.invoke(app, [str(a) for a in args])


def _drop_chunk(cache, name: str, i: int) -> None:
    CacheReader(cache).source(name).file(i).unlink()


def _pack(cache, name: str) -> str:
    """The stored array that holds feature array `name` (itself for any other array)."""
    slot = CacheReader(cache).packing.slots.get(name)
    return name if slot is None else slot.pack


def _edit_metadata(cache, name: str, edit) -> None:
    path = cache / _pack(cache, name) / "zarr.json"
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))


# -- a missing chunk ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["uncond/up1.res2", "labels", "orig_labels", "orig_sizes"])
def test_a_missing_chunk_of_a_complete_sample_is_an_error_naming_cache_array_and_sample(tmp_path, name):
    cache = make_cache(tmp_path / "c", 3, kind="eval")
    _drop_chunk(cache, name, 1)
    r = CacheReader(cache)
    with pytest.raises(MissingChunk) as err:
        r.read(1, [*r.feature_names(), "labels"])
        r.orig_label(1)
    message = str(err.value)
    assert str(cache) in message and name in message and "city/img_00001 (index 1)" in message
    assert "\n" not in message
    r.read(0, [*r.feature_names(), "labels"])  # the other samples read as before
    r.orig_label(2)


@pytest.mark.parametrize("in_memory", [False, True])
def test_the_dataset_and_the_loader_refuse_a_sample_without_its_label_chunk(tmp_path, in_memory):
    cache = make_cache(tmp_path / "c", 4, **SMALL)
    _drop_chunk(cache, "labels", 2)
    data = FeatureDataset(cache, ("uncond",), ("up1.res2",), in_memory=in_memory, encoded=True)

    def batches() -> list:
        with BatchLoader(data, [[0, 1], [2, 3]], device=torch.device("cpu"), readers=1) as loader:
            return list(loader)

    with pytest.raises(MissingChunk, match=r"img_00002.*labels"):
        batches()
    if not in_memory:
        with pytest.raises(MissingChunk, match="img_00002"):
            data[2]


def test_train_on_a_cache_with_a_missing_feature_chunk_exits_1_in_one_line(tmp_path):
    cache = make_cache(tmp_path / "c", 3, **SMALL)
    _drop_chunk(cache, "cond/up2.res2", 1)
    # uniform sampling, one iteration of batch 3 visits every sample
    result = _invoke(
        "train", "--cache", cache, "--out", tmp_path / "run", "--batch-size", 3, "--rcs-temperature", 0, *CLI_TRAIN
    )
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "cond/up2.res2" in result.output and "img_00001" in result.output and "missing" in result.output
    assert not (tmp_path / "run" / "weights.safetensors").exists()


def test_verify_reports_a_missing_chunk_and_counts_what_read_back(tmp_path):
    cache = make_cache(tmp_path / "c", 3, kind="eval")
    _drop_chunk(cache, "orig_labels", 2)
    result = _invoke("cache", "verify", cache, "--json")
    assert result.exit_code == 1
    d = json.loads(result.stdout)
    assert d["complete"] == 3 and d["read_back"] == 2 and len(d["problems"]) == 1
    assert "img_00002 (index 2)" in d["problems"][0] and "orig_labels" in d["problems"][0]
    text = _invoke("cache", "verify", cache).stdout
    assert "2 of 3 complete samples read back" in text and "1 problem\n" in text


def test_a_missing_chunk_on_an_object_store_is_an_error_too(tmp_path, monkeypatch):
    """zarr's path (an fsspec URL) asks the store whether the chunk exists: zarr alone reads zeros."""
    fsspec = pytest.importorskip("fsspec")
    import zarr

    url = "memory://h6-missing/c"
    make_cache(url, 2, **SMALL)
    fs = fsspec.filesystem("memory")
    pack = CacheReader(url).packing.slots["uncond/up2.res2"].pack
    fs.rm(f"/h6-missing/c/{pack}/c/1/0/0/0/0")
    assert not np.asarray(zarr.open_array(url, path=pack, mode="r")[1]).any()  # zarr: fill value
    r = CacheReader(url)
    with pytest.raises(
        MissingChunk, match=rf"{pack} chunk c/1/0/0/0/0 \(it holds .*uncond/up2.res2.*\) is missing from"
    ):
        r.read(1, ["uncond/up2.res2"])
    assert r.read(0, ["uncond/up2.res2"])["uncond/up2.res2"].any()


# -- array metadata against the record ------------------------------------------------------------
EDITS = {
    "dtype": ("uncond/up1.res2", lambda m: m.update(data_type="uint16"), "dtype uint16, the cache record says float16"),
    "shape": ("labels", lambda m: m.update(shape=[3, 64, 32], chunk_grid=_grid([1, 64, 32])), "shape [3, 64, 32]"),
    "codec": ("cond/up1.res2", lambda m: m.update(codecs=m["codecs"][:1]), "codecs raw, the cache record says raw+"),
}


def _grid(chunks):
    return {"name": "regular", "configuration": {"chunk_shape": chunks}}


@pytest.mark.parametrize("what", sorted(EDITS))
def test_an_array_whose_metadata_disagrees_with_the_record_is_refused_and_reported(tmp_path, what):
    name, edit, words = EDITS[what]
    cache = make_cache(tmp_path / "c", 3, resolution=(64, 32))
    _edit_metadata(cache, name, edit)
    r = CacheReader(cache)
    with pytest.raises(DiffsegError, match=re.escape(f"{_pack(cache, name)}: its zarr.json says {words}")):
        r.read(0, [name])
    result = _invoke("cache", "verify", cache, "--json")
    d = json.loads(result.stdout)
    assert result.exit_code == 1 and d["read_back"] == 0
    assert len(d["problems"]) == 1 and _pack(cache, name) in d["problems"][0] and words in d["problems"][0]
    assert "0 of 3 complete samples read back" in _invoke("cache", "verify", cache).stdout


def test_train_refuses_a_feature_array_edited_to_another_dtype(tmp_path):
    cache = make_cache(tmp_path / "c", 3, **SMALL)
    _edit_metadata(cache, "uncond/up2.res2", lambda m: m.update(data_type="uint16"))
    result = _invoke("train", "--cache", cache, "--out", tmp_path / "run", *CLI_TRAIN)
    assert result.exit_code == 1 and "Traceback" not in result.output
    pack = _pack(cache, "uncond/up2.res2")
    assert f"{pack}: its zarr.json says dtype uint16, the cache record says float16" in result.output


# -- pending samples --------------------------------------------------------------------------------
def test_train_refuses_a_cache_with_pending_samples_unless_allowed_and_records_the_samples_used(tmp_path):
    cache = make_cache(tmp_path / "c", 5, write=4, **SMALL)
    with pytest.raises(DiffsegError, match=r"1 of 5 samples are still pending.*--allow-partial"):
        train.main(cache=cache, out=tmp_path / "refused", **FAST_TRAIN)
    assert not (tmp_path / "refused").exists()
    run = train.main(cache=cache, out=tmp_path / "run", allow_partial=True, **FAST_TRAIN)
    recorded = json.loads((run / "caches.json").read_text())["train"]
    assert recorded["samples"] == 5 and recorded["partial"] == {"pending": 1, "used": 4, "indices": [0, 1, 2, 3]}
    # resumed, it reads the same samples or refuses: here one of them turned pending again (a rewrite started)
    (cache / "status" / "c" / "3").unlink()
    with pytest.raises(DiffsegError, match=r"started on 4 complete samples \(1 pending\).*now has 3 complete"):
        train.main(cache=cache, out=run, resume=True, allow_partial=True, **FAST_TRAIN)
    # a finished cache with a sample skipped for a recorded reason (an unreadable image) is complete
    w = CacheWriter.open(cache)
    w.mark_skipped(3)
    w.mark_skipped(4)
    whole = train.main(cache=cache, out=tmp_path / "run2", **FAST_TRAIN)
    assert "partial" not in json.loads((whole / "caches.json").read_text())["train"]


def test_train_refuses_a_pending_evaluation_cache_on_the_command_line(tmp_path):
    cache = make_cache(tmp_path / "gtav", 3, **SMALL)
    ev = make_cache(tmp_path / "cs", 4, write=3, dataset="cityscapes", **EVAL)
    args = ["train", "--cache", cache, "--eval-cache", ev, *CLI_TRAIN, "--device", "cpu"]
    result = _invoke(*args, "--out", tmp_path / "run")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "1 of 4 samples are still pending" in result.output and str(ev) in result.output
    assert _invoke(*args, "--out", tmp_path / "run2", "--allow-partial").exit_code == 0


def test_eval_refuses_a_cache_with_pending_samples_unless_allowed_and_reports_the_samples_scored(tmp_path):
    run = train.main(cache=make_cache(tmp_path / "gtav", 3, **SMALL), out=tmp_path / "run", **FAST_TRAIN)
    ev = make_cache(tmp_path / "cs", 5, write=3, dataset="cityscapes", **EVAL)
    refused = _invoke("eval", "--run", run, "--cache", ev, "--json", "--device", "cpu")
    assert refused.exit_code == 1 and "2 of 5 samples are still pending" in refused.output
    assert not (run / "eval").exists()
    result = _invoke("eval", "--run", run, "--cache", ev, "--json", "--device", "cpu", "--allow-partial")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["samples"] == 3 and report["partial"] == {"pending": 2, "used": 3, "indices": [0, 1, 2]}
    assert json.loads((run / "eval" / "cs.json").read_text())["partial"] == report["partial"]
