"""Stage one planning: an `ExtractConfig` (config.py: the options and their defaults) resolved
into one frozen `ExtractPlan`, plus the part of the cache record that records it.

Everything a worker needs to redo any sample is in the plan, so a plan is the only thing
sent to dask workers besides sample indices. Pure: no model, no dataset, no zarr.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from diffseg.cache.schema import view_id
from diffseg.core import location
from diffseg.core.classes import CITYSCAPES, ClassTable
from diffseg.core.errors import DiffsegError
from diffseg.core.geometry import check_unet_size
from diffseg.data import dataset_classes
from diffseg.pipeline.config import TrajectoryConfig, resolve
from diffseg.stages.extract.config import ExtractConfig

# Size fed to the VAE for evaluation caches (whole image resized to it), (W, H).
EVAL_RESOLUTION = {
    "cityscapes": (1024, 512),
    "bdd100k": (1280, 704),
    "mapillary": (1024, 768),
    "acdc": (1024, 576),
    "darkzurich": (1024, 576),
    # GTAV/Synthia "val" exists only with a split file: their aspect at 1280 px wide.
    "gtav": (1280, 704),
    "synthia": (1280, 768),
}
# Training caches: the image is first fitted inside this size, then cropped, (W, H).
TRAIN_SCALE = {"gtav": (1280, 720), "synthia": (1280, 760), "cityscapes": (1024, 512)}
OTHER_SCALE = (1280, 720)
TRAIN_CROP = (512, 512)
DEMO_SIZE = (128, 128)


@dataclass(frozen=True, kw_only=True)
class ExtractPlan:
    """A fully resolved `diffseg extract` run; sizes are (W, H)."""

    dataset: str  # adapter name
    root: str | None  # as given (None: the adapter's default root)
    split: str
    split_file: str | None
    mapillary_map: str
    conditions: tuple[str, ...] | None
    kind: str  # "train" (split train: seeded crops, cond possible) | "eval" (whole image)
    out: str  # cache directory (absolute)
    model: str  # tiny | sd21-random | dir | hub id
    device: str  # resolved: "cpu" | "cuda"
    compute_dtype: str  # "float32" (CPU) | "float16" (CUDA)
    recipe: str  # "diffseg" | "paper": where the options not given came from (recipe.py)
    preset: str
    trajectory: TrajectoryConfig
    resolution: tuple[int, int]  # VAE input: crop size (train) or resize target (eval)
    scale: tuple[int, int] | None  # train: image fitted inside before cropping; eval: None
    views: int  # seeded crops per training image
    photometric: bool  # train views: mmseg's PhotoMetricDistortion after the crop and flip
    branches: tuple[str, ...]
    uncond_prompt: str  # "empty" | "classes"
    classes: tuple[int, ...]  # active train ids
    descriptions: dict[str, str] | None  # class descriptions replacing the defaults (content)
    descriptions_source: str  # the file they came from, or "diffseg's defaults"
    limit: int | None
    strict: bool
    codec: str  # feature codec spec, defaults written out (diffseg.cache.codecs)
    workers: int | None
    scheduler: str | None
    shard: tuple[int, int] | None  # (I, N): this process extracts share I of N (share.py)
    batch_size: int  # uncond images per U-Net call; sample i is in batch i // batch_size (recorded)
    overlap: bool = True  # reads and writes in threads beside the U-Net (overlap.py); False: benchmarks
    joint_branches: bool  # both branches' rows of a step in one U-Net call (recorded)
    block_minutes: float  # dask: a block's time budget (cluster.py)
    sample_seconds: float | None  # dask: seconds per sample for that budget; None: measured
    class_table: ClassTable  # the dataset's label space (a folder dataset's classes.json)

    def branch_layers(self, branch: str) -> tuple[str, ...]:
        """Layers this branch stores: every branch stores every layer (the branches share the
        head, so they must feed it the same inputs)."""
        return self.trajectory.layers

    def array_names(self) -> list[tuple[str, str]]:
        """(branch, layer) of every feature array, branch-major."""
        return [(b, n) for b in self.branches for n in self.branch_layers(b)]


def default_out(dataset: str, split: str) -> Path:
    return Path("cache") / (dataset if split == "train" else f"{dataset}-{split}")


def resolve_sizes(dataset: str, kind: str, resolution, scale) -> tuple[tuple[int, int], tuple[int, int] | None]:
    """(resolution, scale) with docs/design/architecture.md's defaults; resolution validated as multiples of 64."""
    if dataset == "demo":
        res = check_unet_size(resolution or DEMO_SIZE, "--resolution")
        return res, ((scale or res) if kind == "train" else None)
    if kind == "eval":
        if scale is not None:
            raise DiffsegError(
                "--scale applies to training caches only (split train); evaluation "
                "caches resize the whole image to --resolution"
            )
        if resolution is None and dataset not in EVAL_RESOLUTION:
            raise DiffsegError(f"no default evaluation resolution for {dataset}: pass --resolution WxH")
        return check_unet_size(resolution or EVAL_RESOLUTION[dataset], "--resolution"), None
    res = check_unet_size(resolution or TRAIN_CROP, "--resolution")
    sc = tuple(scale or TRAIN_SCALE.get(dataset, OTHER_SCALE))
    if sc[0] < res[0] or sc[1] < res[1]:
        raise DiffsegError(f"--scale {sc[0]}x{sc[1]} is smaller than the crop --resolution {res[0]}x{res[1]}")
    return res, sc


