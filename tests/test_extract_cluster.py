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


# -- blocks bounded in time ---------------------------------------------------------------------------
def test_blocks_are_capped_by_the_time_budget_on_batch_edges():
    assert cluster.block_size(600, 7.0, 1) == 85 and cluster.block_size(600, 7.0, 4) == 84
    assert cluster.block_size(60, 1000.0, 4) == 4  # one batch at least
    bl = cluster.blocks(list(range(100)), 1, 4, max_size=cluster.block_size(60, 5.0, 4))
    assert [j for b in bl for j in b] == list(range(100))
    assert all(len(b) <= 12 and b[0] % 4 == 0 for b in bl) and len(bl) == 9
    assert cluster.blocks(list(range(100)), 1, 1, max_size=1000) == cluster.blocks(list(range(100)), 1, 1)


class _Done:
    def __init__(self, value):
        self.value = value

    def result(self):
        return self.value

    def done(self):
        return True


class _Completed(list):
    """distributed.as_completed over futures that are done: in order, futures added while iterating."""

    def __init__(self, futures=()):
        super().__init__(futures)
        self.i = 0

    def add(self, fut):
        self.append(fut)

    def __iter__(self):
        return self

    def __next__(self):
        if self.i >= len(self):
            raise StopIteration
        self.i += 1
        return self[self.i - 1]


def test_the_first_wave_measures_a_sample_and_the_rest_fits_the_budget(monkeypatch):
    """Without --sample-seconds, one batch per worker goes first; its wall time per sample sizes the
    other blocks to --block-minutes. With it, no first wave."""
    ran: list[list[int]] = []

    def fake_block(plan, job, threads):
        ran.append(list(job))
        return [SimpleNamespace(index=i) for i in job], 30.0 * len(job)  # 30 s per sample

    client = SimpleNamespace(
        scheduler_info=lambda: {"workers": {"a": 0, "b": 0}},
        scatter=lambda plan, broadcast: plan,
        submit=lambda fn, *args, **kw: _Done(fn(*args)),
    )
    monkeypatch.setattr(cluster, "run_block", fake_block)
    monkeypatch.setattr(distributed, "as_completed", _Completed)
    plan = SimpleNamespace(block_minutes=2.0, sample_seconds=None, batch_size=2)
    got = [o.index for outs in cluster.run_blocks(client, plan, list(range(20)), None) for o in outs]
    assert sorted(got) == list(range(20))
    assert ran[:2] == [[0, 1], [2, 3]]  # one batch per worker
    assert all(len(b) <= 4 and b[0] % 2 == 0 for b in ran[2:])  # 120 s at 30 s per sample
    ran.clear()
    plan = SimpleNamespace(block_minutes=2.0, sample_seconds=60.0, batch_size=2)
    assert sum(len(o) for o in cluster.run_blocks(client, plan, list(range(20)), None)) == 20
    assert all(len(b) == 2 for b in ran)
    measured = SimpleNamespace(block_minutes=2.0, sample_seconds=None, batch_size=2)
    assert list(cluster.run_blocks(client, measured, [], None)) == []  # nothing pending: no first wave to wait for


def test_a_retried_block_skips_the_samples_its_failed_try_completed(monkeypatch):
    import numpy as np

    from diffseg.stages.extract import worker

    computed: list[int] = []

    class Runner:
        ids = tuple(f"s{i}" for i in range(6))
        writer = SimpleNamespace(status=lambda: np.array([1, 1, 0, 2, 0, 1], np.uint8))  # 2: skipped, redone

        def run_many(self, indices):
            computed.extend(indices)
            return (worker.Outcome(index=i, id=self.ids[i], written=True) for i in indices)

    monkeypatch.setattr(worker, "runner_for", lambda plan: Runner())
    outcomes, seconds = worker.run_block(SimpleNamespace(strict=False), [0, 1, 2, 3, 4], None)
    assert computed == [2, 3, 4]
    assert [o.index for o in outcomes] == [0, 1, 2, 3, 4] and all(o.written for o in outcomes) and seconds >= 0
