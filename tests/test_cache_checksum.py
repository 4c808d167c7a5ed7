"""A chunk file corrupted on disk (a flipped byte): `cache verify` names the sample, training
refuses it; caches written before the checksum codec keep reading."""

import json

import numpy as np
import zarr
from typer.testing import CliRunner

from diffseg.cache import CacheReader
from diffseg.cache.fastread import ChunkSource, CorruptChunk
from diffseg.cli import app

RUNNER = CliRunner()
EXTRACT = ["extract", "--dataset", "demo", "--model", "tiny", "--resolution", "64x64", "--limit", "2"]


def _flip(path, offset=10):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_flipped_byte_is_found_by_verify_and_refused_by_training(tmp_path):
    out = tmp_path / "cache"
    result = RUNNER.invoke(app, [*EXTRACT, "--out", str(out)])
    assert result.exit_code == 0, result.output
    r = CacheReader(out)
    assert r.record.codecs["features"] == "raw+crc32c" and r.record.codecs["labels"] == "zstd-3+crc32c"
    assert RUNNER.invoke(app, ["cache", "verify", str(out)]).exit_code == 0
    _flip(r.source("cond/up2.res2").file(1))
    result = RUNNER.invoke(app, ["cache", "verify", str(out), "--json"])
    assert result.exit_code == 1, result.output
    problems = json.loads(result.output)["problems"]
    assert len(problems) == 1 and "train/0001" in problems[0] and "crc32c" in problems[0], problems
    args = ["--fusion", "light", "--iters", "2", "--warmup", "0", "--read-threads", "0", "--device", "cpu"]
    result = RUNNER.invoke(app, ["train", "--cache", str(out), "--out", str(tmp_path / "run"), *args])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "train/0001" in result.output and "corrupt" in result.output


def test_labels_and_step_subsets_are_checked_too(tmp_path):
    g = zarr.open_group(zarr.storage.LocalStore(tmp_path / "g"), mode="w", zarr_format=3)
    from diffseg.cache import store

    store.create_feature_array(g, "f", 2, (3, 2, 4, 4), "float16")
    store.create_label_array(g, "l", 2, (8, 8))
    g["f"][:] = np.arange(2 * 3 * 2 * 16, dtype=np.float16).reshape(2, 3, 2, 4, 4)
    g["l"][:] = 7
    f, lab = ChunkSource(g["f"], tmp_path / "g"), ChunkSource(g["l"], tmp_path / "g")
    assert f.mode == "raw" and f.crc and lab.mode == "zstd" and lab.crc
    assert np.array_equal(f.read(0, steps=[0, 2]), np.asarray(g["f"][0])[[0, 2]])
    _flip(f.file(1), offset=0)
    _flip(lab.file(1), offset=4)
    for src, steps in ((f, [1]), (lab, None)):
        try:
            src.read(1, steps)
        except CorruptChunk as err:
            assert "crc32c" in str(err)
        else:
            raise AssertionError(f"{src.name}: corrupt chunk read without error")


def test_a_cache_without_checksums_still_reads(tmp_path):
    """Format-2 caches written before the crc32c codec: plain bytes, read by the fast path."""
    g = zarr.open_group(zarr.storage.LocalStore(tmp_path / "g"), mode="w", zarr_format=3)
    a = g.create_array("f", shape=(2, 3, 4), chunks=(1, 3, 4), dtype="float16", compressors=None, fill_value=0)
    a[:] = np.arange(24, dtype=np.float16).reshape(2, 3, 4)
    src = ChunkSource(a, tmp_path / "g")
    assert src.mode == "raw" and not src.crc
    assert np.array_equal(src.read(1), np.asarray(a[1]))
