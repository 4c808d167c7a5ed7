"""`train --seeds`: one normal run per seed, a mean +- std summary, and every per-seed run usable alone."""

import json

import pytest
from helpers import FAST_TRAIN, SMALL
from typer.testing import CliRunner

from diffseg.cache.synthetic import make_cache
from diffseg.cli import app
from diffseg.core.errors import DiffsegError
from diffseg.stages.runs.seeds import mean_std, parse_seeds
from diffseg.stages.train import job as train

RUNNER = CliRunner()


def _caches(tmp_path):
    cache = make_cache(tmp_path / "gtav", n=3, signal=2.0, **SMALL)
    evals = [
        make_cache(tmp_path / name, n=2, kind="eval", split="val", dataset=name, branches=("uncond",), seed=k, **SMALL)
        for k, name in enumerate(("cityscapes", "bdd100k"), start=1)
    ]
    return cache, evals


def test_mean_std_and_parse():
    assert mean_std([0.5, 0.7, 0.6]) == pytest.approx((0.6, 0.1))  # sample std: sqrt(0.02 / 2)
    assert mean_std([0.4]) == (0.4, 0.0) and mean_std([0.4, None]) == (None, None)
    assert parse_seeds("0,1, 2") == (0, 1, 2)
    for bad in ("0,0", "a", "-1", ""):
        with pytest.raises(DiffsegError, match="--seeds"):
            parse_seeds(bad)


def test_seeds_write_one_run_each_and_a_summary(tmp_path):
    cache, evals = _caches(tmp_path)
    args = ["train", "--cache", str(cache), "--out", str(tmp_path / "runs"), "--seeds", "0,1,2"]
    args += ["--iters", "2", "--warmup", "0", "--fusion", "light", "--read-threads", "0", "--device", "cpu"]
    for ev in evals:
        args += ["--eval-cache", str(ev)]
    result = RUNNER.invoke(app, args)
    assert result.exit_code == 0, result.output
    parent = tmp_path / "runs"
    summary = json.loads((parent / "seeds.json").read_text())
    assert summary["seeds"] == [0, 1, 2] and set(summary["targets"]) == {"cityscapes", "bdd100k"}
    for name, row in summary["targets"].items():
        per_seed = []
        for s in (0, 1, 2):
            report = json.loads((parent / f"seed-{s}" / "eval.json").read_text())
            (target,) = [t for t in report["targets"] if t["dataset"] == name]
            assert row["miou"][str(s)] == target["miou"]
            per_seed.append(target["miou"])
        assert (row["mean"], row["std"]) == pytest.approx(mean_std(per_seed))
    assert json.loads((parent / "seed-2" / "config.json").read_text())["config"]["seed"] == 2
    table = (parent / "seeds.md").read_text()
    assert "| cityscapes |" in table and "+-" in table and "mean over targets" in table
    # eval and --resume take any per-seed run; the parent is pointed at one
    ok = RUNNER.invoke(app, ["eval", "--run", str(parent / "seed-1"), "--cache", str(evals[0]), "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["miou"] == summary["targets"]["cityscapes"]["miou"]["1"]
    parent_eval = RUNNER.invoke(app, ["eval", "--run", str(parent), "--cache", str(evals[0])])
    assert parent_eval.exit_code == 1 and "seed-0" in parent_eval.output
    more = ["--out", str(parent / "seed-1"), "--resume", "--iters", "3", "--read-threads", "0", "--device", "cpu"]
    resumed = RUNNER.invoke(app, ["train", "--cache", str(cache), *more])
    assert resumed.exit_code == 1 and "--iters 2" in resumed.output  # a normal run: its record is checked
    assert RUNNER.invoke(app, ["train", "--cache", str(cache), *more[:3], *more[5:]]).exit_code == 0


def test_seeds_resume_finishes_the_interrupted_and_refuses_seed_too(tmp_path):
    cache, evals = _caches(tmp_path)
    kw = {**FAST_TRAIN, "iters": 2, "ckpt_every": 1, "eval_caches": evals[:1]}
    parent = train.main_seeds(cache=cache, seeds=(0, 1), out=tmp_path / "s", stop_at=1, **kw)
    assert not (parent / "seeds.json").exists()  # interrupted: no summary of unfinished runs
    train.main_seeds(cache=cache, seeds=(0, 1), out=parent, resume=True, **kw)
    assert json.loads((parent / "seeds.json").read_text())["targets"]["cityscapes"]["std"] is not None
    with pytest.raises(DiffsegError, match="--seed and --seeds"):
        train.main_seeds(cache=cache, seeds=(0, 1), out=tmp_path / "t", seed=3, **kw)
    with pytest.raises(DiffsegError, match="already exists"):
        train.main_seeds(cache=cache, seeds=(0, 1), out=parent, **kw)
