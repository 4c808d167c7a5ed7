"""Independent jobs (trainings, extractions) in parallel worker processes, each after the jobs it needs.

Why processes: a small head or a small U-Net on a CPU keeps about one core busy whatever
torch's intra-op thread count (the demo measured a load of ~1 with 2 threads on 2 cores), so
two single-threaded processes do twice the work of one two-threaded one. Each worker is
spawned (no fork after torch has started its thread pools) and sets its thread count
(core/threads.py) before it imports torch: `cores // workers` threads each, so results do
not depend on how the jobs were scheduled.

Each job's output (progress bars, logs) goes to `<logs>/<name>.log`, not the terminal, where
two jobs would interleave; the terminal gets one line per finished job, with its time, the
elapsed time and an estimate of the rest (per kind of job, counting the jobs of later batches
that the caller names). A job that fails stops the others (the workers are terminated) and
raises one DiffsegError naming the job, its message and its log; a user error (DiffsegError)
keeps its message, anything else adds "traceback in <log>". A worker that dies (out of memory, a signal) is named by the jobs that were running.

With `workers` <= 1 the jobs run here, one after another, printing as they go: the same
results (with this process's thread count), nothing redirected.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import re
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diffseg.core.errors import DiffsegError


@dataclass(frozen=True)
class Job:
    name: str  # unique: the progress line and the log file `<name>.log` (no "/")
    fn: Callable[..., Any]  # a module-level function (workers import it by name)
    kwargs: dict = field(default_factory=dict)
    after: tuple[str, ...] = ()  # names of jobs that must finish first


@dataclass(frozen=True)
class Done:
    result: Any
    seconds: float  # the job's own wall time


def _check(jobs: Sequence[Job]) -> None:
    names = [j.name for j in jobs]
    assert len(set(names)) == len(names), f"duplicate job names: {sorted(n for n in names if names.count(n) > 1)}"
    for j in jobs:
        assert "/" not in j.name, j.name
        missing = set(j.after) - set(names)
        assert not missing, f"{j.name} waits for unknown jobs {sorted(missing)}"
    order = _order(jobs)
    assert len(order) == len(jobs), "the jobs' `after` lists form a cycle"


def _order(jobs: Sequence[Job]) -> list[Job]:
    """The jobs in list order, each moved behind the jobs it waits for (a valid serial order)."""
    done: set[str] = set()
    out: list[Job] = []
    pending = list(jobs)
    while pending:
        ready = [j for j in pending if set(j.after) <= done]
        if not ready:
            break
        out.append(ready[0])
        done.add(ready[0].name)
        pending.remove(ready[0])
    return out


def _init_worker(threads: int) -> None:
    from diffseg.core import threads as thread_settings

    thread_settings.apply(threads)


def _run_logged(fn: Callable[..., Any], kwargs: dict, log_path: str) -> tuple[str, Any, float]:
    """In a worker: run `fn(**kwargs)` with stdout and stderr (file descriptors too) in `log_path`;
    returns ("ok", result, seconds) or ("error", message, seconds)."""
    t0 = time.perf_counter()
    sys.stdout.flush(), sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_path, "a", buffering=1) as log:
        os.dup2(log.fileno(), 1), os.dup2(log.fileno(), 2)
        try:
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                try:
                    return "ok", fn(**kwargs), time.perf_counter() - t0
                except DiffsegError as e:
                    print(f"error: {e}", file=log)
                    return "error", str(e), time.perf_counter() - t0
                except BaseException as e:  # reported to the parent with the log's path, never swallowed
                    traceback.print_exc(file=log)
                    return "error", f"{type(e).__name__}: {e} (traceback in {log_path})", time.perf_counter() - t0
        finally:
            sys.stdout.flush(), sys.stderr.flush()
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def _kind(name: str) -> str:
    """Jobs of one kind: the name without a trailing "-seed<k>" or number ("train-mini-seed2" ->
    "train-mini")."""
    return re.sub(r"(-seed)?-?\d+$", "", name)


def _estimate(left: list[str], done: dict[str, Done]) -> float:
    """Seconds of work left: each job as the mean of the finished jobs of its kind, else of all."""
    if not done:
        return 0.0
    overall = sum(d.seconds for d in done.values()) / len(done)
    by_kind: dict[str, list[float]] = {}
    for n, d in done.items():
        by_kind.setdefault(_kind(n), []).append(d.seconds)
    means = {k: sum(v) / len(v) for k, v in by_kind.items()}
    return sum(means.get(_kind(n), overall) for n in left)


def _clock(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 60}:{s % 60:02d}"


class JobPool:
    """Worker processes that outlive one `run` (a second batch of jobs skips the start-up: spawning
    and importing torch take seconds per worker). Use as a context manager; `workers` <= 1: no
    processes, every batch runs here."""

    def __init__(
        self,
        *,
        workers: int,
        cores: int,
        logs: Path,
        echo: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ):
        self.workers, self.logs = workers, Path(logs)
        self.threads = max(1, cores // max(workers, 1))
        self.echo = echo or (lambda line: print(line, flush=True))
        self.clock = clock  # seconds (tests pass their own)
        self.start = clock()  # the elapsed time counts from here, over every batch
        self._pool: ProcessPoolExecutor | None = None
        self._history: dict[str, Done] = {}  # every finished job of every batch (the estimates)

    def __enter__(self) -> JobPool:
        return self

    def __exit__(self, kind, value, tb) -> None:
        self.close(clean=kind is None)

    def close(self, clean: bool = True) -> None:
        """Shut the workers down; not `clean` (an error or Ctrl-C): stop running jobs too (the executor
        alone would wait for them)."""
        if self._pool is None:
            return
        pool, self._pool = self._pool, None
        if clean:
            pool.shutdown(wait=True)
            return
        processes = list((pool._processes or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for p in processes:
            if p.is_alive():
                p.terminate()
        for p in processes:
            p.join()

    def _died(self, names: list[str], exitcode: int | None, cause: BaseException | None = None) -> None:
        """A worker died (out of memory, a signal): name the jobs that were running (the pool cannot
        say whose worker it was)."""
        how = f" (exit code {exitcode})" if exitcode is not None else ""
        raise DiffsegError(
            f"a worker process died{how} (killed: out of memory or a signal) while {', '.join(names)} ran; "
            f"logs: {self.logs}/<job>.log"
        ) from cause

    def run(self, jobs: Sequence[Job], to_come: Sequence[str] = ()) -> dict[str, Done]:
        """Run every job once, each after its `after` jobs; returns {name: Done}. Raises DiffsegError on
        the first failed job (the pool is then closed: the other jobs stop). `to_come`: the names of
        the jobs a later batch will run, as far as they are known: the estimate of the time left
        counts them too (each as the finished jobs of its kind, else of all kinds)."""
        _check(jobs)
        out: dict[str, Done] = {}
        history = self._history

        def finished(name: str, done: Done) -> None:
            out[name] = done
            history[name] = done
            left = [j.name for j in jobs if j.name not in out] + list(to_come)
            eta = _estimate(left, history) / max(self.workers, 1)
            self.echo(
                f"[{len(out)}/{len(jobs)}] {name}: {done.seconds:.0f} s; elapsed {_clock(self.clock() - self.start)}"
                + (f", about {_clock(eta)} left" if left else "")
            )

        if self.workers <= 1:
            for j in _order(jobs):
                t0 = self.clock()
                finished(j.name, Done(j.fn(**j.kwargs), self.clock() - t0))
            return out
        self.logs.mkdir(parents=True, exist_ok=True)
        if self._pool is None:
            self.echo(
                f"{self.workers} worker processes ({self.threads} thread{'s' * (self.threads > 1)} each); logs: {self.logs}/"
            )
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(self.threads,),
            )
        pool = self._pool
        by_name = {j.name: j for j in jobs}
        pending = [j.name for j in jobs]  # list order = submission priority
        running: dict[Future, str] = {}
        try:
            while pending or running:
                ready_jobs = [n for n in pending if set(by_name[n].after) <= set(out)]
                for name in ready_jobs[: max(0, self.workers - len(running))]:
                    j, log = by_name[name], self.logs / f"{name}.log"
                    log.unlink(missing_ok=True)
                    running[pool.submit(_run_logged, j.fn, j.kwargs, str(log))] = name
                    pending.remove(name)
                ready, _ = wait(running, timeout=1.0, return_when=FIRST_COMPLETED)
                # A killed worker breaks the pool, but the executor may only notice at its next result
                # (seen when the parent had initialised torch's threads): look at the workers too.
                dead = [p.exitcode for p in list((pool._processes or {}).values()) if p.exitcode is not None]
                if dead and not ready:
                    self._died(sorted(running.values()), dead[0])
                for future in ready:
                    name = running.pop(future)
                    log = self.logs / f"{name}.log"
                    try:
                        status, value, seconds = future.result()
                    except BrokenProcessPool as e:  # a worker was killed: the pool fails every running job
                        self._died(sorted([name, *running.values()]), None, e)
                    if status != "ok":
                        raise DiffsegError(f"{name} failed: {value} (log: {log})")
                    finished(name, Done(value, seconds))
        except BaseException:
            self.close(clean=False)
            raise
        return out


def run_jobs(
    jobs: Sequence[Job], *, workers: int, cores: int, logs: Path, echo: Callable[[str], None] | None = None
) -> dict[str, Done]:
    """One batch of jobs in a JobPool of its own: `workers` processes of max(1, cores // workers) torch
    threads each (<= 1: here, in order)."""
    with JobPool(workers=workers, cores=cores, logs=logs, echo=echo) as pool:
        return pool.run(jobs)
