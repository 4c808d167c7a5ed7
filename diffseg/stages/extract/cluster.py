"""Stage one on dask.distributed (docs/design/architecture.md "Distributed extraction").

`--dask-workers N` starts a local cluster of worker processes (CPU: one dask thread each, torch
threads = cores // N, so N workers never oversubscribe the cores; CUDA: one worker per GPU,
pinned by its own CUDA_VISIBLE_DEVICES in a SpecCluster; each worker may use RAM / workers, see
`worker_memory_limit`). `--scheduler ADDRESS` joins an
existing cluster. Tasks are contiguous blocks of pending samples (every sample owns its
chunks, so any block is chunk-aligned; blocks start and end on --unet-batch edges); each worker builds the model once, writes its
samples itself and returns `Outcome`s; failed tasks are retried twice, and a retried block skips the
samples its failed try completed. A block takes at most `--block-minutes` (from the seconds per sample:
`--sample-seconds`, or measured on a first wave of one batch per worker), so a lost worker redoes
little and progress (and the lock's liveness) is reported often.
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


def blocks(pending: list[int], n_workers: int, batch: int = 1, max_size: int | None = None) -> list[list[int]]:
    """Split sorted pending indices into runs of at most ceil(len / (workers * 4)) samples (and at most
    max_size; rounded up to whole batches), contiguous in batches: a block starts and ends on a batch
    edge (sample i is in batch i // batch), so no batch (--unet-batch) is split between two workers."""
    if not pending:
        return []
    size = max(1, -(-len(pending) // (max(1, n_workers) * BLOCKS_PER_WORKER)))
    if max_size is not None:
        size = min(size, max(1, max_size))
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


def block_size(budget_s: float, sample_s: float, batch: int = 1) -> int:
    """Samples a block may hold to take about budget_s at sample_s each: whole batches, at least one."""
    return max(1, int(budget_s / max(sample_s, 1e-9)) // batch) * batch


def first_wave(pending: list[int], n_workers: int, batch: int = 1) -> tuple[list[list[int]], list[int]]:
    """(one block of the first pending batch per worker, the rest): the blocks that time a sample."""
    out: list[list[int]] = []
    i = 0
    while i < len(pending) and len(out) < max(1, n_workers):
        j = i
        while j < len(pending) and pending[j] // batch == pending[i] // batch:
            j += 1
        out.append(pending[i:j])
        i = j
    return out, pending[i:]


def run_blocks(client, plan: ExtractPlan, pending: list[int], threads: int | None):
    """Yield the list of Outcomes of each block as it completes (retried twice on failure). Blocks
    take about --block-minutes each at --sample-seconds per sample; without it, a first wave of one
    batch per worker measures the seconds per sample (wall time of its first block) and the rest
    is split by that."""
    from distributed import as_completed

    if not pending:
        return
    n = n_workers(client)
    plan_f = client.scatter(plan, broadcast=True)
    futures = []

    def submit(jobs: list[list[int]]) -> list:
        new = [client.submit(run_block, plan_f, job, threads, retries=2, pure=False) for job in jobs]
        futures.extend(new)
        return new

    budget_s, sample_s = plan.block_minutes * 60, plan.sample_seconds
    try:
        if sample_s is None:
            probe, pending = first_wave(pending, n, plan.batch_size)
            done = as_completed(submit(probe))
            outcomes, seconds = next(done).result()
            sample_s = seconds / max(1, len(outcomes))
            yield outcomes
        else:
            done = as_completed([])
        cap = block_size(budget_s, sample_s, plan.batch_size)
        for fut in submit(blocks(pending, n, plan.batch_size, max_size=cap)):
            done.add(fut)
        for fut in done:
            yield fut.result()[0]
    finally:
        for fut in futures:
            if not fut.done():
                fut.cancel()
