"""BatchLoader (cache/loader.py): the batches it delivers are exactly the sampler's, whatever the
number of reader threads; a reader's error surfaces as the same one-line DiffsegError; no
thread outlives the loader."""

import threading

import pytest
import torch
from helpers import FAST_TRAIN, SMALL
from safetensors.torch import load_file
from torch.utils.data import default_collate

from diffseg.cache import CacheReader, FeatureDataset
from diffseg.cache.fastread import CorruptChunk
from diffseg.cache.loader import BatchLoader
from diffseg.cache.synthetic import make_cache
from diffseg.stages.train import job as train

BATCHES = [[0, 3], [5, 5], [2, 1], [4, 0], [3, 2]]  # repeats and any order: the loader reads what it is told


def _readers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("diffseg-reader")]


def _expected(data: FeatureDataset, positions) -> dict:
    """The batch as the DataLoader (workers=0) built it: items collated."""
    return default_collate([data[p] for p in positions])


def _assert_same(got: dict, want: dict) -> None:
    assert torch.equal(got["index"], want["index"])
    assert got["label"].dtype == torch.long and torch.equal(got["label"], want["label"])
    assert got["feats"].keys() == want["feats"].keys()
    for b, layers in want["feats"].items():
        assert list(got["feats"][b]) == list(layers)
        for layer, x in layers.items():
            y = got["feats"][b][layer]
            assert y.dtype == x.dtype and torch.equal(y, x), f"{b}/{layer}"


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return make_cache(tmp_path_factory.mktemp("loader") / "gtav", n=6, **SMALL)


@pytest.mark.parametrize("readers", [0, 1, 3])
@pytest.mark.parametrize("in_memory", [False, True])
def test_batches_equal_the_items_in_order(cache, readers, in_memory):
    data = FeatureDataset(cache, ("uncond", "cond"), SMALL["layers"], step_indices=(2, 0), in_memory=in_memory)
    with BatchLoader(data, BATCHES, device=torch.device("cpu"), readers=readers, depth=2) as loader:
        got = list(loader)
    assert len(got) == len(BATCHES)
    for batch, positions in zip(got, BATCHES, strict=True):
        _assert_same(batch, _expected(data, positions))
    assert not _readers()


def test_training_with_reader_threads_equals_inline_reads(cache, tmp_path):
    kw = {**FAST_TRAIN, "iters": 3, "batch_size": 2}
    inline = train.main(cache=cache, out=tmp_path / "w0", **{**kw, "workers": 0})
    threaded = train.main(cache=cache, out=tmp_path / "w2", **{**kw, "workers": 2})
    a, b = load_file(inline / "weights.safetensors"), load_file(threaded / "weights.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not _readers()


def test_a_corrupt_chunk_in_a_reader_thread_is_the_same_error(tmp_path):
    cache = make_cache(tmp_path / "gtav", n=6, **SMALL)
    f = CacheReader(cache).source("cond/up2.res2").file(4)
    data = bytearray(f.read_bytes())
    data[10] ^= 0x01
    f.write_bytes(bytes(data))
    with pytest.raises(CorruptChunk) as direct:
        CacheReader(cache).read(4, ["cond/up2.res2"])
    ds = FeatureDataset(cache, ("uncond", "cond"), SMALL["layers"])
    loader = BatchLoader(ds, [[0, 1], [2, 3], [4, 5], [0, 1]], device=torch.device("cpu"), readers=2, depth=3)
    assert next(loader)["index"].tolist() == [0, 1]
    assert next(loader)["index"].tolist() == [2, 3]
    with pytest.raises(CorruptChunk) as threaded:
        next(loader)
    assert str(threaded.value) == str(direct.value) and "\n" not in str(threaded.value)
    assert "img_00004" in str(threaded.value) and str(f) in str(threaded.value)
    assert not _readers()  # closed by the error
    with pytest.raises(StopIteration):
        next(loader)


def test_close_mid_iteration_joins_the_threads(cache):
    data = FeatureDataset(cache, ("uncond",), SMALL["layers"])
    endless = ([i % 6, (i + 1) % 6] for i in range(10**9))
    loader = BatchLoader(data, endless, device=torch.device("cpu"), readers=2, depth=4)
    next(loader)
    assert _readers()
    loader.close()
    assert not _readers()
