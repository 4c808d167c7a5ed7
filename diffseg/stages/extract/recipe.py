"""`extract --recipe diffseg|paper`: the defaults of stage one's options as one named set.

`diffseg` is diffseg's own choice (README "Defaults that differ from the paper"); `paper` sets
every reference-code choice of stage one (docs/design/method.md's bracketed values): the `reference` preset,
the 5 active classes of the released config with the reference's class descriptions (data:
diffseg/pipeline/data/reference_descriptions.json), the raw U-Net output used as epsilon, a
seeded VAE posterior sample, the reference's `blk` sum, photometric training views, and
PAPER_VIEWS views per training image. An option given explicitly overrides its recipe value.
"""

from __future__ import annotations

from pathlib import Path

from diffseg.core.errors import DiffsegError

RECIPES = ("diffseg", "paper")
PAPER_CLASSES = ("sidewalk", "wall", "rider", "truck", "train")
REFERENCE_DESCRIPTIONS = Path(__file__).resolve().parents[2] / "pipeline" / "data" / "reference_descriptions.json"
# The reference samples a fresh crop per visit: 40k iterations at batch 1 over GTAV's 24,966
# images visit each image 1.6 times on average, so 2 stored views per image give training about
# as many distinct views as the reference saw; more would mostly never be drawn.
PAPER_VIEWS = 2

_VALUES = {
    "diffseg": {
        "preset": "lite",
        "views": 1,
        "photometric": True,
        "encode": "mean",
        "raw_eps": False,
        "blk_sum": False,
        "classes": None,  # all 19
        "descriptions": None,  # diffseg's (pipeline/prompts.py)
    },
    "paper": {
        "preset": "reference",
        "views": PAPER_VIEWS,
        "photometric": True,
        "encode": "sample",
        "raw_eps": True,
        "blk_sum": True,
        "classes": PAPER_CLASSES,
        "descriptions": REFERENCE_DESCRIPTIONS,
    },
}
RECIPE_OPTIONS = tuple(_VALUES["diffseg"])  # the ExtractConfig options a recipe decides when not given
assert all(tuple(v) == RECIPE_OPTIONS for v in _VALUES.values())


def recipe_options(name: str, given: dict) -> dict:
    """`given` (None = not given) with the recipe's values filled in where not given."""
    if name not in _VALUES:
        raise DiffsegError(f"unknown recipe {name!r} (expected {', '.join(RECIPES)})")
    return {k: (v if given.get(k) is None else given[k]) for k, v in _VALUES[name].items()}


def describe(plan) -> list[str]:
    """Every stage-one setting a recipe decides, as the dry run lists them."""
    from diffseg.core.classes import CLASS_NAMES
    from diffseg.pipeline.seeding import SCHEME
    from diffseg.stages.extract.views import IMAGE_INTERPOLATION, LABEL_INTERPOLATION

    t = plan.trajectory
    n = len(plan.classes)
    return [
        f"recipe {plan.recipe}:",
        f"  preset {plan.preset}: {len(t.steps)} evaluated steps, saved t = {', '.join(map(str, t.save_steps))}; "
        f"{len(t.layers)} layers ({', '.join(t.kinds)})",
        f"  active classes ({n}): {', '.join(CLASS_NAMES[c] for c in plan.classes)}",
        f"  class descriptions: {plan.descriptions_source}",
        "  epsilon: "
        + ("raw U-Net output (reference)" if t.raw_eps else "converted from the model's prediction type (v -> eps)"),
        "  latent: " + ("seeded VAE posterior sample (reference)" if t.encode == "sample" else "VAE posterior mean"),
        "  cond blk: "
        + ("reference sum 2 b_uncond + sum_k b_k (uncond 2 b_uncond)" if t.blk_sum else "the uncond copy's"),
        f"  eta {t.eta} for {t.eta_window[0]} < t < {t.eta_window[1]}; guidance {t.guidance}; seed {t.seed}",
        f"  views per training image: {plan.views}; photometric distortion: {'on' if plan.photometric else 'off'}"
        + ("" if plan.kind == "train" else " (evaluation cache: whole images)"),
        f"  resize: images {IMAGE_INTERPOLATION}, labels {LABEL_INTERPOLATION}; seeding {SCHEME}",
    ]
