"""Overlapped extraction (stages/extract/overlap.py) and `extract --unet-batch`.

The three-thread pipeline on plain functions (order, bounded queues, errors carried to the
calling thread, --strict's stop), then end to end on the demo dataset with `tiny`: batch size 2
reruns and resumes byte for byte (batches are aligned to absolute sample indices), another batch
size on that cache is refused (batched U-Net calls round differently: measured up to 2e-3 on
tiny's float16 features), and the overlapped run writes the bytes of the sequential one.
Every run uses one torch thread (see test_extract_run.py).
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time

import numpy as np
import pytest
from test_extract_run import arrays, assert_same_bytes, extract, kill_after_first_sample

from diffseg.cache import CacheReader, CacheWriter, schema
from diffseg.core.errors import DiffsegError
from diffseg.stages.extract import overlap
from diffseg.stages.extract.cluster import blocks
from diffseg.stages.extract.share import shard_indices

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


# -- the pipeline on plain functions --------------------------------------------------------------
class Probe:
    """prepare/compute/write that record what is alive at once and in which thread they run."""

    def __init__(self, fail_prepare=None, fail_write=None, stop_at=None):
        self.fail_prepare, self.fail_write, self.stop_at = fail_prepare, fail_write, stop_at
        self.alive, self.peak, self.written, self.threads = 0, 0, [], {}
        self.lock = threading.Lock()

    def _enter(self, step):
        with self.lock:
            if step == "prepare":  # a sample is alive from its preparation to its write
                self.alive += 1
                self.peak = max(self.peak, self.alive)
            self.threads.setdefault(step, set()).add(threading.current_thread().name)

    def prepare(self, i):
        if i == self.fail_prepare:
            raise DiffsegError(f"img_{i}.png: cannot identify image file")
        self._enter("prepare")
        time.sleep(0.002)
        return i

    def compute(self, batch):
        self._enter("compute")
        time.sleep(0.004)
        stop = self.stop_at in batch
        return [(i, i * 10) for i in batch if self.stop_at is None or i <= self.stop_at], not stop

    def write(self, i, result):
        if i == self.fail_write:
            raise DiffsegError(f"writing sample {i} failed: No space left on device")
        time.sleep(0.002)
        self.threads.setdefault("write", set()).add(threading.current_thread().name)
        self.written.append((i, result))
        with self.lock:
            self.alive -= 1
        return i


@pytest.mark.parametrize("size", [1, 3])
def test_pipeline_keeps_order_bounds_what_is_alive_and_uses_three_threads(size):
    p = Probe()
    out = list(overlap.run(range(40), p.prepare, p.compute, p.write, key=lambda i: i // size, depth=size))
    assert out == list(range(40)) and p.written == [(i, i * 10) for i in range(40)]
    # one batch being prepared, one queued, one computing, one queued to write, one writing (+1 look-ahead)
    assert p.peak <= 5 * size + 1, p.peak
    names = {step: next(iter(t)) for step, t in p.threads.items()}
    assert len(set(names.values())) == 3 and names["compute"] == threading.current_thread().name


def test_sequential_mode_gives_the_same_outcomes():
    p, q = Probe(), Probe()
    kw = {"key": lambda i: i // 2, "depth": 2}
    assert list(overlap.run(range(9), p.prepare, p.compute, p.write, **kw, overlap=False)) == list(
        overlap.run(range(9), q.prepare, q.compute, q.write, **kw)
    )
    assert p.threads["prepare"] == {threading.current_thread().name}


@pytest.mark.parametrize("where", ["prepare", "write"])
def test_an_error_in_a_helper_thread_is_raised_in_the_caller_and_nothing_later_is_written(where):
    p = Probe(fail_prepare=7 if where == "prepare" else None, fail_write=7 if where == "write" else None)
    got = []
    with pytest.raises(DiffsegError, match="img_7.png: cannot identify" if where == "prepare" else "No space left"):
        for out in overlap.run(range(30), p.prepare, p.compute, p.write, key=lambda i: i):
            got.append(out)
    assert got == [i for i, _ in p.written][: len(got)] and max(i for i, _ in p.written) < 7
    assert not [t for t in threading.enumerate() if t.name.startswith("diffseg-extract")]  # helpers joined


def test_compute_can_end_the_run_after_a_batch():
    p = Probe(stop_at=5)
    assert list(overlap.run(range(30), p.prepare, p.compute, p.write, key=lambda i: i // 2, depth=2)) == list(range(6))


def test_shards_and_dask_blocks_never_split_a_batch():
    for n, k, b in [(10, 3, 2), (17, 4, 4), (5, 5, 3), (9, 2, 1)]:
        shards = [shard_indices(list(range(n)), n, (i, k), b) for i in range(k)]
        assert sorted(j for s in shards for j in s) == list(range(n))
        assert all(len({j // b for j in s} & {j // b for j in t}) == 0 for s in shards for t in shards if s is not t)
    pending = [0, 1, 3, 4, 5, 8, 9, 10, 11, 12, 13, 14, 15, 21]
    for b in (1, 2, 4):
        bl = blocks(pending, 2, b)
        assert [j for block in bl for j in block] == pending
        owner = {j // b: n for n, block in enumerate(bl) for j in block}
        assert all(owner[j // b] == n for n, block in enumerate(bl) for j in block)
    assert blocks(list(range(10)), 1, 1) == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]  # as before batches


# -- end to end -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def batched(tmp_path_factory):
    out = tmp_path_factory.mktemp("batched") / "cache"
    result = extract("--unet-batch", "2", out=out)
    assert result.exit_code == 0, result.output
    assert CacheReader(out).record.extract.batch_size == 2
    return out


def test_batch_size_two_reruns_byte_identical_and_another_size_is_refused(batched, tmp_path):
    again = tmp_path / "again"
    assert extract("--unet-batch", "2", out=again).exit_code == 0
    assert_same_bytes(arrays(batched), arrays(again))
    result = extract(out=again)  # batch size 1 on a cache written with 2
    assert result.exit_code == 1 and "Traceback" not in result.output
    (line,) = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert "extract.batch_size" in line and "2" in line and "1" in line


def test_a_partly_pending_batch_is_recomputed_whole(batched, tmp_path):
    import shutil

    out = tmp_path / "partial"
    shutil.copytree(batched, out)
    r = CacheReader(out)
    name = r.feature_names()[0]
    w = CacheWriter.open(out)
    w._put(schema.STATUS, 1, np.uint8(schema.PENDING))  # sample 1 (batch {0, 1}) back to pending
    r.source(name).file(1).unlink()
    result = extract("--unet-batch", "2", out=out)
    assert result.exit_code == 0 and "done: 1 samples written" in result.output, result.output
    assert_same_bytes(arrays(batched), arrays(out))


def test_killed_batched_run_resumes_to_identical_arrays(batched, tmp_path):
    out = tmp_path / "killed"
    status = kill_after_first_sample(out, "--unet-batch", "2", timeout=120)
    result = extract("--unet-batch", "2", out=out)
    assert result.exit_code == 0, result.output
    assert f"done: {int((status == 0).sum())} samples written" in result.output
    assert_same_bytes(arrays(batched), arrays(out))


def test_overlapped_and_sequential_runs_write_the_same_bytes(tmp_path):
    import torch

    from diffseg.stages.extract import job
    from diffseg.stages.extract.config import ExtractConfig
    from diffseg.stages.extract.plan import build_plan

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the CLI runs above (OMP_NUM_THREADS=1 in conftest or ENV)
    try:
        kw = {"dataset": "demo", "model": "tiny", "resolution": (64, 64), "limit": 3, "device": "cpu"}
        for name, on in (("overlap", True), ("sequential", False)):
            plan = dataclasses.replace(build_plan(ExtractConfig(**kw, out=str(tmp_path / name))), overlap=on)
            assert job.run(plan, progress=False)["written"] == 3
    finally:
        torch.set_num_threads(threads)
    assert_same_bytes(arrays(tmp_path / "overlap"), arrays(tmp_path / "sequential"))


# -- --joint-branches and the default batch ------------------------------------------------------------
def test_joint_branches_is_recorded_reruns_identically_and_refuses_the_other_setting(tmp_path):
    """--joint-branches rounds as the larger U-Net call rounds: the record says so, a rerun writes the
    same bytes, and a resume without it (or the default cache resumed with it) is refused in one line.
    A default cache's record does not name the option (its record and hash stay as written)."""
    joint, again, plain = tmp_path / "joint", tmp_path / "again", tmp_path / "plain"
    for out in (joint, again):
        result = extract("--joint-branches", "--limit", "2", out=out)
        assert result.exit_code == 0, result.output
    assert CacheReader(joint).record.extract.joint_branches is True
    assert_same_bytes(arrays(joint), arrays(again))
    assert extract("--limit", "2", out=plain).exit_code == 0
    assert "joint_branches" not in CacheReader(plain).record.extract.to_dict()
    for out, flags in ((joint, ()), (plain, ("--joint-branches",))):
        result = extract(*flags, "--limit", "2", out=out)
        assert result.exit_code == 1 and "Traceback" not in result.output
        (line,) = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
        assert "extract.joint_branches" in line


def test_joint_branches_needs_both_branches_and_cuda_evaluation_caches_batch_by_default():
    from diffseg.stages.extract.config import ExtractConfig
    from diffseg.stages.extract.plan import EVAL_CUDA_BATCH, build_plan, default_batch_size

    kw = {"dataset": "demo", "model": "tiny", "resolution": (64, 64), "device": "cpu"}
    with pytest.raises(DiffsegError, match="--joint-branches"):
        build_plan(ExtractConfig(**kw, branches=("uncond",), joint_branches=True))
    assert build_plan(ExtractConfig(**kw, split="val")).batch_size == 1  # the CPU keeps one image per call
    assert default_batch_size("cuda", "eval") == EVAL_CUDA_BATCH > 1
    assert default_batch_size("cuda", "train") == default_batch_size("cpu", "eval") == 1
