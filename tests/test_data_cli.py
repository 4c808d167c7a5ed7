"""`diffseg data check` through typer's test runner."""

import json

import pytest
from datagen import make_cityscapes, make_gtav
from typer.testing import CliRunner

from diffseg.cli import app


@pytest.fixture
def runner():
    return CliRunner()


def test_good_dataset_text(runner, tmp_path):
    make_gtav(tmp_path, n=2)
    res = runner.invoke(app, ["data", "check", "--dataset", "gtav", "--root", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "2 samples" in res.stdout and "no problems" in res.stdout
    assert "road" in res.stdout and "share" in res.stdout


def test_good_dataset_json(runner, tmp_path):
    expected = make_cityscapes(tmp_path, "val", n=3)
    res = runner.invoke(app, ["data", "check", "-d", "cityscapes", "--root", str(tmp_path), "--split", "val", "--json"])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    assert rep["samples"] == 3 and rep["problems"] == [] and rep["dataset"] == "cityscapes" and rep["split"] == "val"
    road = sum(int((lab == 0).sum()) for lab in expected.values())
    assert rep["histogram"]["road"] == road and len(rep["histogram"]) == 19


def test_bad_dataset_exit_1_names_the_file(runner, tmp_path):
    make_gtav(tmp_path, n=3)
    missing = tmp_path / "labels" / "00002.png"
    missing.unlink()
    bad = tmp_path / "images" / "00003.png"
    bad.write_bytes(bad.read_bytes()[:40])
    res = runner.invoke(app, ["data", "check", "--dataset", "gtav", "--root", str(tmp_path), "--json"])
    assert res.exit_code == 1
    rep = json.loads(res.stdout)
    assert rep["samples"] == 3 and len(rep["problems"]) == 2
    assert rep["problems"][0] == f"{missing}: missing label" and rep["problems"][1].startswith(
        f"{bad}: unreadable image"
    )
    res = runner.invoke(app, ["data", "check", "--dataset", "gtav", "--root", str(tmp_path)])
    assert res.exit_code == 1 and f"problem: {missing}: missing label" in res.stdout
    assert "Traceback" not in res.output


def test_limit(runner, tmp_path):
    make_gtav(tmp_path, n=3)
    (tmp_path / "labels" / "00003.png").unlink()
    res = runner.invoke(app, ["data", "check", "--dataset", "gtav", "--root", str(tmp_path), "--limit", "2", "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["checked"] == 2


def test_user_errors_are_one_line(runner, tmp_path):
    res = runner.invoke(app, ["data", "check", "--dataset", "gtav", "--root", str(tmp_path / "nope")])
    assert res.exit_code == 1 and res.stdout == ""
    assert res.stderr.strip().count("\n") == 0 and "does not exist" in res.stderr
    make_gtav(tmp_path, n=1)
    res = runner.invoke(app, ["data", "check", "--dataset", "gtav", "--root", str(tmp_path), "--split", "val"])
    assert res.exit_code == 1 and "split-file" in res.stderr and "Traceback" not in res.output


def test_split_file_unknown_id(runner, tmp_path):
    make_gtav(tmp_path, n=1)
    ids = tmp_path / "ids.txt"
    ids.write_text("00009\n")
    res = runner.invoke(app, ["data", "check", "--dataset", "gtav", "--root", str(tmp_path), "--split-file", str(ids)])
    assert res.exit_code == 1 and str(ids) in res.output and "00009" in res.output


def test_demo_and_unknown_name(runner):
    res = runner.invoke(app, ["data", "check", "--dataset", "demo", "--split", "val-night", "--json"])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    assert rep["samples"] == 16 and rep["split"] == "val-night" and rep["histogram"]["car"] > 0
    res = runner.invoke(app, ["data", "check", "--dataset", "kitti"])
    assert res.exit_code == 2
