"""Planning of the ablation cells from a cache layout (pure, no training)."""

from diffseg.stages.ablate.cells import PAPER_TABLE4, CacheLayout, plan_cells


def _layout(kinds=("res",), xattn_both=False, steps=(60, 20, 1)):
    layers = {}
    for i, s in ((1, 32), (2, 16), (3, 8)):
        for j in (0, 2):
            layers[f"up{i}.res{j}"] = {"kind": "res", "stride": s, "channels": 8}
            if "blk" in kinds:
                layers[f"up{i}.blk{j}"] = {"kind": "blk", "stride": s, "channels": 8}
    layers["up3.xattn1"] = {"kind": "xattn", "stride": 8, "channels": 19}
    plain = [n for n in layers if "xattn" not in n]
    held = {"uncond": plain + (["up3.xattn1"] if xattn_both else []), "cond": list(layers)}
    return CacheLayout(layers=layers, branch_layers=held, save_steps=steps)


def test_table4_rows_follow_method_definitions():
    cells = {c.name: c for c in plan_cells(_layout(kinds=("res", "blk")), features=False)}
    assert list(cells) == list(PAPER_TABLE4)
    base = cells["baseline"]
    assert base.save_steps == (1,)  # least noisy saved step = smallest t
    assert base.layers == ("up1.res2", "up2.res2", "up3.res2")  # res, last j, one per stride
    assert base.branches == ("uncond",) and base.w_cond == 0 and base.consistency == "none"
    diff = cells["diff"]
    assert diff.branches == ("uncond",) and diff.save_steps == (60, 20, 1)
    assert "up3.xattn1" not in diff.layers and len(diff.layers) == 12  # only layers both branches hold
    nocons = cells["ipkl-nocons"]
    assert nocons.branches == ("cond",) and nocons.w_uncond == 0 and nocons.consistency == "none"
    assert cells["ipkl-kl"].consistency == "kl" and cells["ipkl-l2"].consistency == "l2"
    assert cells["ipkl-l2"].branches == ("uncond", "cond")
    assert {n: c.reference for n, c in cells.items()} == PAPER_TABLE4


def test_feature_axis_lists_inapplicable_cells_and_dedupes():
    cells = {c.name: c for c in plan_cells(_layout(kinds=("res",)), features=True)}
    assert [n for n in cells if n.startswith("steps-")] == ["steps-t60", "steps-t20", "steps-t1", "steps-all"]
    assert cells["steps-t20"].save_steps == (20,) and cells["steps-t20"].runs
    assert cells["steps-all"].same_as == "ipkl-l2"
    assert cells["kinds-res"].same_as == "ipkl-l2"  # the cache holds res only
    assert "blk" in cells["kinds-res+blk"].not_applicable
    assert "xattn" in cells["kinds-res+blk+xattn"].not_applicable
    assert cells["layers-s32"].layers == ("up1.res0", "up1.res2")
    assert [n for n in cells if n.startswith("layers-")] == ["layers-s32", "layers-s16", "layers-s8"]


def test_xattn_cell_runs_when_both_branches_hold_it():
    cells = {c.name: c for c in plan_cells(_layout(kinds=("res", "blk"), xattn_both=True))}
    x = cells["kinds-res+blk+xattn"]
    assert x.not_applicable is None and "up3.xattn1" in x.layers
    assert x.same_as == "ipkl-l2"  # all shared layers = the full method's selection
    assert cells["kinds-res+blk"].runs and "up3.xattn1" not in cells["kinds-res+blk"].layers


def test_single_step_cache_step_cells_collapse():
    cells = {c.name: c for c in plan_cells(_layout(steps=(0,)))}
    assert cells["steps-t0"].same_as == "ipkl-l2" and cells["steps-all"].same_as == "ipkl-l2"
