"""Faults a long extraction meets (README "What diffseg guarantees"): each leaves a cache that
the rerun (or the cluster's retry) finishes byte-identical to a clean run.

Every run uses one torch thread (see test_extract_run.py: byte identity holds between equal
thread counts).
"""

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
from test_extract_run import BASE, arrays, assert_same_bytes, extract

from diffseg.cache import CacheReader

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def cli(*args) -> list[str]:
    return [sys.executable, "-c", "from diffseg.cli import main; main()", *BASE, *args]


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    out = tmp_path_factory.mktemp("clean") / "cache"
    result = extract("--limit", "4", out=out)
    assert result.exit_code == 0, result.output
    return arrays(out)


def _dask_workers(pid: int) -> list[psutil.Process]:
    """The dask worker processes a `--dask-workers N` run spawned (not the resource tracker)."""
    kids = psutil.Process(pid).children(recursive=True)
    return [p for p in kids if "spawn_main" in (c := " ".join(p.cmdline())) and "resource_tracker" not in c]


# Every process of a run (the CLI and its dask workers) imports this at start-up (a sitecustomize on
# PYTHONPATH): the cache writer holds every sample but 0 before its first array until the file
# $DIFFSEG_TEST_RELEASE exists. A kill then always lands while samples are in flight, however fast the machine.
HOLD_WRITES = """
import os
if os.environ.get("DIFFSEG_TEST_RELEASE"):
    import time
    from pathlib import Path
    from diffseg.cache.writer import CacheWriter
    write = CacheWriter._write
    def held_write(self, i, *args, **kwargs):
        while i != 0 and not Path(os.environ["DIFFSEG_TEST_RELEASE"]).exists():
            time.sleep(0.01)
        return write(self, i, *args, **kwargs)
    CacheWriter._write = held_write
"""


def test_a_killed_dask_worker_loses_nothing(clean, tmp_path):
    out = tmp_path / "killed-worker"
    hook, release = tmp_path / "hook", tmp_path / "release"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(HOLD_WRITES)
    path = os.pathsep.join([str(hook), *([ENV["PYTHONPATH"]] if ENV.get("PYTHONPATH") else [])])
    proc = subprocess.Popen(
        cli("--limit", "4", "--dask-workers", "2", "--out", str(out)),
        env={**ENV, "PYTHONPATH": path, "DIFFSEG_TEST_RELEASE": str(release)},
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    first = out / "status" / "c" / "0"
    deadline = time.monotonic() + 240
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    workers = _dask_workers(proc.pid)
    assert workers, "no dask worker process found"
    status = CacheReader(out).status
    victim = workers[-1]
    victim.send_signal(signal.SIGKILL)  # mid-block: it holds a sample that is not written yet
    release.touch()
    output, _ = proc.communicate(timeout=300)
    assert list(status) == [1, 0, 0, 0], f"samples other than 0 were written before the kill: {status}"
    assert proc.returncode == 0, output
    assert "done: " in output
    assert_same_bytes(clean, arrays(out))


def test_two_shards_in_two_processes_equal_one_process(clean, tmp_path):
    out = tmp_path / "sharded"
    procs = [
        subprocess.Popen(
            cli("--limit", "4", "--shard", f"{i}/2", "--out", str(out)),
            env=ENV,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for i in (0, 1)
    ]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert all("done: 2 samples written" in o for o in outputs), outputs
    assert_same_bytes(clean, arrays(out))
    assert not list(tmp_path.glob("*.lock"))  # every lock released


def test_one_shard_leaves_the_others_pending(tmp_path):
    out = tmp_path / "half"
    result = extract("--limit", "4", "--shard", "1/2", out=out)
    assert result.exit_code == 0, result.output
    assert list(CacheReader(out).status) == [0, 0, 1, 1]
    bad = extract("--limit", "4", "--shard", "2/2", out=out)
    assert bad.exit_code == 2 and "0 <= I < N" in bad.output


def test_a_second_process_on_the_same_cache_is_refused(tmp_path):
    import json
    import socket

    out = tmp_path / "locked"
    lock = tmp_path / "locked.lock"
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}))
    result = extract("--limit", "1", out=out)
    assert result.exit_code == 1 and not out.exists()
    (line,) = [l for l in result.output.splitlines() if l.startswith("error:")]
    assert f"pid {os.getpid()}" in line and str(lock) in line and "Traceback" not in result.output
    # the holder crashed: its pid is gone on this host, so the lock is stale and taken over
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    lock.write_text(json.dumps({"pid": gone.pid, "host": socket.gethostname(), "started": time.time()}))
    result = extract("--limit", "1", "--branches", "uncond", out=out)
    assert result.exit_code == 0, result.output
    assert not lock.exists()


