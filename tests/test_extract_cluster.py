"""The local dask cluster's worker setup: one pinned worker per GPU with RAM / GPUs of memory each."""

from types import SimpleNamespace

import distributed
import torch
from distributed.system import MEMORY_LIMIT

from diffseg.stages.extract import cluster


def test_gpu_workers_get_an_even_share_of_the_memory(monkeypatch):
    """dask's default (RAM x 1 thread / cores) would give each of 8 one-thread GPU workers on a 16-core
    node a sixteenth of the RAM; each gets an eighth here, named in the spec the SpecCluster starts."""
    started = {}
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(distributed, "SpecCluster", lambda **kwargs: started.update(kwargs))
    _, threads = cluster._local_cluster(SimpleNamespace(device="cuda"), 8)
    workers = started["workers"]
    assert threads == 1 and sorted(workers) == [f"gpu{g}" for g in range(8)]
    for g in range(8):
        options = workers[f"gpu{g}"]["options"]
        assert workers[f"gpu{g}"]["cls"] is distributed.Nanny
        assert options["env"] == {"CUDA_VISIBLE_DEVICES": str(g)} and options["nthreads"] == 1
        assert options["memory_limit"] == MEMORY_LIMIT // 8


def test_cpu_workers_share_the_memory_the_same_way(monkeypatch):
    started = {}
    monkeypatch.setattr(distributed, "LocalCluster", lambda **kwargs: started.update(kwargs))
    cluster._local_cluster(SimpleNamespace(device="cpu"), 2)
    assert started["memory_limit"] == MEMORY_LIMIT // 2 and started["n_workers"] == 2
