"""The cache record (format 2): JSON round trip, refusals, synthetic records, and `cache migrate` of a
format-1 cache written by diffseg 64b7e8a (tests/fixtures/format1_cache) into one that reads, extracts
and trains exactly like a fresh format-2 cache."""

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import zarr
from helpers import FAST_TRAIN
from safetensors.torch import load_file
from typer.testing import CliRunner

from diffseg.cache import CacheReader, CacheRecord, CacheWriter, SkippedSample
from diffseg.cache.migrate import migrate, record_from_format1
from diffseg.cache.synthetic import DEFAULT_LAYERS, SD21, TINY, synthetic_record
from diffseg.cli import app
from diffseg.core.errors import DiffsegError
from diffseg.core.layers import layer_specs
from diffseg.pipeline.builtin import SD21_UNET, TINY_UNET
from diffseg.pipeline.config import TrajectoryConfig
from diffseg.stages.train import checkpoint
from diffseg.stages.train import job as train

FIXTURE = Path(__file__).parent / "fixtures" / "format1_cache" / "cache"
# the command that wrote the fixture (its README), here with the new code
EXTRACT = [
    "extract", "--dataset", "demo", "--split", "train", "--model", "tiny", "--preset", "5step", "--steps", "0,1,20",
    "--save-steps", "20,1", "--layers", "up1.res2,up2.res2,up3.res2", "--kinds", "res,blk,xattn",
    "--uncond-prompt", "classes", "--resolution", "64x64", "--limit", "2",
]  # fmt: skip
RUNNER = CliRunner()


def _record() -> CacheRecord:
    r = synthetic_record(
        layer_specs(TINY, DEFAULT_LAYERS, (64, 32), 0),
        n=2,
        save_steps=(60, 1),
        branches=("uncond",),
        resolution=(64, 32),
    )
    return replace(r, skipped=(SkippedSample(id="a", reason="corrupt"),), timings={"extract_s": [1.5, 2]})


def test_record_round_trips_through_json():
    r = _record()
    assert CacheRecord.from_dict(json.loads(json.dumps(r.to_dict()))) == r
    assert r.save_steps == (60, 1) and r.extract.trajectory["save_steps"] == [60, 1]
    assert "save_steps" not in r.to_dict()  # held once, in the trajectory


def test_record_refuses_unknown_and_missing_fields_in_one_line():
    d = _record().to_dict()
    with pytest.raises(DiffsegError, match=r"^unknown CacheRecord fields \['colour'\]$"):
        CacheRecord.from_dict({**d, "colour": "red"})
    with pytest.raises(DiffsegError, match=r"^unknown ViewsRule fields \['words'\]$"):
        CacheRecord.from_dict({**d, "extract": {**d["extract"], "views_rule": {"mode": "resize", "words": "x"}}})
    with pytest.raises(DiffsegError, match=r"^ModelRecord lacks the fields \['fingerprint'\]$"):
        CacheRecord.from_dict({**d, "model": {"name": "tiny", "prediction_type": "epsilon"}})


def test_synthetic_records_hold_a_real_trajectory_and_geometry():
    r = _record()
    cfg = TrajectoryConfig.from_dict(r.extract.trajectory)
    assert cfg.save_steps == r.save_steps and cfg.layers == tuple(r.layers)
    for ours, builtin in ((TINY, TINY_UNET), (SD21, SD21_UNET)):
        assert layer_specs(ours, DEFAULT_LAYERS, (64, 64), 3) == layer_specs(builtin, DEFAULT_LAYERS, (64, 64), 3)


def _copy(tmp_path) -> Path:
    dst = tmp_path / "old"
    shutil.copytree(FIXTURE, dst)
    return dst


def _array_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_format1_cache_is_told_to_migrate(tmp_path):
    old = _copy(tmp_path)
    want = f"{old} is a format-1 cache: run `diffseg cache migrate {old}`"
    for open_cache in (CacheReader, CacheWriter.open):
        with pytest.raises(DiffsegError) as err:
            open_cache(old)
        assert str(err.value) == want
    res = RUNNER.invoke(app, ["cache", "info", str(old)])
    assert res.exit_code == 1 and want in " ".join(res.output.split())