def test_a_lock_of_another_host_goes_stale_after_the_timeout(tmp_path):
    import json

    from diffseg.stages.extract import share

    lock = tmp_path / "c.lock"
    lock.write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": 0}))
    assert share.acquire(lock) is not None  # fresh: held
    old = time.time() - share.LOCK_STALE_S - 1
    os.utime(lock, (old, old))
    assert share.acquire(lock) is None and json.loads(lock.read_text())["pid"] == os.getpid()


def test_a_full_disk_mid_sample_is_one_line_and_the_rerun_finishes(clean, tmp_path, monkeypatch):
    import errno

    import zarr

    from diffseg.cache import chunkwrite

    out = tmp_path / "full"
    real_set, real_write = zarr.storage.LocalStore.set, chunkwrite.atomic_write
    key = "cond/s16/c/2/"  # sample 2, in the middle of its arrays (the cond pack of stride 16: up2's layers)

    async def failing_set(self, k, value, *args, **kwargs):
        if k.startswith(key):
            raise OSError(errno.ENOSPC, "No space left on device", k)
        return await real_set(self, k, value, *args, **kwargs)

    def failing_write(path, parts):  # the writer's direct chunk files (chunkwrite.py)
        if f"/{key}" in path:
            raise OSError(errno.ENOSPC, "No space left on device", path)
        real_write(path, parts)

    monkeypatch.setattr(zarr.storage.LocalStore, "set", failing_set)
    monkeypatch.setattr(chunkwrite, "atomic_write", failing_write)
    result = extract("--limit", "4", out=out)
    assert result.exit_code == 1 and "Traceback" not in result.output
    (line,) = [l for l in result.output.splitlines() if l.startswith("error:")]
    assert "No space left on device" in line and "sample train/0002" in line
    assert list(CacheReader(out).status) == [1, 1, 0, 0]  # nothing marked complete that is not
    monkeypatch.setattr(zarr.storage.LocalStore, "set", real_set)  # space freed
    monkeypatch.setattr(chunkwrite, "atomic_write", real_write)
    result = extract("--limit", "4", out=out)
    assert result.exit_code == 0 and "done: 2 samples written" in result.output, result.output
    assert_same_bytes(clean, arrays(out))


def test_a_cache_folder_deleted_mid_run_stops_it_within_one_sample(tmp_path, monkeypatch):
    import shutil

    from diffseg.cache import CacheWriter

    out = tmp_path / "vanishing"
    real_write, calls = CacheWriter.write_sample, []

    def write_then_delete(self, i, *args, **kwargs):
        calls.append(i)
        real_write(self, i, *args, **kwargs)
        if len(calls) == 1:
            shutil.rmtree(out)  # a scratch purge, another user's cleanup

    monkeypatch.setattr(CacheWriter, "write_sample", write_then_delete)
    result = extract("--limit", "3", out=out)
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    (line,) = [l for l in result.output.splitlines() if l.startswith("error:")]
    assert str(out) in line and "the cache vanished while being written" in line
    assert calls == [0, 1] and "done:" not in result.output  # the next sample stopped it


def test_a_rerun_on_a_read_only_mount_is_one_line(tmp_path, monkeypatch):
    import errno

    from helpers import fail_writes

    out = tmp_path / "ro"
    assert extract("--limit", "1", out=out).exit_code == 0
    fail_writes(monkeypatch, tmp_path, errno.EROFS)  # the folder, its lock and its record: nothing writable
    result = extract("--limit", "1", out=out)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.exception  # no traceback
    (line,) = [l for l in result.output.splitlines() if l.startswith("error:")]
    assert str(out) in line and "read-only file system" in line and "Traceback" not in result.output


def test_a_held_lock_is_refreshed_while_a_block_runs(tmp_path, monkeypatch):
    """The holder's thread keeps the lock fresh however long a block takes (the coordinator hears of a
    dask block only when it ends): a lock aged past LOCK_STALE_S is fresh again before it is released."""
    from diffseg.stages.extract import share

    monkeypatch.setattr(share, "LOCK_REFRESH_S", 0.05)
    with share.exclusive(str(tmp_path / "c"), None) as lock:
        assert lock is not None
        old = time.time() - share.LOCK_STALE_S - 1
        os.utime(lock, (old, old))
        deadline = time.time() + 30
        while lock.stat().st_mtime == old and time.time() < deadline:
            time.sleep(0.02)
        assert time.time() - lock.stat().st_mtime < share.LOCK_STALE_S
    assert not lock.exists()
