"""Stage one on dask.distributed (docs/design/architecture.md "Distributed extraction").

`--dask-workers N` starts a local cluster of worker processes (CPU: one dask thread each, torch
threads = cores // N, so N workers never oversubscribe the cores; CUDA: one worker per GPU,
pinned by its own CUDA_VISIBLE_DEVICES in a SpecCluster; each worker may use RAM / workers, see
`worker_memory_limit`). `--scheduler ADDRESS` joins an
existing cluster. Tasks are contiguous blocks of pending samples (every sample owns its
chunks, so any block is chunk-aligned; blocks start and end on --unet-batch edges); each worker builds the model once, writes its
samples itself and returns `Outcome`s; failed tasks are retried twice.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager

from diffseg.core.errors import DiffsegError
from diffseg.core.threads import available_cores
from diffseg.stages.extract.plan import ExtractPlan
from diffseg.stages.extract.worker import run_block, warm_up

BLOCKS_PER_WORKER = 4  # several blocks each: balances load and bounds what a lost worker redoes


def blocks(pending: list[int], n_workers: int, batch: int = 1) -> list[list[int]]:
    """Split sorted pending indices into runs of at most ceil(len / (workers * 4)) samples (rounded
    up to whole batches), contiguous in batches: a block starts and ends on a batch edge (sample i
    is in batch i // batch), so no batch (--unet-batch) is split between two workers."""
    if not pending:
        return []
    size = max(1, -(-len(pending) // (max(1, n_workers) * BLOCKS_PER_WORKER)))
    size = -(-size // batch) * batch
    out, cur = [], [pending[0]]
    for i in pending[1:]:
        same_batch = i // batch == cur[-1] // batch
        if same_batch or (i // batch == cur[-1] // batch + 1 and len(cur) + batch <= size):
            cur.append(i)
        else:
            out.append(cur)
            cur = [i]
    out.append(cur)
    return out


def worker_memory_limit(n_workers: int) -> int:
    """Bytes each of `n_workers` local workers may hold before its Nanny restarts it: the machine's
    (or cgroup's) memory split evenly. dask's own default is RAM x threads / cores, which gives a
    one-thread GPU worker 8 GB on a 16-core 128 GB node: less than SD 2.1 needs while it loads."""
    from distributed.system import MEMORY_LIMIT

    return MEMORY_LIMIT // max(1, n_workers)


def gpu_workers(devices: list[str], n: int) -> dict:
    """SpecCluster worker specs: one Nanny per GPU, pinned by CUDA_VISIBLE_DEVICES, one dask thread,
    RAM / n memory each (worker_memory_limit)."""
    from distributed import Nanny

    limit = worker_memory_limit(n)
    return {
        f"gpu{g}": {
            "cls": Nanny,
            "options": {"nthreads": 1, "memory_limit": limit, "env": {"CUDA_VISIBLE_DEVICES": devices[g]}},
        }
        for g in range(n)
    }


def _local_cluster(plan: ExtractPlan, n: int):
    """A LocalCluster (CPU) or a SpecCluster of one pinned worker per GPU (CUDA)."""
    from distributed import LocalCluster, Scheduler, SpecCluster

    if plan.device == "cuda":
        import torch

        gpus = torch.cuda.device_count()
        if n > gpus:
            raise DiffsegError(f"--dask-workers {n} on CUDA needs {n} GPUs; {gpus} visible")
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        devices = visible.split(",") if visible else [str(g) for g in range(gpus)]
        return SpecCluster(
            workers=gpu_workers(devices, n),
            scheduler={"cls": Scheduler, "options": {"dashboard_address": None}},
            silence_logs=40,
        ), 1
    threads = max(1, available_cores() // n)
    cluster = LocalCluster(
        n_workers=n,
        threads_per_worker=1,
        processes=True,
        memory_limit=worker_memory_limit(n),
        dashboard_address=None,
        silence_logs=40,
        env={"OMP_NUM_THREADS": str(threads)},
    )
    return cluster, threads


@contextmanager
def client_for(plan: ExtractPlan):
    """-> (client, torch threads per worker or None, cluster start-up seconds); closes what it
    started (a joined cluster is left running)."""
    from distributed import Client

    t0 = time.perf_counter()
    if plan.scheduler:
        try:
            client = Client(plan.scheduler, timeout="20s")
        except (OSError, TimeoutError) as err:
            raise DiffsegError(f"cannot reach the dask scheduler at {plan.scheduler}: {err}") from err
        n = len(client.scheduler_info()["workers"])
        if n == 0:
            client.close()
            raise DiffsegError(f"the dask scheduler at {plan.scheduler} has no workers")
        try:  # the cluster's workers keep their own torch thread settings
            yield client, None, time.perf_counter() - t0
        finally:
            client.close()
        return
    assert plan.workers is not None  # job.py runs dask only with a scheduler or --dask-workers
    cluster, threads = _local_cluster(plan, plan.workers)
    client = Client(cluster)
    try:
        client.wait_for_workers(plan.workers)
        yield client, threads, time.perf_counter() - t0
    finally:
        client.close()
        cluster.close()


def n_workers(client) -> int:
    return len(client.scheduler_info()["workers"])


def warm_workers(client, plan: ExtractPlan, threads: int | None) -> float:
    """Build the model on every worker (start-up, timed apart from extraction); -> wall seconds."""
    t0 = time.perf_counter()
    client.run(warm_up, plan, threads)
    return time.perf_counter() - t0


def run_blocks(client, plan: ExtractPlan, pending: list[int], threads: int | None):
    """Yield the list of Outcomes of each block as it completes (retried twice on failure)."""
    from distributed import as_completed

    jobs = blocks(pending, n_workers(client), plan.batch_size)
    plan_f = client.scatter(plan, broadcast=True)
    futures = [client.submit(run_block, plan_f, job, threads, retries=2, pure=False) for job in jobs]
    try:
        for fut in as_completed(futures):
            yield fut.result()
    finally:
        for fut in futures:
            if not fut.done():
                fut.cancel()
