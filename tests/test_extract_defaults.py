"""ExtractConfig is the one place the extraction options' defaults live: the command line passes only
what was given, build_plan and the job write no default of their own, and a config round-trips
through to_dict/from_dict (JSON or TOML files)."""

import dataclasses
import inspect
import json
from pathlib import Path
from unittest import mock

import pytest
import typer
from typer.testing import CliRunner

from diffseg.cli import app
from diffseg.core.errors import DiffsegError
from diffseg.stages.extract import config, job
from diffseg.stages.extract.config import DEFAULT_MODEL, ExtractConfig, default, option_names
from diffseg.stages.extract.plan import ExtractPlan, build_plan, default_batch_size
from diffseg.stages.extract.recipe import RECIPE_OPTIONS

ROOT = Path(__file__).resolve().parents[1]
OLD_NAMES = {"old_workers": "dask_workers", "old_batch_size": "unet_batch"}  # hidden, warned about
NOT_CONFIG = {"dry_run"}  # what the command does with a config, not part of it
CONFIG_FILE = {"config"}  # the file the command reads a config from


def extract_params() -> dict:
    return {p.name: p for p in typer.main.get_command(app).commands["extract"].params}


def test_every_extract_option_is_a_config_field_and_back():
    params = set(extract_params()) - NOT_CONFIG - CONFIG_FILE - set(OLD_NAMES)
    assert params == set(option_names())


def test_cli_extract_options_default_to_not_given():
    literal = {
        name: p.default
        for name, p in extract_params().items()
        if not p.required and p.default is not None and not (p.is_flag and p.default is False)
    }
    assert literal == {}, f"`diffseg extract` writes its own defaults for {sorted(literal)}: use ExtractConfig's"
    hidden = {name for name, p in extract_params().items() if p.hidden}
    assert hidden == set(OLD_NAMES)


def test_build_plan_and_the_job_write_no_extraction_default():
    plan_params = inspect.signature(build_plan).parameters
    assert list(plan_params) == ["config"] and plan_params["config"].default is inspect.Parameter.empty
    job_params = inspect.signature(job.main).parameters
    assert {n for n, p in job_params.items() if p.default is not inspect.Parameter.empty} == NOT_CONFIG
    # the resolved plan has no defaults of options either (`overlap` is the benchmarks' switch)
    with_default = {f.name for f in dataclasses.fields(ExtractPlan) if f.default is not dataclasses.MISSING}
    assert with_default == {"overlap"}


def test_what_a_recipe_decides_defaults_to_the_recipe():
    assert set(RECIPE_OPTIONS) <= set(option_names())
    assert {name: default(name) for name in RECIPE_OPTIONS} == dict.fromkeys(RECIPE_OPTIONS)
    paper = build_plan(ExtractConfig(dataset="gtav", recipe="paper", device="cpu"))
    assert (paper.preset, paper.views, paper.trajectory.encode) == ("reference", 2, "sample")


def test_the_default_model_is_spelled_once():
    literal = f'"{DEFAULT_MODEL}"'  # as a string in code (comments may name the model's files)
    spelled = [p for p in (ROOT / "diffseg").rglob("*.py") if literal in p.read_text()]
    assert spelled == [ROOT / "diffseg" / "stages" / "extract" / "config.py"]


def test_cli_passes_only_the_given_options():
    with (
        mock.patch.object(config, "ExtractConfig", wraps=ExtractConfig) as made,
        mock.patch.object(job, "main") as main,
    ):
        result = CliRunner().invoke(app, ["extract", "--dataset", "demo", "--limit", "2", "--seed", "0"])
        assert result.exit_code == 0, result.output
    # --seed 0 equals the default but was given; nothing else reaches the config
    assert made.call_args.kwargs == {"dataset": "demo", "limit": 2, "seed": 0}
    assert main.call_args.args == (ExtractConfig(dataset="demo", limit=2),)
    assert main.call_args.kwargs == {"dry_run": False}


