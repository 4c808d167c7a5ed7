"""Bad input that used to slip through: unknown GTAV splits, unpicklable DataError,
damaged caches and run records, and a bad --encode value."""

import pickle

import pytest
import zarr
from datagen import make_gtav
from typer.testing import CliRunner

from diffseg.cli import app
from diffseg.core.errors import DataError, DiffsegError
from diffseg.data import open_dataset

RUNNER = CliRunner()


def test_gtav_rejects_unknown_split(tmp_path):
    make_gtav(tmp_path, 2, (64, 32))
    with pytest.raises(DiffsegError, match="unknown split 'test'"):
        open_dataset("gtav", root=tmp_path, split="test")


def test_data_error_survives_pickling():
    err = pickle.loads(pickle.dumps(DataError("labels/00001.png", "truncated PNG")))
    assert (
        isinstance(err, DataError) and err.path == "labels/00001.png" and str(err) == "labels/00001.png: truncated PNG"
    )


def test_damaged_cache_is_one_line(tmp_path):
    group = zarr.open_group(tmp_path / "c", mode="w")
    group.attrs["format_version"] = 2
    res = RUNNER.invoke(app, ["cache", "info", str(tmp_path / "c")])
    assert res.exit_code == 1
    assert "damaged cache" in res.output and "Traceback" not in res.output


def test_corrupt_run_record_is_one_line(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{not json")
    cache = tmp_path / "cache"
    cache.mkdir()
    res = RUNNER.invoke(app, ["eval", "--run", str(run), "--cache", str(cache)])
    assert res.exit_code == 1, res.output
    assert "not valid JSON" in res.output


def test_bad_encode_is_a_usage_error():
    res = RUNNER.invoke(app, ["extract", "--dataset", "demo", "--encode", "median"])
    assert res.exit_code == 2
