"""TrainConfig is the one place the training options' defaults live: the command line and the jobs
pass only what was given, and --resume replaces only what was given."""

import inspect
import json
from dataclasses import fields
from unittest import mock

import pytest
import typer
from helpers import FAST_TRAIN, SMALL
from typer.testing import CliRunner

from diffseg.cache.synthetic import make_cache
from diffseg.cli import app
from diffseg.core.errors import DiffsegError
from diffseg.stages.ablate import job as ablate
from diffseg.stages.ablate.cells import Cell
from diffseg.stages.train import job as train
from diffseg.stages.train.config import ABLATION_CELL, TrainConfig, default, recipe_defaults

FIELDS = {f.name for f in fields(TrainConfig)} | set(train.SELECTION)
CLI_NAME = {"eval_cache": "eval_caches", "read_threads": "workers"}  # typer parameter -> TrainConfig field


@pytest.mark.parametrize("command", ["train", "ablate"])
def test_cli_training_options_default_to_not_given(command):
    click_cmd = typer.main.get_command(app).commands[command]
    options = {CLI_NAME.get(p.name, p.name): p for p in click_cmd.params}
    training = {name: p for name, p in options.items() if name in FIELDS and name != "cache"}
    assert {"iters", "lr", "warmup", "workers", "device", "seed", "batch_size", "fusion"} <= set(training)
    literal = {name: p.default for name, p in training.items() if p.default is not None and not p.required}
    assert literal == {}, f"`diffseg {command}` writes its own defaults for {sorted(literal)}: use TrainConfig's"


@pytest.mark.parametrize("job", [train.main, ablate.main])
def test_jobs_write_no_training_default(job):
    literal = {
        name: p.default
        for name, p in inspect.signature(job).parameters.items()
        if name in FIELDS and p.default not in (inspect.Parameter.empty, None)
    }
    assert literal == {}


def test_cli_passes_only_the_given_options(tmp_path):
    with mock.patch.object(train, "main") as main:
        result = CliRunner().invoke(app, ["train", "--cache", str(tmp_path), "--resume", "--lr", "0.001"])
        assert result.exit_code == 0, result.output
        assert main.call_args.kwargs == {"cache": str(tmp_path), "out": None, "resume": True, "lr": 0.001}
    with mock.patch.object(ablate, "main") as main:
        args = ["ablate", "--cache", str(tmp_path), "--eval-cache", str(tmp_path), "--out", str(tmp_path / "a")]
        assert CliRunner().invoke(app, [*args, "--no-features", "--read-threads", "2"]).exit_code == 0
        assert main.call_args.kwargs == {
            "cache": str(tmp_path),
            "eval_caches": [str(tmp_path)],
            "out": tmp_path / "a",
            "features": False,
            "workers": 2,
        }


@pytest.mark.parametrize("command", ["train", "ablate"])
def test_workers_is_the_old_name_of_read_threads(tmp_path, command):
    """`--workers` (dask processes in `extract`) is now `--read-threads` here; the old name still
    works for one release, with one warning line that names the new one."""
    stage = train if command == "train" else ablate
    args = [command, "--cache", str(tmp_path)]
    if command == "ablate":
        args += ["--eval-cache", str(tmp_path), "--out", str(tmp_path / "a")]
    with mock.patch.object(stage, "main") as main:
        result = CliRunner().invoke(app, [*args, "--workers", "3"])
        assert result.exit_code == 0, result.output
        assert main.call_args.kwargs["workers"] == 3
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "--read-threads" in warnings[0], result.output
    both = CliRunner().invoke(app, [*args, "--workers", "3", "--read-threads", "2"])
    assert both.exit_code == 2 and "not both" in both.output
    assert "--workers" not in CliRunner().invoke(app, [command, "--help"]).output


def test_defaults_in_force_are_trainconfigs(tmp_path):
    cache = make_cache(tmp_path / "gtav", n=2, **SMALL)
    cfg, _ = train.resolve_config(cache=cache)
    for name in ("iters", "lr", "warmup", "workers", "batch_size", "fusion", "seed", "eval_every", "device"):
        assert getattr(cfg, name) == default(name)
    assert default("device") == "auto" and default("workers") == 2  # the CLI's values of today
    # an ablation cell: ABLATION_CELL over TrainConfig, the given options over both
    cell = Cell(name="x", group="table4", description="", layers=cfg.layers, save_steps=cfg.save_steps)
    opts = ablate.cell_options(cell, cache=cache, eval_caches=[], options={"lr": 1e-3})
    cell_cfg, _ = train.resolve_config(**opts)
    assert (cell_cfg.iters, cell_cfg.warmup, cell_cfg.workers) == (4000, 150, 0) == tuple(ABLATION_CELL.values())
    assert (cell_cfg.lr, cell_cfg.batch_size, cell_cfg.seed) == (1e-3, default("batch_size"), default("seed"))
    assert (cell_cfg.eval_every, cell_cfg.ckpt_every) == (0, default("ckpt_every"))


