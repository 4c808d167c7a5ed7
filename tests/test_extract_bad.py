"""Bad samples in stage one: skipped with a warning naming the file, recorded in the cache
attributes and counted; `--strict` stops at the first with exit 1 (DESIGN.md "Errors")."""

import numpy as np
import pytest
from datagen import make_gtav
from typer.testing import CliRunner

from diffseg.cache import CacheReader
from diffseg.cli import app

RUNNER = CliRunner()


@pytest.fixture()
def gta(tmp_path):
    root = tmp_path / "gta"
    make_gtav(root, n=3, size=(96, 64))
    (root / "images" / "00002.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return root


def extract(root, out, *extra):
    return RUNNER.invoke(
        app,
        [
            "extract",
            "--dataset",
            "gtav",
            "--root",
            str(root),
            "--model",
            "tiny",
            "--resolution",
            "64x64",
            "--scale",
            "96x64",
            "--preset",
            "1step",
            "--out",
            str(out),
            *extra,
        ],
    )


def test_corrupt_image_is_skipped_recorded_and_counted(gta, tmp_path):
    out = tmp_path / "cache"
    result = extract(gta, out)
    assert result.exit_code == 0, result.output
    assert "warning: skipped sample 00002:" in result.output and "00002.png" in result.output
    assert "done: 2 samples written, 1 skipped" in result.output
    r = CacheReader(out)
    assert list(r.status) == [1, 2, 1]
    (skip,) = r.record.skipped
    assert skip.id == "00002" and "images/00002.png" in skip.reason
    assert np.isfinite(r.read(2, ["uncond/up3.res2"])["uncond/up3.res2"]).all()
    # a rerun skips both the complete and the skipped samples, and keeps the record
    again = extract(gta, out)
    assert again.exit_code == 0 and "done: 0 samples written, 0 skipped" in again.output
    assert CacheReader(out).record.skipped == r.record.skipped


def test_a_decompression_bomb_is_skipped_like_a_corrupt_image_and_recorded_relative_to_the_root(gta, tmp_path):
    from datagen import save_bomb

    save_bomb(gta / "images" / "00001.png", (20000, 20000))  # a 1 MB file of 1.2 GB pixels, in its header
    out = tmp_path / "cache"
    result = extract(gta, out)
    assert result.exit_code == 0, result.output
    assert "warning: skipped sample 00001: images/00001.png: image too large" in result.output
    assert "done: 1 samples written, 2 skipped" in result.output
    reasons = {s.id: s.reason for s in CacheReader(out).record.skipped}
    assert reasons["00001"].startswith("images/00001.png: image too large")
    assert reasons["00002"].startswith("images/00002.png: unreadable image")
    assert not any(str(gta) in r or str(gta.resolve()) in r for r in reasons.values())  # no absolute path kept


def test_strict_stops_at_the_first_bad_sample(gta, tmp_path):
    out = tmp_path / "cache"
    result = extract(gta, out, "--strict")
    assert result.exit_code == 1
    assert "00002.png" in result.output and "--strict" in result.output and "Traceback" not in result.output
    status = CacheReader(out).status
    assert status[0] == 1 and status[1] == 0  # never marked skipped, never half written
