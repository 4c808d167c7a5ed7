"""FeatureDataset: worker processes, in-memory mode and step selection give the same items."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from diffseg.cache import CacheReader, FeatureDataset, dataset
from diffseg.cache.synthetic import make_cache
from diffseg.core.errors import DiffsegError

LAYERS = ["up1.res2", "up3.blk1"]


def assert_items_equal(a: dict, b: dict) -> None:
    assert a["index"] == b["index"] and torch.equal(a["label"], b["label"])
    for branch, layers in a["feats"].items():
        for layer, x in layers.items():
            assert torch.equal(x, b["feats"][branch][layer]), (branch, layer)


@pytest.fixture()
def cache(tmp_path):
    make_cache(tmp_path / "c", 5, write=4)  # sample 4 stays pending
    return tmp_path / "c"


def test_items_cover_complete_samples_with_selected_steps(cache):
    ds = FeatureDataset(cache, ["cond", "uncond"], LAYERS, step_indices=[2, 0])
    assert len(ds) == 4 and ds.indices == [0, 1, 2, 3]
    item = ds[3]
    r = CacheReader(cache)
    assert item["index"] == 3 and item["label"].dtype == torch.int64 and item["label"].shape == (64, 64)
    x = item["feats"]["cond"]["up3.blk1"]
    assert x.dtype == torch.float16 and x.shape == (2, 32, 8, 8)
    full = r.read(3, ["cond/up3.blk1"])["cond/up3.blk1"]
    assert np.array_equal(x.numpy(), full[[2, 0]])


def test_dataloader_with_two_workers_matches_in_process(cache):
    ds = FeatureDataset(cache, ["uncond", "cond"], LAYERS, step_indices=[1])
    pickle.dumps(ds)  # picklable before use ...
    local = [ds[k] for k in range(len(ds))]
    pickle.dumps(ds)  # ... and after opening its reader
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)
    remote = list(loader)
    assert len(remote) == len(local)
    for a, b in zip(local, remote):
        assert_items_equal(a, b)


def test_in_memory_equals_lazy(cache):
    lazy = FeatureDataset(cache, ["uncond"], LAYERS, step_indices=[0, 2])
    mem = FeatureDataset(cache, ["uncond"], LAYERS, step_indices=[0, 2], in_memory=True)
    for k in range(len(lazy)):
        assert_items_equal(lazy[k], mem[k])
    mem.preload()  # in the main process: forked workers share it, and hand out copies
    for a, b in zip(torch.utils.data.DataLoader(mem, batch_size=None, num_workers=2), (lazy[k] for k in range(4))):
        assert_items_equal(a, b)
    assert mem.selection_bytes() == 4 * (64 * 64 + 2 * 2 * (64 * 2 * 2 + 32 * 8 * 8))


def test_in_memory_refuses_when_it_cannot_fit(cache, monkeypatch):
    monkeypatch.setattr(dataset, "available_memory", lambda: 1000)
    ds = FeatureDataset(cache, ["uncond"], LAYERS, in_memory=True)
    with pytest.raises(DiffsegError, match="--in-memory needs .* GiB for 4 samples"):
        ds[0]


def test_unknown_layer_or_step_is_refused(cache):
    with pytest.raises(DiffsegError, match="has no uncond/up9.res0"):
        FeatureDataset(cache, ["uncond"], ["up9.res0"])
    with pytest.raises(DiffsegError, match="step index 3 is outside"):
        FeatureDataset(cache, ["uncond"], LAYERS, step_indices=[3])


def test_orig_label_of_eval_cache(tmp_path):
    make_cache(tmp_path / "e", 2, kind="eval", branches=("uncond",))
    ds = FeatureDataset(tmp_path / "e", ["uncond"], LAYERS)
    r = CacheReader(tmp_path / "e")
    h, w = r.zarr_array("orig_sizes")[1]
    assert ds.orig_label(1).shape == (h, w)
    assert np.array_equal(ds.orig_label(1), r.zarr_array("orig_labels")[1, :h, :w])
