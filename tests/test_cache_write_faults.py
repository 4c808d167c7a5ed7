"""Faults while a cache is created or written (README "What diffseg guarantees"): a creation cut
short is rerun, a cache root that vanishes stops the writer within one sample, and the storage
faults users meet (core/storage_errors.py) are one line naming the cache, never a traceback.
Full disks and read-only mounts are injected at the lowest write call (tests/helpers.py)."""

from __future__ import annotations

import errno
import shutil

import numpy as np
import pytest
import zarr
from helpers import fail_writes
from test_cache_resume import request

from diffseg.cache import CacheReader, CacheWriter, store
from diffseg.cache.synthetic import make_cache
from diffseg.core.errors import DiffsegError


def _sample(writer: CacheWriter) -> tuple[dict, np.ndarray]:
    arrays = {k: np.zeros(writer.shapes[k], np.float16) for k in writer.feature_names}
    return arrays, np.zeros(writer.label_shape, np.uint8)


def test_a_creation_cut_short_by_a_full_disk_is_one_line_and_the_rerun_creates_it(tmp_path):
    out = tmp_path / "c"
    with pytest.MonkeyPatch.context() as mp:
        failed = fail_writes(mp, tmp_path, errno.ENOSPC, after=4)  # the group and a few arrays exist
        with pytest.raises(DiffsegError) as err:
            CacheWriter.create(out, *request())
    assert failed and (out / "zarr.json").is_file()  # interrupted mid-creation, not before it
    assert str(out) in str(err.value) and "no space left on the device" in str(err.value)
    assert not store.is_cache(out) and store.creation_interrupted(out)
    writer = CacheWriter.create(out, *request())  # the rerun: no "delete it by hand"
    assert writer.pending() == [0, 1, 2]
    writer.write_sample(0, *_sample(writer))
    assert list(CacheReader(out).status) == [1, 0, 0] and store.is_cache(out)
    # only a creation diffseg marked is started over: another Zarr group is refused, never cleared
    zarr.open_group(tmp_path / "other", mode="w", zarr_format=3).create_array("mine", shape=(2,), dtype="u1")
    with pytest.raises(DiffsegError, match="without diffseg attributes"):
        CacheWriter.create(tmp_path / "other", *request())
    assert (tmp_path / "other" / "mine" / "zarr.json").is_file()


def test_a_cache_deleted_while_written_stops_the_writer_at_the_next_sample(tmp_path):
    out = make_cache(tmp_path / "c", 3, write=1)
    writer = CacheWriter.open(out)
    shutil.rmtree(out)  # another user's cleanup, a scratch purge
    with pytest.raises(DiffsegError, match="the cache vanished while being written") as err:
        writer.write_sample(1, *_sample(writer))
    assert str(out) in str(err.value)
    assert not (out / "status" / "c" / "1").exists()  # the sample was not marked complete
    with pytest.raises(DiffsegError, match="vanished"):
        writer.mark_skipped(2)


def test_a_full_disk_while_writing_a_sample_names_the_cache_and_the_sample(tmp_path):
    out = make_cache(tmp_path / "c", 3, write=1)
    writer = CacheWriter.open(out)
    with pytest.MonkeyPatch.context() as mp:
        fail_writes(mp, out, errno.ENOSPC, after=1)
        with pytest.raises(DiffsegError) as err:
            writer.write_sample(1, *_sample(writer))
    line = str(err.value)
    assert "\n" not in line and str(out) in line and "city/img_00001" in line and "left pending" in line
    assert "no space left on the device" in line and "free space" in line
    assert list(CacheReader(out).status) == [1, 0, 0]


def test_a_read_only_mount_is_one_line(tmp_path):
    out = make_cache(tmp_path / "c", 3, write=1)
    writer = CacheWriter.open(out)
    with pytest.MonkeyPatch.context() as mp:
        fail_writes(mp, out, errno.EROFS)
        with pytest.raises(DiffsegError, match="read-only file system") as err:
            writer.write_sample(1, *_sample(writer))
        assert "free space" not in str(err.value)
        with pytest.raises(DiffsegError, match="read-only file system"):
            writer.update_record(skipped=())


def test_truncated_metadata_is_one_line_naming_the_file(tmp_path):
    out = make_cache(tmp_path / "c", 2)
    for node in ("", "status/"):
        meta = out / node / "zarr.json"
        good = meta.read_bytes()
        meta.write_bytes(good[:40])
        with pytest.raises(DiffsegError) as err:
            CacheWriter.create(out, *request(n=2))
        assert f"{meta}: damaged metadata, not valid JSON" in str(err.value)
        meta.write_bytes(good)
