"""Class prompts (docs/design/method.md §4), description files, and the stable seed derivation."""

import json

import pytest

from diffseg.core.errors import DiffsegError
from diffseg.core.seeds import derive_seed
from diffseg.pipeline import prompts
from diffseg.pipeline.seeding import randn


def test_prompts_text():
    assert len(prompts.DEFAULT_DESCRIPTIONS) == 19
    assert tuple(prompts.DEFAULT_DESCRIPTIONS) == prompts.CLASS_NAMES
    assert prompts.class_prompt(1) == (
        "A high quality photo; europe city; sidewalk, paths for pedestrian use beside the road"
    )
    assert prompts.class_list_prompt((0, 1, 2)) == "A high quality photo; europe city; road, sidewalk, building"
    assert prompts.uncond_prompt("empty", (0, 1)) == ""
    with pytest.raises(DiffsegError, match="'none'"):
        prompts.uncond_prompt("none", (0,))


def test_description_file(tmp_path):
    p = tmp_path / "d.json"
    p.write_text(json.dumps({"road": "asphalt"}))
    d = prompts.load_descriptions(p)
    assert d["road"] == "asphalt" and d["sky"] == "the open sky"
    assert prompts.class_prompt(0, d) == "A high quality photo; europe city; road, asphalt"
    p.write_text(json.dumps({"roads": "x"}))
    with pytest.raises(DiffsegError, match="'roads'"):
        prompts.load_descriptions(p)
    p.write_text("{not json")
    with pytest.raises(DiffsegError, match="d.json"):
        prompts.load_descriptions(p)


def test_seed_derivation_is_stable():
    # a literal: the seed must not change between processes, machines or versions
    assert derive_seed(0, "a", "uncond", 3) == 9239445614619648038
    assert derive_seed(0, "a", "uncond", 3) != derive_seed(0, "b", "uncond", 3)
    assert derive_seed(0, "a", "uncond", 3) != derive_seed(0, "a", "cond", 3)
    assert randn((3,), 0, "a").equal(randn((3,), 0, "a"))
