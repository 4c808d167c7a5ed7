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

from diffseg.cache import CacheReader, CacheRecord, CacheWriter, SkippedSample, store
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


def _layer_arrays(cache: Path) -> dict[str, np.ndarray]:
    """Every per-layer feature array of a format-1 or -2 cache (one array per branch and layer), by plain zarr."""
    g = zarr.open_group(str(cache), mode="r")
    return {k: np.asarray(n[:]) for k, n in g.members(max_depth=None) if isinstance(n, zarr.Array) and "/" in k}


def _assert_same_weights(tmp_path: Path, *caches: Path) -> None:
    """Training on each cache (the fixture's three layers) gives identical weights."""
    kw = {**FAST_TRAIN, "layers": ("up1.res2", "up2.res2", "up3.res2")}
    weights = []
    for cache in caches:
        run = train.main(cache=cache, out=tmp_path / f"run-{cache.name}", **kw)
        weights.append(load_file(checkpoint.latest_weights(run)[0]))
    assert all(w.keys() == weights[0].keys() for w in weights)
    assert all(w[k].equal(weights[0][k]) for w in weights[1:] for k in w)


def _features(cache: Path) -> dict[str, np.ndarray]:
    """Every feature array of a cache, every sample, through the reader."""
    r = CacheReader(cache)
    return {k: np.stack([r.read(i, [k])[k] for i in range(r.n)]) for k in r.feature_names()}


def test_migrate_of_format1_keeps_every_value_and_packs_by_stride(tmp_path):
    old = _copy(tmp_path)
    before, files = _layer_arrays(old), _array_files(old)
    attrs = json.loads((old / "zarr.json").read_text())["attributes"]
    res = RUNNER.invoke(app, ["cache", "migrate", str(old)])
    assert res.exit_code == 0, res.output
    assert "migrated from cache format 1 to 3" in res.output
    r = CacheReader(old)
    assert replace(r.record, packs={}) == record_from_format1(attrs) and r.record.format_version == 3
    assert sorted(r.record.packs) == [f"{b}/s{s}" for b in ("cond", "uncond") for s in (16, 32, 8)]
    rec = r.record
    assert (
        rec.save_steps == (20, 1) and rec.extract.views_rule.redraws == 10 and rec.extract.views_rule.scale == (64, 64)
    )
    assert _features(old).keys() == before.keys()
    assert all(np.array_equal(v, before[k]) for k, v in _features(old).items())
    after = _array_files(old)
    assert {k: after[k] for k in after if k.startswith(("labels/", "status/"))} == {
        k: files[k] for k in files if k.startswith(("labels/", "status/"))
    }
    assert not [k for k in after if ".tmp" in k or "partial" in k]  # no temp file left behind
    again = RUNNER.invoke(app, ["cache", "migrate", str(old)])
    assert again.exit_code == 1 and "is already a format-3 cache" in again.output


FIXTURE2 = Path(__file__).parent / "fixtures" / "format2_cache" / "cache"


def test_a_format2_cache_migrates_to_the_values_and_weights_of_a_fresh_extraction(tmp_path):
    old = tmp_path / "old"
    shutil.copytree(FIXTURE2, old)
    before = _layer_arrays(old)
    files_before = sum(1 for p in old.rglob("*") if p.is_file())
    with pytest.raises(DiffsegError, match="is a format-2 cache: run `diffseg cache migrate"):
        CacheReader(old)
    assert migrate(old, progress=False)[0] == 2
    assert sum(1 for p in old.rglob("*") if p.is_file()) < files_before / 2
    got = _features(old)
    assert got.keys() == before.keys() and all(np.array_equal(v, before[k]) for k, v in got.items())
    fresh = tmp_path / "fresh"
    res = RUNNER.invoke(app, [*EXTRACT, "--out", str(fresh)])  # the command that wrote the fixture
    assert res.exit_code == 0, res.output
    new = _features(fresh)
    assert new.keys() == got.keys() and all(np.array_equal(v, got[k]) for k, v in new.items())
    assert CacheReader(old).record.packs == CacheReader(fresh).record.packs
    assert _array_files(old).keys() == _array_files(fresh).keys()
    _assert_same_weights(tmp_path, old, fresh)
    # the migrated cache resumes like a fresh one: nothing pending, nothing rewritten
    assert RUNNER.invoke(app, [*EXTRACT, "--out", str(old)]).exit_code == 0


