"""Feature/branch selection against a cache, and the mismatch messages (pure functions)."""

from dataclasses import replace

import pytest

from diffseg.cache.synthetic import synthetic_record, unet_geometry
from diffseg.core.errors import CacheMismatch, DiffsegError
from diffseg.core.layers import layer_specs
from diffseg.stages.train.selection import match_eval_cache, select

# up1.res2 4 channels (stride 32), up2.res2 4 (16), up3.res2 8 (8), up2.xattn0 19 classes (16)
SPECS = layer_specs(unet_geometry((4, 4, 4, 8)), ("up1.res2", "up2.res2", "up3.res2", "up2.xattn0"), (64, 64), 19)
RECORD = synthetic_record(
    SPECS, n=2, save_steps=(60, 20, 1), branches=("uncond", "cond"), resolution=(64, 64), fingerprint="abc"
)
HELD = {"uncond": ["up1.res2", "up2.res2", "up3.res2"], "cond": ["up1.res2", "up2.res2", "up3.res2", "up2.xattn0"]}


def test_default_is_what_both_branches_hold():
    sel = select("cache/gtav", RECORD, HELD)
    assert sel.branches == ("uncond", "cond")
    assert sel.layers == ("up1.res2", "up2.res2", "up3.res2")  # xattn: cond only -> left out
    assert sel.save_steps == (60, 20, 1) and sel.step_indices == (0, 1, 2)


def test_cond_only_training_may_use_xattn():
    sel = select("cache/gtav", RECORD, HELD, w_uncond=0.0)
    assert sel.branches == ("cond",) and "up2.xattn0" in sel.layers


def test_subsets_in_cache_order():
    sel = select("cache/gtav", RECORD, HELD, layers=("up3.res2", "up1.res2"), save_steps=(1, 60))
    assert sel.layers == ("up1.res2", "up3.res2")
    assert sel.save_steps == (60, 1) and sel.step_indices == (0, 2)
    assert select("c", RECORD, HELD, w_cond=0.0).branches == ("uncond",)


@pytest.mark.parametrize(
    "kw, asked, held",
    [
        ({"layers": ("up1.blk0",)}, "asked for layer up1.blk0", "cache/gtav holds up1.res2, up2.res2, up3.res2"),
        ({"layers": ("up2.xattn0",)}, "asked for layer up2.xattn0 (only in branch cond)", "holds up1.res2"),
        ({"save_steps": (91,)}, "asked for saved step 91", "cache/gtav holds 60, 20, 1"),
        ({"kinds": ("blk",)}, "asked for kind blk", "cache/gtav holds res"),
        ({"branches": ("cond2",)}, "asked for branch cond2", "cache/gtav holds uncond, cond"),
    ],
)
def test_mismatch_names_both_values(kw, asked, held):
    with pytest.raises(CacheMismatch) as err:
        select("cache/gtav", RECORD, HELD, **kw)
    assert asked in str(err.value) and held in str(err.value)


def test_no_branch_left():
    with pytest.raises(DiffsegError, match="no branch left"):
        select("c", RECORD, HELD, w_cond=0.0, w_uncond=0.0)


def test_eval_cache_checks_name_both_values():
    specs = {l: SPECS[l].to_dict() for l in ("up1.res2", "up3.res2")}
    fewer_steps = replace(RECORD.extract, trajectory={**RECORD.extract.trajectory, "save_steps": [60, 20]})
    kw = dict(
        train_cache="cache/gtav",
        train_extract=RECORD.extract.to_dict(),
        layers=("up1.res2", "up3.res2"),
        layer_specs=specs,
        save_steps=(1, 60),
    )
    assert match_eval_cache("cache/cs", RECORD, HELD["uncond"], fingerprint="abc", **kw) == (2, 0)
    with pytest.raises(CacheMismatch, match="model fingerprint zzz.*cache/gtav with model fingerprint abc"):
        match_eval_cache(
            "cache/cs",
            replace(RECORD, model=replace(RECORD.model, fingerprint="zzz")),
            HELD["uncond"],
            fingerprint="abc",
            **kw,
        )
    with pytest.raises(CacheMismatch, match="uses layer up3.res2; cache/cs holds up1.res2"):
        match_eval_cache("cache/cs", RECORD, ["up1.res2"], fingerprint="abc", **kw)
    with pytest.raises(CacheMismatch, match="uses saved step 1; cache/cs holds 60, 20"):
        match_eval_cache("cache/cs", replace(RECORD, extract=fewer_steps), HELD["uncond"], fingerprint="abc", **kw)
