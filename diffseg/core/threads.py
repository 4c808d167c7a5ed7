"""CPU thread settings, chosen once per process before torch starts its thread pool.

On a shared machine torch's OpenMP threads collapse: with the default wait policy an
idle OpenMP thread spins for a core it does not get, so one competing busy process made
extraction 6.4x slower on 2 cores (benchmarks/bench_contention.py). The policy:

- OMP_WAIT_POLICY=PASSIVE: idle threads sleep instead of spinning;
- intra-op threads = the cores this process may actually use: its CPU affinity
  (`os.sched_getaffinity`: taskset, cpusets, Slurm) and a cgroup CPU quota (containers),
  not `os.cpu_count()`, which counts the whole machine.

Both are environment variables read by OpenMP and torch when their thread pool starts, so
`apply()` runs in the CLI entry before anything imports torch (and sets torch's count too
when torch is already loaded, e.g. in a Python session). The user wins: a set
OMP_NUM_THREADS (or MKL_NUM_THREADS) / OMP_WAIT_POLICY is kept, DIFFSEG_THREADS (or `diffseg --threads N`)
picks the thread count (torch caps OMP_NUM_THREADS at the machine's cores). No torch import here (the CLI, diffseg/cli/__init__.py, imports this before torch).
Importing this module changes nothing: only an explicit `apply()` (the CLI's entry, a job pool's
worker) writes the environment (tests/test_side_effects.py).
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path

from diffseg.core.errors import DiffsegError

THREADS_ENV = "DIFFSEG_THREADS"
_CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class ThreadSettings:
    threads: int
    wait_policy: str
    threads_from: str  # where the thread count came from (shown by `diffseg env`)
    policy_from: str
    cores: int  # cores available to the process

    def describe(self) -> str:
        return (
            f"{self.threads} intra-op threads ({self.threads_from}), OMP_WAIT_POLICY={self.wait_policy} "
            f"({self.policy_from}); {self.cores} cores available to this process"
        )


def affinity_cores() -> int:
    """CPUs this process may run on (its affinity mask; os.cpu_count() where there is none)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def cgroup_quota(root: Path = _CGROUP_ROOT) -> float | None:
    """CPUs granted by a cgroup CPU quota (v2 cpu.max or v1 cfs_quota/period), None without one."""
    try:
        fields = (root / "cpu.max").read_text().split()  # "max 100000" or "150000 100000"
        if fields and fields[0] != "max":
            return int(fields[0]) / int(fields[1])
        return None
    except (OSError, ValueError, IndexError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def available_cores(root: Path = _CGROUP_ROOT) -> int:
    """The cores this process can use: affinity, capped by a cgroup quota (rounded up, >= 1)."""
    cores = affinity_cores()
    quota = cgroup_quota(root)
    if quota is not None:
        cores = min(cores, max(1, math.ceil(quota)))
    return max(1, cores)


def _positive(value: str, where: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise DiffsegError(f"{where}={value!r}: expected a positive number of threads")
    return n


def choose(environ: MutableMapping[str, str], threads: int | None = None) -> ThreadSettings:
    """The settings for this process: `threads` (--threads) > DIFFSEG_THREADS > OMP_NUM_THREADS
    > MKL_NUM_THREADS (torch's pool obeys it too) > the available cores; a user's
    OMP_WAIT_POLICY > PASSIVE."""
    cores = available_cores()
    if threads is not None:
        n, src = _positive(str(threads), "--threads"), "--threads"
    elif environ.get(THREADS_ENV):
        n, src = _positive(environ[THREADS_ENV], THREADS_ENV), THREADS_ENV
    elif environ.get("OMP_NUM_THREADS"):
        n, src = _positive(environ["OMP_NUM_THREADS"].split(",")[0], "OMP_NUM_THREADS"), "OMP_NUM_THREADS"
    elif environ.get("MKL_NUM_THREADS"):
        n, src = _positive(environ["MKL_NUM_THREADS"], "MKL_NUM_THREADS"), "MKL_NUM_THREADS"
    else:
        n, src = cores, "available cores"
    if environ.get("OMP_WAIT_POLICY"):
        policy, policy_src = environ["OMP_WAIT_POLICY"], "user's OMP_WAIT_POLICY"
    else:
        policy, policy_src = "PASSIVE", "diffseg default"
    return ThreadSettings(threads=n, wait_policy=policy, threads_from=src, policy_from=policy_src, cores=cores)


_APPLIED: ThreadSettings | None = None


def apply(threads: int | None = None, environ: MutableMapping[str, str] | None = None) -> ThreadSettings:
    """Choose and apply: write OMP_NUM_THREADS / OMP_WAIT_POLICY into the environment (read by
    OpenMP and torch when they start; inherited by worker processes) and, when torch is already
    loaded, set its intra-op count. Call before `import torch` for the wait policy to count.
    `environ`: a mapping to fill instead of os.environ (then torch is left alone)."""
    global _APPLIED
    env = os.environ if environ is None else environ
    s = choose(env, threads)
    env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(s.threads)  # torch's pool reads both
    env["OMP_WAIT_POLICY"] = s.wait_policy
    torch = sys.modules.get("torch")
    if torch is not None and environ is None and torch.get_num_threads() != s.threads:
        torch.set_num_threads(s.threads)
    if environ is None:
        _APPLIED = s
    return s


def applied() -> ThreadSettings | None:
    """What `apply()` chose in this process (None: it did not run)."""
    return _APPLIED