def test_an_interrupted_migration_leaves_a_readable_cache_and_the_rerun_finishes_it(tmp_path, monkeypatch):
    old = tmp_path / "old"
    shutil.copytree(FIXTURE2, old)
    before = _layer_arrays(old)

    class Killed(Exception):
        pass

    def dies(self, i, encoded, packing=None, exact=False):
        raise Killed("killed during the copy")

    with monkeypatch.context() as m:
        m.setattr(CacheWriter, "write_packs", dies)
        with pytest.raises(Killed):
            migrate(old, progress=False)
    r = CacheReader(old)  # step 1 done: a format-3 cache packed by layer, every value where it was
    assert r.record.packs == {k: [k.split("/")[1]] for k in before}
    assert all(np.array_equal(v, before[k]) for k, v in _features(old).items())
    # killed after the switch, before the old arrays were deleted: the rerun deletes them
    real_delete = store.delete_array
    with monkeypatch.context() as m:
        m.setattr(store, "delete_array", lambda path, name: (_ for _ in ()).throw(Killed("killed")))
        with pytest.raises(Killed):
            migrate(old, progress=False)
    assert set(before) <= set(_layer_arrays(old))  # old arrays still there, beside the packs
    assert store.delete_array is real_delete
    verify = RUNNER.invoke(app, ["cache", "verify", str(old), "--json"])
    strays = json.loads(verify.stdout)["problems"]
    assert verify.exit_code == 1 and len(strays) == len(before) and "does not name" in strays[0]
    assert migrate(old, progress=False)[0] == 3  # nothing but the cleaning left
    left = _layer_arrays(old)
    assert not set(before) & set(left) and all(k.split("/")[1].startswith("s") for k in left)
    assert all(np.array_equal(v, before[k]) for k, v in _features(old).items())
    with pytest.raises(DiffsegError, match="already a format-3 cache packed by stride"):
        migrate(old, progress=False)
    assert RUNNER.invoke(app, ["cache", "verify", str(old)]).exit_code == 0


def test_migrate_waits_for_no_one_a_running_extraction_refuses_it(tmp_path):
    old = tmp_path / "old"
    shutil.copytree(FIXTURE2, old)
    lock = tmp_path / "old.shard-1-of-2.lock"
    lock.write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": 0}))
    res = RUNNER.invoke(app, ["cache", "migrate", str(old)])
    assert res.exit_code == 1 and "is being extracted" in res.output and "Traceback" not in res.output
    assert json.loads((old / "zarr.json").read_text())["attributes"]["format_version"] == 2  # untouched


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
    fa, fb = _features(old), _features(fresh)
    assert fa.keys() == fb.keys() and all(np.array_equal(fa[k], fb[k]) for k in fa)
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
    _assert_same_weights(tmp_path, old, fresh)


def _as_format2(cache: Path) -> None:
    """A format-3 cache packed one layer per array is format 2's layout: its record made format 2's."""
    meta = json.loads((cache / "zarr.json").read_text())
    attrs = meta["attributes"]
    assert all(k.split("/")[1] == layers[0] for k, layers in attrs.pop("packs").items())
    attrs["format_version"] = 2
    (cache / "zarr.json").write_text(json.dumps(meta))


def test_a_local_format2_bitround_cache_keeps_its_values(tmp_path):
    """Format-2 code wrote local bitround chunks unrounded: migration copies values as stored."""
    cache = tmp_path / "c"
    w = CacheWriter.create(cache, _bitround_record(), ["a", "b"], packing="layer")
    rng = np.random.default_rng(0)
    feats = {k: rng.standard_normal(w.shapes[k]).astype(np.float16) for k in w.feature_names}
    label = np.zeros(w.label_shape, np.uint8)
    for i in range(2):
        w.write_sample(i, feats, label)
        for k in w.feature_names:  # as format-2 code did: the values unrounded
            w._put_pieces(k, i, [feats[k]], exact=True)
    _as_format2(cache)
    assert migrate(cache, progress=False)[0] == 2
    got = _features(cache)
    assert all(np.array_equal(got[k][i], feats[k]) for k in feats for i in range(2))


def _bitround_record() -> CacheRecord:
    specs = layer_specs(TINY, DEFAULT_LAYERS, (64, 64), 0)
    r = synthetic_record(specs, n=2, save_steps=(20, 1), branches=("uncond",), resolution=(64, 64))
    return replace(r, codecs={"features": "bitround:keepbits=3"})


def test_repack_refuses_new_packs_named_like_live_arrays_and_changes_nothing(tmp_path):
    from diffseg.cache.migrate import repack
    from diffseg.cache.synthetic import make_cache

    cache = make_cache(tmp_path / "c", 2)
    before = _features(cache)
    meta = json.loads((cache / "zarr.json").read_text())
    packs = meta["attributes"]["packs"]
    name = next(k for k, v in packs.items() if len(v) > 1)
    packs[name] = packs[name][::-1]  # the same layers in another order: the same pack name, other offsets
    (cache / "zarr.json").write_text(json.dumps(meta))
    reordered = _features(cache)
    with pytest.raises(DiffsegError, match="have the names of arrays it holds now"):
        repack(cache, progress=False)
    assert all(np.array_equal(v, reordered[k]) for k, v in _features(cache).items())
    assert before.keys() == reordered.keys()


def test_a_record_without_packs_is_damaged_not_empty(tmp_path):
    from diffseg.cache.synthetic import make_cache

    cache = make_cache(tmp_path / "c", 1)
    meta = json.loads((cache / "zarr.json").read_text())
    del meta["attributes"]["packs"]
    (cache / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(DiffsegError, match="damaged cache attributes: its packs .* are missing"):
        CacheReader(cache)