def test_migrate_rewrites_only_the_attributes(tmp_path):
    old = _copy(tmp_path)
    before = _array_files(old)
    attrs = json.loads((old / "zarr.json").read_text())["attributes"]
    res = RUNNER.invoke(app, ["cache", "migrate", str(old)])
    assert res.exit_code == 0, res.output
    after = _array_files(old)
    changed = sorted(k for k in before if before[k] != after.get(k))
    assert changed == ["zarr.json"] and set(after) == set(before)  # no temp file left behind
    r = CacheReader(old).record
    assert r == record_from_format1(attrs) and r.format_version == 2
    assert r.save_steps == (20, 1) and r.extract.views_rule.redraws == 10 and r.extract.views_rule.scale == (64, 64)
    again = RUNNER.invoke(app, ["cache", "migrate", str(old)])
    assert again.exit_code == 1 and "is already a format-2 cache" in again.output


def test_migrate_refuses_what_it_cannot_map(tmp_path):
    attrs = json.loads((FIXTURE / "zarr.json").read_text())["attributes"]
    reworded = {**attrs, "extract": {**attrs["extract"], "views_rule": "crops, somehow"}}
    with pytest.raises(DiffsegError, match=r"^cannot migrate: unknown format-1 views rule 'crops, somehow'"):
        record_from_format1(reworded)
    with pytest.raises(DiffsegError, match=r"^cannot migrate: save_steps=\[1, 20\] disagrees with"):
        record_from_format1({**attrs, "save_steps": [1, 20]})
    with pytest.raises(DiffsegError, match=r"^cannot migrate: format-1 attribute extract.trajectory is missing"):
        record_from_format1({**attrs, "extract": {"preset": "synthetic"}})
    old = _copy(tmp_path)
    meta = json.loads((old / "zarr.json").read_text())
    meta["attributes"] = reworded
    (old / "zarr.json").write_text(json.dumps(meta))
    res = RUNNER.invoke(app, ["cache", "migrate", str(old)])
    assert res.exit_code == 1 and "cannot migrate" in res.output
    assert json.loads((old / "zarr.json").read_text()) == meta  # untouched


def test_a_migrated_cache_equals_a_fresh_extraction_and_trains_the_same(tmp_path):
    old = _copy(tmp_path)
    migrate(old)
    fresh = tmp_path / "fresh"
    res = RUNNER.invoke(app, [*EXTRACT, "--no-photometric", "--out", str(fresh)])  # format 1 had none
    assert res.exit_code == 0, res.output
    a, b = _array_files(old), _array_files(fresh)
    # a fresh cache adds the per-sample source hashes (sample_sha256); the rest is the same files
    assert sorted(a) == sorted(k for k in b if not k.startswith("sample_sha256/"))
    # every array byte-identical in value; fresh chunks add a crc32c trailer (store.py), old ones do not
    ga, gb = zarr.open_group(str(old), mode="r"), zarr.open_group(str(fresh), mode="r")
    names = [k for k, n in ga.members(max_depth=None) if isinstance(n, zarr.Array)]
    assert [k for k in names if np.asarray(ga[k][:]).tobytes() != np.asarray(gb[k][:]).tobytes()] == []
    ra, rb = CacheReader(old).record, CacheReader(fresh).record
    assert ra.codecs == {"features": "raw", "labels": "zstd-3"} and rb.codecs["features"] == "raw+crc32c"
    assert ra.sample_hash is None and rb.sample_hash == "sample_sha256"
    # the record differs only in what this diffseg changed since format 1: checksums and source hashes,
    # the seeding scheme (ids -> pixels) and the resize (Pillow -> OpenCV); neither of the last two
    # touches this fixture's arrays (no eta step before t = 20, mean encoding, crops at the image's size)
    assert ra.extract.seeding == "name-v1" and rb.extract.seeding == "content-v1"
    assert (ra.extract.views_rule.interpolation, rb.extract.views_rule.interpolation) == (
        "bilinear-antialias",
        "cv2.INTER_LINEAR",
    )
    ex = replace(ra.extract, seeding=rb.extract.seeding, views_rule=rb.extract.views_rule)
    blank = dict(timings={}, host={}, codecs={}, sample_hash=None)
    assert replace(ra, extract=ex, **blank) == replace(rb, **blank)
    # a migrated cache is not continued by the new seeds: one line says so
    res = RUNNER.invoke(app, [*EXTRACT, "--out", str(old)])
    assert res.exit_code == 1 and "seeding scheme 'name-v1'" in res.output, res.output
    kw = {**FAST_TRAIN, "layers": ("up1.res2", "up2.res2", "up3.res2")}
    weights = []
    for cache in (old, fresh):
        run = train.main(cache=cache, out=tmp_path / f"run-{cache.name}", **kw)
        weights.append(load_file(checkpoint.latest_weights(run)[0]))
    assert weights[0].keys() == weights[1].keys()
    assert all(weights[0][k].equal(weights[1][k]) for k in weights[0])
