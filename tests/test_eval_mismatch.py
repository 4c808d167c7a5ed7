"""Evaluation caches must repeat the training cache's uncond trajectory (selection.match_extract):
evaluated steps, eta/eta_window, encode, raw_eps, the uncond prompt, and the classes when an xattn
layer is read. `diffseg eval` refuses another one (exit 1, one line naming the key and both values)
and scores a matching one, even where resolution/views/limit/dataset differ."""

import json

import pytest
from cachegen import FAST_TRAIN, SMALL, make_cache
from typer.testing import CliRunner

from diffseg.cli import app
from diffseg.core.errors import CacheMismatch
from diffseg.stages.train import job as train
from diffseg.stages.train.selection import match_extract

TRAJ = {
    "steps": [0, 1, 20, 40, 60],
    "save_steps": [60, 20, 1],
    "layers": ["up1.res2"],
    "eta": 1.0,
    "eta_window": [10, 250],
    "encode": "mean",
    "raw_eps": False,
    "guidance": 5.0,
    "blk_sum": False,
    "seed": 0,
}
EXTRACT = {
    "preset": "lite",
    "trajectory": TRAJ,
    "uncond_prompt": "empty",
    "uncond_prompt_text": "",
    "classes": list(range(19)),
    "resolution": [32, 32],
    "views": 2,
    "branches": ["uncond", "cond"],
    "limit": None,
}
EVAL = dict(kind="eval", split="val", branches=("uncond",), dataset="cityscapes", n=2, **SMALL)


def set_extract(path, extract: dict):
    """Replace a synthetic cache's attrs["extract"] (tests only: the package keeps zarr in diffseg.cache)."""
    import zarr

    zarr.open_group(str(path), mode="r+").attrs["extract"] = extract
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mismatch")
    cache = set_extract(make_cache(tmp / "gtav", n=2, **SMALL), EXTRACT)
    return tmp, train.main(cache=cache, out=tmp / "run", **{**FAST_TRAIN, "iters": 1})


def _eval(run_dir, cache):
    return CliRunner().invoke(app, ["eval", "--run", str(run_dir), "--cache", str(cache), "--json", "--device", "cpu"])


def test_run_records_the_training_extract_config(run):
    tmp, run_dir = run
    assert json.loads((run_dir / "caches.json").read_text())["train"]["extract"] == EXTRACT


def test_matching_cache_is_scored(run):
    tmp, run_dir = run
    same = {
        **EXTRACT,
        "resolution": [64, 32],
        "views": 1,
        "branches": ["uncond"],
        "limit": 2,
        "trajectory": {**TRAJ, "guidance": 7.5, "blk_sum": True},
    }  # none of these change uncond features
    cs = set_extract(make_cache(tmp / "cs-same", **EVAL), same)
    result = _eval(run_dir, cs)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["samples"] == 2


@pytest.mark.parametrize(
    "name, extract, key, got, want",
    [
        ("prompt", {**EXTRACT, "uncond_prompt": "classes"}, "extract.uncond_prompt", '"classes"', '"empty"'),
        (
            "steps",
            {**EXTRACT, "trajectory": {**TRAJ, "steps": [0, 1, 20, 60]}},
            "extract.trajectory.steps",
            "[0, 1, 20, 60]",
            "[0, 1, 20, 40, 60]",
        ),
        ("eta", {**EXTRACT, "trajectory": {**TRAJ, "eta": 0.0}}, "extract.trajectory.eta", "0.0", "1.0"),
        ("raw", {**EXTRACT, "trajectory": {**TRAJ, "raw_eps": True}}, "extract.trajectory.raw_eps", "true", "false"),
    ],
)
def test_other_trajectory_is_refused(run, name, extract, key, got, want):
    tmp, run_dir = run
    cs = set_extract(make_cache(tmp / f"cs-{name}", **EVAL), extract)
    result = _eval(run_dir, cs)
    assert result.exit_code == 1, result.output
    line = " ".join(result.output.split())
    assert f"{cs} was extracted with {key}={got}; the training cache {tmp / 'gtav'} with {want}" in line
    assert not (run_dir / "eval" / f"cs-{name}.json").exists()


def test_classes_matter_only_with_xattn():
    other = {**EXTRACT, "classes": [0, 1, 2]}
    match_extract("cs", other, train_cache="gtav", train_extract=EXTRACT, layers=["up1.res2"])
    with pytest.raises(
        CacheMismatch,
        match=r"cs was extracted with extract.classes=\[0, 1, 2\]; the training "
        r"cache gtav with \[0, 1, 2, 3,",
    ):
        match_extract("cs", other, train_cache="gtav", train_extract=EXTRACT, layers=["up1.res2", "up2.xattn0"])


def test_a_field_only_one_cache_records_is_a_mismatch():
    with pytest.raises(CacheMismatch, match=r"extract.trajectory.encode=\(not recorded\); .* with \"mean\""):
        match_extract(
            "cs",
            {**EXTRACT, "trajectory": {k: v for k, v in TRAJ.items() if k != "encode"}},
            train_cache="gtav",
            train_extract=EXTRACT,
            layers=["up1.res2"],
        )
    match_extract("cs", {"preset": "synthetic"}, train_cache="gtav", train_extract={"seed": 0}, layers=["up1.res2"])
