"""Trajectory presets (docs/design/method.md §3), validation, CLI overrides and JSON round trip."""

import json

import pytest

from diffseg.core.errors import DiffsegError
from diffseg.pipeline.config import TrajectoryConfig, layers_at, parse_layer, preset, resolve

REF_LAYERS = tuple(f"up{i}.{k}{j}" for k in ("res", "blk") for i in (1, 2, 3) for j in (0, 1, 2))


def test_reference_preset():
    c = preset("reference")
    assert c.steps == tuple(range(24)) + (26, 30, 34, 40, 45, 52, 60, 69, 80, 91)
    assert len(c.steps) == 34
    assert c.save_steps == (91, 52, 30, 22, 18, 14, 11, 7, 3)
    assert c.layers == REF_LAYERS and len(c.layers) == 18
    assert c.last_index == 33
    assert (c.eta, c.eta_window, c.guidance, c.encode, c.raw_eps, c.blk_sum) == (
        1.0,
        (10, 250),
        5.0,
        "mean",
        False,
        False,
    )


def test_other_presets():
    assert (preset("5step").steps, preset("5step").save_steps) == ((0, 1, 20, 40, 60),) * 2
    assert preset("5step").layers == REF_LAYERS
    assert (preset("1step").steps, preset("1step").save_steps, preset("1step").layers) == ((0,), (0,), REF_LAYERS)
    lite = preset("lite")
    assert lite.steps == (0, 1, 20, 40, 60) and lite.save_steps == (60, 20, 1)
    assert lite.layers == ("up1.res2", "up2.res2", "up3.res2")
    assert lite.last_index == 4
    with pytest.raises(DiffsegError, match="'huge'"):
        preset("huge")


@pytest.mark.parametrize("name", ["reference", "5step", "1step", "lite"])
def test_json_round_trip(name):
    c = resolve(name, kinds=("res", "xattn"), eta=0.5, seed=7)
    back = TrajectoryConfig.from_dict(json.loads(json.dumps(c.to_dict())))
    assert back == c
    assert isinstance(back.steps, tuple) and isinstance(back.eta_window, tuple)


def test_resolve_kinds_at_preset_positions():
    c = resolve("lite", kinds=["res", "xattn"])
    assert c.layers == ("up1.res2", "up2.res2", "up3.res2", "up1.xattn2", "up2.xattn2", "up3.xattn2")
    assert c.kinds == ("res", "xattn")
    c = resolve("lite", steps=[0, 5, 10])  # preset saves are gone -> save all evaluated
    assert c.save_steps == (0, 5, 10)
    c = resolve("5step", save_steps=[40, 1])
    assert c.steps == (0, 1, 20, 40, 60) and c.save_steps == (40, 1) and c.last_index == 3
    c = resolve("1step", layers=["up3.res0", "up2.blk1"], kinds=["blk"])
    assert c.layers == ("up3.blk0", "up2.blk1")


@pytest.mark.parametrize(
    "kw, bad",
    [
        (dict(steps=(0, 5, 5)), "5"),
        (dict(steps=(0, 9, 5)), "5"),
        (dict(save_steps=(0, 7)), "7"),
        (dict(save_steps=(0, 0)), "duplicates"),
        (dict(layers=("up1.attn0",)), "up1.attn0"),
        (dict(layers=("up5.res0",)), "up5.res0"),
        (dict(layers=("up0.blk0",)), "up0.blk0"),
        (dict(eta_window=(250, 10)), "250"),
        (dict(encode="median"), "median"),
        (dict(steps=(-1, 0)), "-1"),
    ],
)
def test_validation_names_bad_value(kw, bad):
    base = dict(steps=(0, 1, 2), save_steps=(2, 0), layers=("up1.res0",))
    with pytest.raises(DiffsegError, match=bad):
        TrajectoryConfig(**{**base, **kw})


def test_layer_names():
    assert parse_layer("up2.xattn1") == (2, "xattn", 1)
    assert layers_at([(1, 0), (3, 2)], ["blk"]) == ("up1.blk0", "up3.blk2")
    with pytest.raises(DiffsegError, match="conv"):
        layers_at([(1, 0)], ["conv"])
    with pytest.raises(DiffsegError, match="bogus"):
        TrajectoryConfig.from_dict({**preset("lite").to_dict(), "bogus": 1})