@pytest.mark.parametrize(
    "old,new,field", [("--workers", "--dask-workers", "dask_workers"), ("--batch-size", "--unet-batch", "unet_batch")]
)
def test_old_option_names_still_work_with_a_warning(old, new, field):
    with mock.patch.object(job, "main") as main:
        result = CliRunner().invoke(app, ["extract", "--dataset", "demo", old, "2"])
        assert result.exit_code == 0, result.output
    assert getattr(main.call_args.args[0], field) == 2
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and new in warnings[0] and old in warnings[0], result.output
    both = CliRunner().invoke(app, ["extract", "--dataset", "demo", old, "2", new, "2"])
    assert both.exit_code == 2 and "not both" in both.output


def test_round_trip_through_json():
    every = ExtractConfig(
        dataset="gtav",
        root=Path("data/gta"),  # paths are kept as strings
        split="val",
        split_file="ids.txt",
        mapillary_map="B",
        conditions=["night"],  # lists become tuples
        limit=3,
        out="s3://bucket/c",
        model="tiny",
        recipe="paper",
        preset="5step",
        steps=(0, 1),
        save_steps=(1,),
        layers=("up1.res2",),
        kinds=("res",),
        resolution=(64, 64),
        scale=(128, 64),
        views=2,
        photometric=False,
        branches=("uncond",),
        uncond_prompt="classes",
        encode="sample",
        raw_eps=True,
        blk_sum=True,
        classes=("road",),
        descriptions="d.json",
        seed=4,
        codec="int8",
        unet_batch=2,
        joint_branches=True,
        block_minutes=5.0,
        sample_seconds=1.5,
        device="cpu",
        scheduler="tcp://h:8786",
        shard=(1, 4),
        strict=True,
    )
    unset = {f.name for f in dataclasses.fields(ExtractConfig)} - set(every.to_dict())
    assert not unset
    defaults = {f.name: f.default for f in dataclasses.fields(ExtractConfig)}
    assert {k for k, v in every.to_dict().items() if v == defaults[k]} <= {"dask_workers"}, "set every option"
    assert every.root == "data/gta" and every.conditions == ("night",)
    again = ExtractConfig.from_dict(json.loads(json.dumps(every.to_dict())))
    assert again == every
    assert ExtractConfig.from_dict(ExtractConfig(dataset="demo").to_dict()) == ExtractConfig(dataset="demo")
    with pytest.raises(DiffsegError, match="unknown ExtractConfig fields"):
        ExtractConfig.from_dict({"dataset": "demo", "workers": 2})


@pytest.mark.parametrize(
    "kw,option",
    [
        (dict(recipe="nope"), "--recipe"),
        (dict(preset="huge"), "--preset"),
        (dict(encode="median"), "--encode"),
        (dict(mapillary_map="C"), "--mapillary-map"),
        (dict(unet_batch=0), "--unet-batch"),
        (dict(views=0), "--views"),
        (dict(resolution=(64, 0)), "--resolution"),
        (dict(shard=(4, 4)), "--shard"),
        (dict(dask_workers=2, scheduler="tcp://h:8786"), "--dask-workers or --scheduler"),
    ],
)
def test_bad_values_name_the_option(kw, option):
    with pytest.raises(DiffsegError, match=option):
        ExtractConfig(dataset="demo", **kw)


def test_the_defaults_in_force_are_the_configs():
    plan = build_plan(ExtractConfig(dataset="gtav", device="cpu"))
    defaults = ExtractConfig(dataset="gtav")
    assert (plan.model, plan.recipe, plan.codec) == (defaults.model, defaults.recipe, defaults.codec)
    assert defaults.unet_batch is None and plan.batch_size == default_batch_size("cpu", plan.kind) == 1
    assert (plan.joint_branches, plan.block_minutes, plan.sample_seconds) == (
        defaults.joint_branches,
        defaults.block_minutes,
        defaults.sample_seconds,
    )
    assert (plan.split, plan.uncond_prompt, plan.trajectory.seed, plan.strict) == (
        defaults.split,
        defaults.uncond_prompt,
        defaults.seed,
        defaults.strict,
    )
    assert (plan.workers, plan.scheduler, plan.shard) == (None, None, None)