def resolve_branches(kind: str, branches) -> tuple[str, ...]:
    out = tuple(branches) if branches else (("uncond", "cond") if kind == "train" else ("uncond",))
    for b in out:
        if b not in ("uncond", "cond"):
            raise DiffsegError(f"--branches: unknown branch {b!r} (expected uncond, cond)")
    if len(set(out)) != len(out):
        raise DiffsegError(f"--branches has duplicates: {','.join(out)}")
    if "cond" in out and kind != "train":
        raise DiffsegError(
            "--branches cond needs labels of a training split (split train); evaluation "
            "caches hold the uncond branch only"
        )
    return out


def resolve_classes(classes, table: ClassTable = CITYSCAPES) -> tuple[int, ...]:
    """Names or train ids of `table` -> sorted unique train ids (default: all of them)."""
    names = table.names
    if not classes:
        return tuple(range(len(names)))
    ids = set()
    for c in classes:
        if c.isdigit() and int(c) < len(names):
            ids.add(int(c))
        elif c.replace("_", " ") in names:
            ids.add(names.index(c.replace("_", " ")))
        else:
            raise DiffsegError(
                f"--classes: unknown class {c!r} (names such as {names[0]!r} or train ids 0-{len(names) - 1})"
            )
    return tuple(sorted(ids))


def build_plan(config: ExtractConfig) -> ExtractPlan:
    """An `extract` config resolved into a plan; raises DiffsegError on bad values. Options left
    None take the recipe's value (recipe.py), the preset's, the dataset's or the split's."""
    from diffseg.cache.codecs import normalize_spec
    from diffseg.pipeline.prompts import load_descriptions
    from diffseg.stages.device import resolve_device
    from diffseg.stages.extract.recipe import RECIPE_OPTIONS, recipe_options

    c = config
    kind = "train" if c.split == "train" else "eval"
    if c.views is not None and c.views > 1 and kind != "train":
        raise DiffsegError(f"--views {c.views}: several views exist only for training caches (split train)")
    opts = recipe_options(c.recipe, {name: getattr(c, name) for name in RECIPE_OPTIONS})
    preset, descriptions = opts["preset"], opts["descriptions"]
    table = dataset_classes(c.dataset, c.root)
    if descriptions is not None and table != CITYSCAPES:
        raise DiffsegError(
            f"--descriptions applies to the Cityscapes classes only: {c.dataset}'s prompt words come from its class table"
        )
    res, sc = resolve_sizes(c.dataset, kind, c.resolution, c.scale)
    dev = resolve_device(c.device).type
    traj = resolve(
        preset,
        steps=c.steps,
        save_steps=c.save_steps,
        layers=c.layers,
        kinds=c.kinds,
        seed=c.seed,
        encode=opts["encode"],
        raw_eps=opts["raw_eps"],
        blk_sum=opts["blk_sum"],
    )
    plan = ExtractPlan(
        dataset=c.dataset,
        root=c.root,
        split=c.split,
        split_file=None if c.split_file is None else str(Path(c.split_file).resolve()),
        mapillary_map=c.mapillary_map,
        conditions=c.conditions,
        kind=kind,
        out=location.normalize(c.out or default_out(c.dataset, c.split)),
        model=c.model,
        device=dev,
        compute_dtype="float16" if dev == "cuda" else "float32",
        recipe=c.recipe,
        preset=preset,
        trajectory=traj,
        resolution=res,
        scale=sc,
        views=int(opts["views"]) if kind == "train" else 1,
        photometric=bool(opts["photometric"]) and kind == "train",
        branches=resolve_branches(kind, c.branches),
        uncond_prompt=c.uncond_prompt,
        classes=resolve_classes(opts["classes"], table),
        descriptions=None if descriptions is None else load_descriptions(descriptions),
        descriptions_source="diffseg's defaults" if descriptions is None else str(descriptions),
        limit=c.limit,
        strict=c.strict,
        workers=c.dask_workers,
        scheduler=c.scheduler,
        shard=c.shard,
        codec=normalize_spec(c.codec),
        batch_size=default_batch_size(dev, kind) if c.unet_batch is None else c.unet_batch,
        joint_branches=c.joint_branches,
        block_minutes=c.block_minutes,
        sample_seconds=c.sample_seconds,
        class_table=table,
    )
    if plan.joint_branches and set(plan.branches) != {"uncond", "cond"}:
        raise DiffsegError(
            f"--joint-branches walks the uncond and cond branches together; this cache has {','.join(plan.branches)} "
            "only: drop the option or extract both branches"
        )
    if "xattn" in traj.kinds and c.uncond_prompt != "classes":
        raise DiffsegError(
            "xattn layers need --uncond-prompt classes: with the empty prompt the "
            "unconditional branch names no classes, so it has no cross-attention maps"
        )
    return plan


