"""Evaluation caches must repeat the training cache's uncond trajectory (selection.match_extract):
evaluated steps, eta/eta_window, encode, raw_eps, the uncond prompt, and the classes when an xattn
layer is read. `diffseg eval` refuses another one (exit 1, one line naming the key and both values)
and scores a matching one, even where resolution/views/limit/dataset differ."""

import json
from dataclasses import replace

import pytest
from helpers import FAST_TRAIN, SMALL
from typer.testing import CliRunner

from diffseg.cache import CacheWriter, ExtractRecord, ViewsRule
from diffseg.cache.synthetic import make_cache
from diffseg.cli import app
from diffseg.core.errors import CacheMismatch, DiffsegError
from diffseg.stages.train import job as train
from diffseg.stages.train.selection import match_extract

TRAJ = {
    "steps": [0, 1, 20, 40, 60],
    "save_steps": [60, 20, 1],
    "layers": list(SMALL["layers"]),
    "eta": 1.0,
    "eta_window": [10, 250],
    "encode": "mean",
    "raw_eps": False,
    "guidance": 5.0,
    "blk_sum": False,
    "seed": 0,
}
BASE = ExtractRecord(
    preset="lite",
    trajectory=TRAJ,
    views=2,
    views_rule=ViewsRule(mode="crop", scale=(32, 32), cat_max_ratio=0.75, redraws=10, flip=True),
    uncond_prompt="empty",
    uncond_prompt_text="",
    prompt_template="{name}, {description}",
    classes=tuple(range(19)),
    class_prompts={},
    compute_dtype="float32",
    limit=None,
    images=2,
    ids_sha256="",
)
EXTRACT = BASE.to_dict()
EVAL = dict(kind="eval", split="val", branches=("uncond",), dataset="cityscapes", n=2, **SMALL)


def set_extract(path, extract: ExtractRecord):
    """Replace a synthetic cache's extract config (the writer's record update, as extraction does)."""
    CacheWriter.open(path).update_record(extract=extract)
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mismatch")
    cache = set_extract(make_cache(tmp / "gtav", n=2, **SMALL), BASE)
    return tmp, train.main(cache=cache, out=tmp / "run", **{**FAST_TRAIN, "iters": 1})


def _eval(run_dir, cache):
    return CliRunner().invoke(app, ["eval", "--run", str(run_dir), "--cache", str(cache), "--json", "--device", "cpu"])


def test_run_records_the_training_extract_config(run):
    tmp, run_dir = run
    assert json.loads((run_dir / "caches.json").read_text())["train"]["extract"] == EXTRACT


def test_matching_cache_is_scored(run):
    tmp, run_dir = run
    same = replace(
        BASE,
        views=1,
        limit=2,
        views_rule=ViewsRule(mode="resize"),
        trajectory={**TRAJ, "guidance": 7.5, "blk_sum": True},
    )  # none of these change uncond features
    cs = set_extract(make_cache(tmp / "cs-same", **EVAL), same)
    result = _eval(run_dir, cs)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["samples"] == 2


@pytest.mark.parametrize(
    "name, extract, key, got, want",
    [
        ("prompt", replace(BASE, uncond_prompt="classes"), "extract.uncond_prompt", '"classes"', '"empty"'),
        (
            "steps",
            replace(BASE, trajectory={**TRAJ, "steps": [0, 1, 20, 60]}),
            "extract.trajectory.steps",
            "[0, 1, 20, 60]",
            "[0, 1, 20, 40, 60]",
        ),
        ("eta", replace(BASE, trajectory={**TRAJ, "eta": 0.0}), "extract.trajectory.eta", "0.0", "1.0"),
        ("raw", replace(BASE, trajectory={**TRAJ, "raw_eps": True}), "extract.trajectory.raw_eps", "true", "false"),
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


def test_a_field_a_run_does_not_record_is_one_line():
    """Every cache record holds every field; an extract dict without one (a hand-edited run) is refused."""
    with pytest.raises(DiffsegError, match=r"^cs records no extract.trajectory.encode: "):
        match_extract(
            "cs",
            {**EXTRACT, "trajectory": {k: v for k, v in TRAJ.items() if k != "encode"}},
            train_cache="gtav",
            train_extract=EXTRACT,
            layers=["up1.res2"],
        )
