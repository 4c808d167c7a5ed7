"""The demo report's pieces: the within-noise rule over seeds, the cross-attention
inside/outside ratio, the model pictures, and `ablate`'s cell subset the recipe cells use."""

import numpy as np
import pytest

from diffseg.cache.synthetic import make_cache
from diffseg.core.errors import DiffsegError
from diffseg.stages.demo.report import _diff_text, compare, comparisons, main_compare, stats
from diffseg.stages.runs.attention import chance_ratios, class_ratios, xattn_ratio


def test_within_noise_rule_uses_the_larger_spread():
    a = stats([0.30, 0.32, 0.34])  # mean 0.32, std 0.02
    b = stats([0.31, 0.31, 0.31])  # mean 0.31, std 0
    c = stats([0.20, 0.21, 0.22])  # mean 0.21, std 0.01
    assert a["mean"] == pytest.approx(0.32) and a["std"] == pytest.approx(0.02)
    near = compare(a, b)
    assert near["diff"] == pytest.approx(0.01) and near["within_noise"] is True  # 0.01 < max(0.02, 0)
    far = compare(a, c)
    assert far["diff"] == pytest.approx(0.11) and far["within_noise"] is False
    assert compare(b, a)["within_noise"] is True  # the larger spread counts whichever cell has it
    assert compare(stats([None, 0.1, 0.2]), b) == {"diff": None, "within_noise": None}
    # as the report prints them: a difference within noise plainly, a larger one in bold
    assert _diff_text(near) == "within noise (+1.0)" and _diff_text(far) == "**+11.0**"
    assert _diff_text(compare(stats([None, 0.1, 0.2]), b)) == "n/a"


def test_one_seed_main_runs_are_judged_against_the_given_spread():
    assert main_compare(0.30, 0.20, 0.05)["within_noise"] is False
    assert main_compare(0.30, 0.28, 0.05)["within_noise"] is True
    assert main_compare(0.30, 0.28, None)["within_noise"] is False  # no spread measured: ranked, as shown


def test_comparisons_pair_table_iv_steps_and_recipe_cells_with_the_full_method():
    def cell(group, v):
        return {"group": group, "targets": {k: stats(v) for k in ("val", "val-night", "val-fog", "mean")}}

    table = {
        "baseline": cell("table4", [0.1, 0.1, 0.1]),
        "diff": cell("table4", [0.2, 0.2, 0.2]),
        "ipkl-l2": cell("table4", [0.2, 0.26, 0.32]),  # mean 0.26, std 0.06
        "rcs-off": cell("recipe", [0.22, 0.22, 0.22]),
    }
    pairs = {(p["a"], p["b"]): p["targets"] for p in comparisons(table)}
    assert set(pairs) == {("diff", "baseline"), ("ipkl-l2", "diff"), ("ipkl-l2", "baseline"), ("rcs-off", "ipkl-l2")}
    assert pairs[("diff", "baseline")]["val"]["within_noise"] is False  # 0.1 apart, no spread
    recipe = pairs[("rcs-off", "ipkl-l2")]["mean"]
    assert recipe["diff"] == pytest.approx(-0.04) and recipe["within_noise"] is True  # 0.04 < 0.06


def test_class_ratio_hand_case():
    maps = np.array([[[3.0, 1.0], [1.0, 1.0]], [[1.0, 1.0], [1.0, 1.0]]])  # channel 0: class 5, channel 1: class 7
    label = np.zeros((4, 4), np.uint8)
    label[:2, :2] = 5  # class 5 fills the top-left quarter, where its map is 3 (1 elsewhere)
    assert class_ratios(maps, label, [5, 7]) == [pytest.approx(3.0)]  # class 7 absent: no ratio
    assert class_ratios(maps[1:], label, [5]) == [pytest.approx(1.0)]  # a flat map: 1


def test_chance_ratio_scores_each_mask_on_the_other_classes_maps():
    # Channel 0 (class 5) is bright on class 7's pixels, channel 1 (class 7) on class 5's: maps that
    # vary with the scene but have their classes swapped: both own ratios are 1/3, chance is 3.
    maps = np.array([[[3.0, 3.0], [1.0, 1.0]], [[1.0, 1.0], [3.0, 3.0]], [[9.0, 1.0], [1.0, 1.0]]])
    label = np.zeros((4, 4), np.uint8)
    label[:2] = 7  # class 7 on the top half, class 5 on the bottom half; class 0 (channel 2) absent
    label[2:] = 5
    assert class_ratios(maps, label, [5, 7, 0]) == [pytest.approx(1 / 3), pytest.approx(1 / 3)]
    assert chance_ratios(maps, label, [5, 7, 0]) == [pytest.approx(3.0), pytest.approx(3.0)]
    assert chance_ratios(maps[:1], label, [5]) == []  # one present class: nothing to compare with


def test_xattn_ratio_finds_peaked_maps(tmp_path):
    # synthetic "scene" xattn maps are 0.6 on their class plus uniform noise in [0, 0.1)
    good = xattn_ratio(make_cache(tmp_path / "peaked", 3, xattn_classes=19, features="scene"))
    assert good["images"] == 3 and good["pairs"] > 0 and set(good["layers"]) == {"up3.xattn1"}
    assert good["ratio"] > 3 and 0 < good["chance"] < 1  # each class's map is dark on the other classes
    with pytest.raises(DiffsegError, match="no xattn layer"):
        xattn_ratio(make_cache(tmp_path / "none", 2))


def test_model_pictures_shapes():
    from diffseg.pretrain.samples import model_pictures, style_prompt

    images = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    prompt = style_prompt("night", (0, 10, 13))
    assert prompt == "a photo of a city street, road, sky, car; at night"
    samples, recon = model_pictures("tiny", [prompt] * 3, images, seed=0, steps=2)
    assert samples.shape == (3, 64, 64, 3) and samples.dtype == np.uint8
    assert recon.shape == images.shape and recon.dtype == np.uint8
    again, _ = model_pictures("tiny", [prompt] * 3, images, seed=0, steps=2)
    np.testing.assert_array_equal(samples, again)  # seeded


def test_ablate_only_refuses_an_unknown_cell(tmp_path):
    from diffseg.stages.ablate import job as ablate

    cache = make_cache(tmp_path / "c", 2)
    val = make_cache(tmp_path / "v", 2, kind="eval", branches=("uncond",))
    with pytest.raises(DiffsegError, match="no cell named ipkl-l3"):
        ablate.main(cache=cache, eval_caches=[val], out=tmp_path / "a", only=("ipkl-l3",), device="cpu")
