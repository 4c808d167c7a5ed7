"""`diffseg cache info | verify | show` through typer's test runner."""

from __future__ import annotations

import json

import numpy as np
import zarr
from typer.testing import CliRunner

from diffseg.cache import CacheReader, CacheWriter
from diffseg.cache.synthetic import make_cache
from diffseg.cli import app

runner = CliRunner()


def test_info_json_and_text(tmp_path):
    w = CacheWriter.open(make_cache(tmp_path / "c", 3, write=2, xattn_classes=4))
    w.mark_skipped(2)
    res = runner.invoke(app, ["cache", "info", str(tmp_path / "c"), "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["samples"] == 3 and d["complete"] == 2 and d["skipped"] == 1 and d["pending"] == 0
    assert d["branches"] == ["uncond", "cond"]
    up1 = d["layers"]["up1.res2"]
    assert (up1["kind"], up1["stride"], up1["channels"], up1["size"]) == ("res", 32, 64, [2, 2])
    assert up1["bytes"] == 3 * 64 * 2 * 2 * 2
    assert d["bytes_per_sample"] == CacheReader(tmp_path / "c").bytes_per_sample()
    feats = sum(2 * L["bytes"] for L in d["layers"].values())
    assert d["bytes_per_sample"] == feats + 64 * 64
    text = runner.invoke(app, ["cache", "info", str(tmp_path / "c")])
    assert text.exit_code == 0
    assert "up3.xattn1" in text.stdout and "3 planned: 2 complete, 0 pending, 1 skipped" in text.stdout


def test_verify_complete_cache_passes(tmp_path):
    make_cache(tmp_path / "c", 2, kind="eval")
    res = runner.invoke(app, ["cache", "verify", str(tmp_path / "c"), "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d == {
        "path": str(tmp_path / "c"),
        "samples": 2,
        "complete": 2,
        "read_back": 2,
        "pending": 0,
        "skipped": 0,
        "problems": [],
    }


def test_verify_incomplete_cache_exits_1_naming_the_sample(tmp_path):
    make_cache(tmp_path / "c", 3, write=2)
    res = runner.invoke(app, ["cache", "verify", str(tmp_path / "c"), "--json"])
    assert res.exit_code == 1
    d = json.loads(res.stdout)
    assert d["complete"] == 2 and d["problems"] == ["sample city/img_00002 (index 2): pending (never completed)"]
    text = runner.invoke(app, ["cache", "verify", str(tmp_path / "c")])
    assert text.exit_code == 1 and "city/img_00002 (index 2): pending" in text.stdout


def test_verify_finds_a_truncated_chunk(tmp_path):
    make_cache(tmp_path / "c", 2)
    f = CacheReader(tmp_path / "c").source("cond/up2.res2").file(1)
    f.write_bytes(f.read_bytes()[:100])
    res = runner.invoke(app, ["cache", "verify", str(tmp_path / "c"), "--json"])
    assert res.exit_code == 1
    (problem,) = json.loads(res.stdout)["problems"]
    assert problem.startswith("sample city/img_00001 (index 1): unreadable") and "truncated" in problem


def test_show_writes_feature_and_xattn_pictures(tmp_path):
    from PIL import Image

    make_cache(tmp_path / "c", 2, xattn_classes=19, branches=("cond",), save_steps=(20, 1))
    res = runner.invoke(app, ["cache", "show", str(tmp_path / "c"), "--out", str(tmp_path / "pics"), "--sample", "1"])
    assert res.exit_code == 0, res.output
    names = sorted(p.name for p in (tmp_path / "pics").iterdir())
    assert names == ["cond_features.png", "cond_up3.xattn1_t1.png", "cond_up3.xattn1_t20.png"]
    w, h = Image.open(tmp_path / "pics" / "cond_features.png").size
    assert w >= 400 and h >= 6 * 150  # 6 layer rows, readable cells


def test_show_refuses_an_incomplete_sample(tmp_path):
    make_cache(tmp_path / "c", 2, write=1)
    res = runner.invoke(app, ["cache", "show", str(tmp_path / "c"), "--out", str(tmp_path / "p"), "--sample", "1"])
    assert res.exit_code == 1
    assert "sample city/img_00001 (index 1)" in res.output and "incomplete" in res.output


def test_pca_rgb_of_two_regions_separates_them():
    from diffseg.stages.tools.cacheshow import pca_rgb

    feats = np.zeros((1, 8, 4, 4), np.float16)
    feats[0, :, :, 2:] = np.arange(8)[:, None, None]  # right half differs along one direction
    rgb = pca_rgb(feats)
    assert rgb.shape == (1, 4, 4, 3) and rgb.min() >= 0 and rgb.max() <= 1
    left, right = rgb[0, :, :2, 0], rgb[0, :, 2:, 0]
    assert np.ptp(left) == 0 and np.ptp(right) == 0 and abs(left[0, 0] - right[0, 0]) > 0.9


def test_damaged_cache_is_one_line(tmp_path):
    group = zarr.open_group(tmp_path / "c", mode="w")
    group.attrs["format_version"] = 3
    res = runner.invoke(app, ["cache", "info", str(tmp_path / "c")])
    assert res.exit_code == 1
    assert "damaged cache" in res.output and "Traceback" not in res.output
