"""The command line's choices are the library's value lists: derived where the list lives in a light
module, restated (and kept equal here) where importing it would slow `diffseg --help` down."""

import typer.main

from diffseg.cli import app, options
from diffseg.data import DATASET_NAMES
from diffseg.nn.config import FUSION_PRESETS
from diffseg.nn.losses import CONSISTENCY
from diffseg.pipeline.config import ENCODE_MODES, PRESETS
from diffseg.pipeline.prompts import UNCOND_PROMPTS
from diffseg.stages.demo.config import SIZES
from diffseg.stages.device import DEVICES
from diffseg.stages.extract.recipe import RECIPES
from diffseg.stages.train.config import RECIPES as TRAIN_RECIPES


def test_restated_lists_equal_the_librarys():
    assert options.DATASETS == DATASET_NAMES
    assert options.UNCOND_PROMPTS == UNCOND_PROMPTS
    assert options.CONSISTENCY == CONSISTENCY
    assert options.FUSIONS == FUSION_PRESETS
    assert options.DEVICES == DEVICES


def choices(command: str, option: str, group: str | None = None) -> list[str]:
    cmd = typer.main.get_command(app)
    if group is not None:
        cmd = cmd.commands[group]
    (param,) = [p for p in cmd.commands[command].params if p.name == option]
    return [member.value for member in param.type_descriptor.annotation]  # the option's enum


def test_every_choice_is_the_librarys_list():
    assert choices("extract", "dataset") == choices("check", "dataset", "data") == list(DATASET_NAMES)
    assert choices("extract", "preset") == list(PRESETS)
    assert choices("extract", "recipe") == list(RECIPES)
    assert choices("extract", "encode") == list(ENCODE_MODES)
    assert choices("extract", "uncond_prompt") == list(UNCOND_PROMPTS)
    assert choices("train", "recipe") == list(TRAIN_RECIPES)
    assert choices("train", "consistency") == list(CONSISTENCY)
    assert choices("train", "fusion") == choices("ablate", "fusion") == list(FUSION_PRESETS)
    assert choices("demo", "size") == list(SIZES)
    for command in ("extract", "train", "eval", "ablate", "predict", "demo"):
        assert choices(command, "device") == list(DEVICES), command
