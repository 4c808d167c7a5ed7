"""`extract --recipe diffseg|paper`: every reference-code choice of stage one from one flag,
explicit options over the recipe, the dry run listing it all, the recipe in the record."""

import json

from typer.testing import CliRunner

from diffseg.cli import app
from diffseg.pipeline.prompts import class_prompt
from diffseg.stages.extract.config import ExtractConfig
from diffseg.stages.extract.plan import build_plan, extract_record
from diffseg.stages.extract.recipe import REFERENCE_DESCRIPTIONS

RUNNER = CliRunner()
GTA = "tests/fixtures/synthetic/gta"


def _plan(**kw):
    return build_plan(ExtractConfig(dataset="gtav", root=GTA, model="sd21-random", device="cpu", **kw))


def test_paper_sets_every_reference_choice():
    p = _plan(recipe="paper")
    t = p.trajectory
    assert (p.recipe, p.preset, len(t.steps), t.save_steps) == (
        "paper",
        "reference",
        34,
        (91, 52, 30, 22, 18, 14, 11, 7, 3),
    )
    assert (t.raw_eps, t.encode, t.blk_sum, p.views, p.photometric) == (True, "sample", True, 2, True)
    assert p.classes == (1, 3, 12, 14, 16)  # sidewalk, wall, rider, truck, train
    assert p.descriptions["truck"] == "larger vehicles used for cargo transport"
    assert p.descriptions_source == str(REFERENCE_DESCRIPTIONS)
    rec = extract_record(p, ["a"])
    assert rec.recipe == "paper" and rec.views_rule.photometric is not None
    assert rec.class_prompts["rider"] == class_prompt(12, p.descriptions)


def test_diffseg_recipe_is_the_default():
    p = _plan()
    t = p.trajectory
    assert (p.recipe, p.preset, t.raw_eps, t.encode, t.blk_sum, p.views, p.photometric) == (
        "diffseg",
        "lite",
        False,
        "mean",
        False,
        1,
        True,
    )
    assert len(p.classes) == 19 and p.descriptions is None


def test_options_given_override_the_recipe(tmp_path):
    descs = tmp_path / "d.json"
    descs.write_text(json.dumps({"road": "tarmac"}))
    p = _plan(recipe="paper", preset="lite", views=1, raw_eps=False, blk_sum=False, encode="mean",
              classes=["road"], descriptions=descs, photometric=False)  # fmt: skip
    t = p.trajectory
    assert (p.preset, p.views, t.raw_eps, t.blk_sum, t.encode, p.classes, p.photometric) == (
        "lite",
        1,
        False,
        False,
        "mean",
        (0,),
        False,
    )
    assert p.descriptions["road"] == "tarmac"
    ev = _plan(recipe="paper", split="val", resolution=(1280, 704))  # eval caches: one whole view, no jitter
    assert (ev.views, ev.photometric, ev.trajectory.raw_eps, ev.classes) == (
        1,
        False,
        True,
        (1, 3, 12, 14, 16),
    )


def test_reference_descriptions_ship_with_the_package():
    d = json.loads(REFERENCE_DESCRIPTIONS.read_text())
    assert sorted(d) == ["rider", "sidewalk", "train", "truck", "wall"]
    assert "diffseg/pipeline/data" in REFERENCE_DESCRIPTIONS.as_posix()


def test_paper_dry_run_on_the_gtav_fixture_lists_every_setting(tmp_path):
    res = RUNNER.invoke(app, ["extract", "--dataset", "gtav", "--root", GTA, "--model", "sd21-random", "--recipe",
                              "paper", "--dry-run", "--out", str(tmp_path / "c"), "--device", "cpu"])  # fmt: skip
    assert res.exit_code == 0, res.output
    out = res.output
    for line in (
        "recipe paper:",
        "preset reference: 34 evaluated steps, saved t = 91, 52, 30, 22, 18, 14, 11, 7, 3",
        "active classes (5): sidewalk, wall, rider, truck, train",
        "reference_descriptions.json",
        "epsilon: raw U-Net output (reference)",
        "latent: seeded VAE posterior sample (reference)",
        "cond blk: reference sum 2 b_uncond + sum_k b_k (uncond 2 b_uncond)",
        "views per training image: 2; photometric distortion: on",
        "resize: images cv2.INTER_LINEAR, labels cv2.INTER_NEAREST; seeding content-v1",
        "4 samples (train, 512x512, 9 saved steps, branches uncond,cond)",  # 2 images x 2 views
        "bytes per sample: 495714305 (472.75 MiB)",
        "dry run: nothing written",
    ):
        assert line in out, line
    assert not (tmp_path / "c").exists()