EVAL_CUDA_BATCH = 4  # images per U-Net call of an evaluation cache on CUDA, --batch-size not given


def default_batch_size(device: str, kind: str) -> int:
    """--batch-size not given: 1, except evaluation caches on CUDA (one uncond row per image: a batch
    of several keeps the GPU busy; CPU caches keep 1, their bytes unchanged)."""
    return EVAL_CUDA_BATCH if device == "cuda" and kind == "eval" else 1


def sample_ids(image_ids: list[str], views: int) -> list[str]:
    """Cache ids: one per image and view, schema.view_id(id, k) when there are several views."""
    if views == 1:
        return list(image_ids)
    return [view_id(i, k) for i in image_ids for k in range(views)]


def views_rule(plan: ExtractPlan):
    """How each image became the VAE input (views.py), as the cache records it."""
    from diffseg.cache import ViewsRule
    from diffseg.stages.extract import photometric
    from diffseg.stages.extract.views import CAT_MAX_RATIO, CAT_REDRAWS, IMAGE_INTERPOLATION, LABEL_INTERPOLATION

    rule = ViewsRule(mode="resize", interpolation=IMAGE_INTERPOLATION, label_interpolation=LABEL_INTERPOLATION)
    if plan.kind == "train":
        return dataclasses.replace(
            rule,
            mode="crop",
            scale=plan.scale,
            cat_max_ratio=CAT_MAX_RATIO,
            redraws=CAT_REDRAWS,
            flip=True,
            photometric=photometric.rule() if plan.photometric else None,
        )
    return rule


def extract_record(plan: ExtractPlan, image_ids: list[str]):
    """The cache record's `extract`: the full config that decides every array (compared on resume)."""
    from diffseg.cache import ExtractRecord
    from diffseg.pipeline.prompts import DEFAULT_DESCRIPTIONS, TEMPLATE, class_prompt, uncond_prompt
    from diffseg.pipeline.seeding import SCHEME

    descs = plan.descriptions or DEFAULT_DESCRIPTIONS
    return ExtractRecord(
        preset=plan.preset,
        trajectory=plan.trajectory.to_dict(),
        views=plan.views,
        views_rule=views_rule(plan),
        uncond_prompt=plan.uncond_prompt,
        uncond_prompt_text=uncond_prompt(plan.uncond_prompt, plan.classes, plan.class_table),
        prompt_template=TEMPLATE,
        classes=plan.classes,
        class_prompts={plan.class_table.names[c]: class_prompt(c, descs, plan.class_table) for c in plan.classes},
        compute_dtype=plan.compute_dtype,
        limit=plan.limit,
        images=len(image_ids),
        ids_sha256=hashlib.sha256("\n".join(image_ids).encode()).hexdigest(),
        seeding=SCHEME,
        recipe=plan.recipe,
        batch_size=plan.batch_size,
        joint_branches=plan.joint_branches,
        blk_sum_dtype="float32" if plan.trajectory.blk_sum and plan.compute_dtype != "float32" else None,
    )


def plan_to_json(plan: ExtractPlan) -> str:
    """A stable string key of a plan (worker-local caches are keyed by it)."""
    d = dataclasses.asdict(plan)
    d["trajectory"] = plan.trajectory.to_dict()
    return json.dumps(d, sort_keys=True, default=str)
