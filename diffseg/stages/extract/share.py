"""Who extracts what: `--shard I/N` shares of the samples and the lock files that keep two
extraction processes off the same share (README "What diffseg guarantees").

Shards (job arrays without a dask scheduler): shard I of N takes the contiguous index range
[I*n//N, (I+1)*n//N) of the cache's n samples. Every sample owns one chunk of every array, so
any range is chunk-aligned and shards never share a file; the cache is complete when every
shard is, and equals a single-process run byte for byte.

Locks (local folders): `<cache>.lock` (or `<cache>.shard-I-of-N.lock`) beside the cache, made
with O_CREAT|O_EXCL and holding pid, host and start time; a second process on the same share
is refused with one line naming them. A lock is stale, and taken over, when its pid is gone on
the same host or when it was not refreshed for LOCK_STALE_S (a live run refreshes it after
every block, and a thread of the holder every LOCK_REFRESH_S however long a block takes), so a
crashed run never blocks the next one for long. Creating the cache and
rewriting its record happen under `<cache>.create.lock`, which shards wait for.

Object stores have no atomic create, so no lock is taken there: two writers of the same share
write the same bytes (every chunk is a deterministic function of the inputs and the config,
each object PUT replaces an object whole, and a sample's status is written after all its
arrays), so a duplicated share costs compute, never data. Start one shard first on an object
store: creating the cache clears its prefix.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from diffseg.core import location
from diffseg.core.errors import DiffsegError

LOCK_STALE_S = 6 * 3600  # a lock not refreshed for 6 hours belongs to a dead run, whatever its host
LOCK_REFRESH_S = 600  # the holder's thread refreshes its lock this often (blocks may take hours)
CREATE_WAIT_S = 600  # how long a shard waits for another one to finish creating the cache


def parse_shard(text: str) -> tuple[int, int]:
    """ "I/N" -> (I, N) with 0 <= I < N."""
    i, sep, n = text.partition("/")
    if not (sep and i.isdigit() and n.isdigit()) or not 0 <= int(i) < int(n):
        raise DiffsegError(f"--shard {text}: expected I/N with 0 <= I < N, e.g. 0/4")
    return int(i), int(n)


def shard_indices(indices: list[int], n: int, shard: tuple[int, int] | None, batch: int = 1) -> list[int]:
    """The indices (of n samples) that belong to shard (I, N); all of them without a shard. Shard
    edges fall on multiples of `batch` (--unet-batch), so no batch is split between shards."""
    if shard is None:
        return list(indices)
    i, k = shard

    def edge(j: int) -> int:
        return n if j == k else j * n // k // batch * batch

    lo, hi = edge(i), edge(i + 1)
    return [j for j in indices if lo <= j < hi]


def lock_path(out: str, suffix: str) -> Path | None:
    if location.is_url(out):
        return None
    p = location.local_path(out)
    return p.with_name(f"{p.name}.{suffix}")


def refuse_live_shards(out: str) -> None:
    """Refuse (one line) while a shard of `out` is being extracted: its lock is live (`cache migrate`
    rewrites every sample and must not race a writer)."""
    p = lock_path(out, "lock")
    if p is None:
        return
    for lock in sorted(p.parent.glob(f"{p.name.removesuffix('.lock')}.shard-*-of-*.lock")):
        info = _holder(lock)
        if info is not None and not _is_stale(info):
            raise DiffsegError(
                f"{out} is being extracted by pid {info.get('pid')} on {info.get('host')} (lock {lock}): "
                "wait for it to finish, or delete the lock if that run is gone"
            )


def share_suffix(shard: tuple[int, int] | None) -> str:
    return "lock" if shard is None else f"shard-{shard[0]}-of-{shard[1]}.lock"


def _holder(path: Path) -> dict | None:
    """The lock's owner {pid, host, started}, or None when the file vanished meanwhile."""
    try:
        text = path.read_text()
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return None
    try:
        info = json.loads(text)
    except json.JSONDecodeError:  # a crash between create and write: empty file
        info = {}
    return {**info, "mtime": mtime}


def _is_stale(info: dict) -> bool:
    if time.time() - info["mtime"] > LOCK_STALE_S:
        return True
    if info.get("host") == socket.gethostname() and isinstance(info.get("pid"), int):
        try:
            os.kill(info["pid"], 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # alive, another user's
            return False
        return False
    return not info.get("pid") and time.time() - info["mtime"] > 5  # empty for 5 s: a crashed create


def _try_create(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        json.dump({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}, f)
    return True


def acquire(path: Path) -> dict | None:
    """Take the lock (removing a stale one); -> None, or the live holder's info."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(3):
        if _try_create(path):
            return None
        info = _holder(path)
        if info is None:
            continue
        if not _is_stale(info):
            return info
        path.unlink(missing_ok=True)
    raise DiffsegError(f"{path}: could not take the lock (another process keeps replacing it)")


@contextmanager
def exclusive(out: str, shard: tuple[int, int] | None) -> Iterator[Path | None]:
    """Hold the lock of this share of `out` (no-op on object stores), or refuse with one line."""
    path = lock_path(out, share_suffix(shard))
    if path is None:
        yield None
        return
    info = acquire(path)
    if info is not None:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("started", info["mtime"])))
        what = "" if shard is None else f" (shard {shard[0]}/{shard[1]})"
        raise DiffsegError(
            f"{out}{what} is being extracted by pid {info.get('pid')} on {info.get('host')} since {started} "
            f"(lock {path}): wait for it to finish, or delete the lock if that run is gone"
        )
    try:
        with kept_fresh(path):
            yield path
    finally:
        path.unlink(missing_ok=True)


@contextmanager
def kept_fresh(path: Path) -> Iterator[None]:
    """Refresh the held lock `path` every LOCK_REFRESH_S from a thread while the block runs: the
    coordinator hears of a dask block only when it ends, which at `reference` can be hours."""
    stop = threading.Event()

    def keep() -> None:
        while not stop.wait(LOCK_REFRESH_S):
            try:
                refresh(path)
            except FileNotFoundError:
                print(f"warning: the lock {path} was deleted while this run holds it", file=sys.stderr)
                return

    thread = threading.Thread(target=keep, name="diffseg-lock-refresh", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def refresh(path: Path | None) -> None:
    """Mark a held lock as alive (its mtime); called after every block."""
    if path is not None:
        os.utime(path)


@contextmanager
def creating(out: str) -> Iterator[None]:
    """Serialize creating the cache and rewriting its record between processes (local folders)."""
    path = lock_path(out, "create.lock")
    if path is None:
        yield
        return
    deadline = time.monotonic() + CREATE_WAIT_S
    while (info := acquire(path)) is not None:
        if time.monotonic() > deadline:
            raise DiffsegError(f"{out}: pid {info.get('pid')} on {info.get('host')} holds {path} for too long")
        time.sleep(0.1)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