def test_warmup_not_given_is_capped_at_a_tenth_of_the_run(tmp_path):
    cache = make_cache(tmp_path / "gtav", n=2, **SMALL)
    assert train.resolve_config(cache=cache, iters=200)[0].warmup == 20
    assert train.resolve_config(cache=cache, iters=40000)[0].warmup == default("warmup") == 1500
    assert train.resolve_config(cache=cache, iters=200, warmup=150)[0].warmup == 150  # given: as given


def test_resume_keeps_the_recorded_value_of_what_is_not_given(tmp_path):
    cache = make_cache(tmp_path / "gtav", n=3, **SMALL)
    run = train.main(cache=cache, out=tmp_path / "run", stop_at=1, **{**FAST_TRAIN, "iters": 3, "ckpt_every": 1})
    base = ["train", "--cache", str(cache), "--out", str(run), "--resume", "--read-threads", "0", "--device", "cpu"]
    # a given option equal to TrainConfig's default is still given: 40000 is not the recorded 3
    refused = CliRunner().invoke(app, [*base, "--iters", str(default("iters"))])
    assert refused.exit_code == 1 and "--iters 3" in refused.output and "Traceback" not in refused.output
    refused = CliRunner().invoke(app, [*base, "--lr", "0.0005"])
    assert refused.exit_code == 1 and "--lr 0.001" in refused.output
    done = CliRunner().invoke(app, base)  # nothing result-deciding given: the record's 3 iterations
    assert done.exit_code == 0, done.output
    record = json.loads((run / "config.json").read_text())["config"]
    assert record["iters"] == 3 and record["lr"] == 1e-3 and record["fusion"] == "light"
    assert (run / "weights.safetensors").is_file()
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert max(line["iter"] for line in lines if "iter" in line) == 3


def test_paper_recipe_sets_the_reference_choices_and_given_options_win(tmp_path):
    cache = make_cache(tmp_path / "gtav", n=2, **SMALL)
    cfg, _ = train.resolve_config(cache=cache, recipe="paper")
    reference = dict(
        recipe="paper",
        consistency="l2",
        w_cond=1.0,
        w_uncond=1.0,
        w_cons=1.0,
        rcs_temperature=0.01,
        flip_features=0.0,
        iters=40000,
        lr=6e-5,
        batch_size=1,
        warmup=1500,
        fusion="reference",
    )
    assert {k: getattr(cfg, k) for k in reference} == reference
    assert recipe_defaults("paper")["iters"] == 40000 and recipe_defaults("diffseg") == {
        k: default(k) for k in recipe_defaults("diffseg")
    }
    given_cfg, _ = train.resolve_config(cache=cache, recipe="paper", consistency="kl", iters=300, lr=1e-4)
    assert (given_cfg.consistency, given_cfg.iters, given_cfg.lr) == ("kl", 300, 1e-4)
    assert given_cfg.warmup == 30 and given_cfg.rcs_temperature == 0.01  # the recipe's warm-up, capped
    assert train.resolve_config(cache=cache)[0].recipe == "diffseg"
    with pytest.raises(DiffsegError, match="unknown recipe 'nope'"):
        train.resolve_config(cache=cache, recipe="nope")


def test_recipe_is_recorded_and_checked_on_resume(tmp_path):
    cache = make_cache(tmp_path / "gtav", n=3, **SMALL)
    kw = {**FAST_TRAIN, "iters": 2, "ckpt_every": 1}
    run = train.main(cache=cache, out=tmp_path / "run", recipe="paper", stop_at=1, **kw)
    assert json.loads((run / "config.json").read_text())["config"]["recipe"] == "paper"
    base = ["train", "--cache", str(cache), "--out", str(run), "--resume", "--read-threads", "0", "--device", "cpu"]
    result = CliRunner().invoke(app, [*base, "--recipe", "diffseg"])
    assert result.exit_code == 1 and "--recipe paper" in result.output, result.output
    assert CliRunner().invoke(app, base).exit_code == 0
