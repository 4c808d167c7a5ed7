"""`diffseg extract`: stage one's options, passed on as an ExtractConfig holding only those given.

Every option defaults to None ("not given"): ExtractConfig (stages/extract/config.py) holds the
defaults, and the recipe (stages/extract/recipe.py) those of the recipe-decided options; the help
shows both, read from there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from diffseg.cli.errors import user_errors
from diffseg.cli.options import (
    SPLIT_HELP,
    CondOpt,
    ConfigOpt,
    DatasetName,
    DeviceOpt,
    Encode,
    MapOpt,
    Preset,
    Recipe,
    RootOpt,
    SplitFileOpt,
    UncondPrompt,
    csv,
    from_file,
    ints,
    renamed,
    size,
)
from diffseg.cli.options import shard as parse_shard
from diffseg.core.errors import DiffsegError
from diffseg.stages.extract.config import default, read_file
from diffseg.stages.extract.recipe import RECIPES, recipe_options


def _value(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    if isinstance(value, Path):
        return value.name
    return str(value)


def by_recipe(name: str, none: str = "-") -> str:
    """The recipes' values of one option, for its help ("diffseg: lite, paper: reference")."""
    values = {r: recipe_options(r, {})[name] for r in RECIPES}
    return "recipe: " + ", ".join(f"{r}: {none if v is None else _value(v)}" for r, v in values.items())


def shown(name: str) -> str:
    return _value(default(name))


@user_errors
def extract(
    dataset: Annotated[
        DatasetName | None,
        typer.Option("--dataset", "-d", help="Dataset adapter (layouts: README); required unless --config gives it."),
    ] = None,
    config: ConfigOpt = None,
    root: RootOpt = None,
    split: Annotated[str | None, typer.Option(help=SPLIT_HELP, show_default=shown("split"))] = None,
    out: Annotated[
        str | None,
        typer.Option(help="Cache dir or fsspec URL (s3://, gs://). Default cache/<name> or cache/<name>-<split>."),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="tiny | mini (built in) | sd21-random | a diffusers dir | a hub id in the local cache.",
            show_default=shown("model"),
        ),
    ] = None,
    recipe: Annotated[
        Recipe | None,
        typer.Option(
            help="Where the options marked 'recipe' take their value when not given: diffseg (diffseg's own "
            "choices) or paper (every reference-code choice of stage one). --dry-run lists them all.",
            show_default=shown("recipe"),
        ),
    ] = None,
    preset: Annotated[
        Preset | None,
        typer.Option(
            help="Feature set (timesteps, layers, kinds); lite is the smallest.", show_default=by_recipe("preset")
        ),
    ] = None,
    steps: Annotated[
        str | None, typer.Option(help="Evaluated timesteps, e.g. 0,1,20,40,60 (overrides the preset).")
    ] = None,
    save_steps: Annotated[str | None, typer.Option(help="Saved timesteps, in cache order, e.g. 60,20,1.")] = None,
    layers: Annotated[str | None, typer.Option(help="Layer names, e.g. up1.res2,up2.blk0,up3.xattn1.")] = None,
    kinds: Annotated[str | None, typer.Option(help="Feature kinds at the preset's positions: res,blk,xattn.")] = None,
    resolution: Annotated[
        str | None, typer.Option(help="Size fed to the VAE, WxH, multiples of 64 (crop size for train caches).")
    ] = None,
    scale: Annotated[str | None, typer.Option(help="Train caches: fit the image inside WxH before cropping.")] = None,
    views: Annotated[
        int | None,
        typer.Option(
            min=1, help="Seeded crops (and flips) stored per training image.", show_default=by_recipe("views")
        ),
    ] = None,
    photometric: Annotated[
        bool | None,
        typer.Option(
            "--photometric/--no-photometric",
            help="Training views: mmseg's PhotoMetricDistortion (brightness +-32, contrast and saturation "
            "0.5-1.5, hue +-18, each with probability 0.5), seeded per view.",
            show_default=by_recipe("photometric"),
        ),
    ] = None,
    branches: Annotated[
        str | None, typer.Option(help="uncond,cond or uncond. Default: both for train caches, uncond otherwise.")
    ] = None,
    uncond_prompt: Annotated[
        UncondPrompt | None,
        typer.Option(
            help="empty (paper) or classes (label-free class list: gives xattn).", show_default=shown("uncond_prompt")
        ),
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N samples in sorted id order.")] = None,
    split_file: SplitFileOpt = None,
    mapillary_map: MapOpt = None,
    conditions: CondOpt = None,
    dask_workers: Annotated[
        int | None, typer.Option(min=1, help="Run a local dask cluster of N worker processes (one per GPU on CUDA).")
    ] = None,
    old_workers: Annotated[int | None, typer.Option("--workers", min=1, hidden=True)] = None,
    scheduler: Annotated[str | None, typer.Option(help="Join an existing dask scheduler at ADDRESS.")] = None,
    shard: Annotated[
        str | None,
        typer.Option("--shard", help="I/N: extract only share I of N (job arrays without dask), e.g. 0/4."),
    ] = None,
    device: DeviceOpt = None,
    seed: Annotated[
        int | None,
        typer.Option(help="Seed of every random draw (crops, VAE sample, eta noise).", show_default=shown("seed")),
    ] = None,
    encode: Annotated[
        Encode | None,
        typer.Option(help="Latent from the VAE posterior: mean or sample (seeded).", show_default=by_recipe("encode")),
    ] = None,
    raw_eps: Annotated[
        bool | None,
        typer.Option(
            "--raw-eps/--no-raw-eps",
            help="Treat the U-Net output as epsilon even for v-prediction.",
            show_default=by_recipe("raw_eps"),
        ),
    ] = None,
    blk_sum: Annotated[
        bool | None,
        typer.Option(
            "--blk-sum/--no-blk-sum",
            help="blk as the reference sums it: 2 b_uncond + sum_k b_k in cond, 2 b_uncond in uncond.",
            show_default=by_recipe("blk_sum"),
        ),
    ] = None,
    classes: Annotated[
        str | None,
        typer.Option(
            help="Active classes for masked prompts (names or train ids).", show_default=by_recipe("classes", "all")
        ),
    ] = None,
    descriptions: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="JSON {class: description} replacing the defaults.",
            show_default=by_recipe("descriptions", "diffseg's"),
        ),
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Stop at the first bad sample (default: skip, warn and record).")
    ] = False,
    codec: Annotated[
        str | None,
        typer.Option(
            help="Feature codec: raw, bitround[:keepbits=7], int8[:pct=99.9], pca[:k=32,calib=16,seed=0]; "
            "per-layer overrides after ';', e.g. 'pca:k=32;up1.*=int8' (README: Feature codecs).",
            show_default=shown("codec"),
        ),
    ] = None,
    unet_batch: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Images per U-Net call in the uncond branch (default 1; 4 for evaluation caches on CUDA). Recorded: "
            "batched calls round differently, so a resume must use the same.",
        ),
    ] = None,
    joint_branches: Annotated[
        bool | None,
        typer.Option(
            "--joint-branches/--no-joint-branches",
            help="Walk both branches together: each step's uncond and cond rows in one U-Net call (fewer, larger "
            "calls on a GPU). Recorded: it rounds differently, so a resume must use the same.",
            show_default=shown("joint_branches"),
        ),
    ] = None,
    block_minutes: Annotated[
        float | None,
        typer.Option(
            min=0.01,
            help="Dask: minutes a block of samples should take; a lost worker redoes at most one block.",
            show_default=shown("block_minutes"),
        ),
    ] = None,
    sample_seconds: Annotated[
        float | None,
        typer.Option(
            min=0.001, help="Dask: seconds one sample takes, to size the blocks (default: measured on a first block)."
        ),
    ] = None,
    old_batch_size: Annotated[int | None, typer.Option("--batch-size", min=1, hidden=True)] = None,
    dry_run: Annotated[
        bool, typer.Option(help="Print bytes per sample (per codec), the total and the free disk; write nothing.")
    ] = False,
) -> None:
    """Stage one: run the frozen U-Net trajectory once per image and write the feature cache.

    `diffseg extract --dataset gtav` reads data/gta and writes cache/gtav. Rerunning the same
    command resumes; a different config on an existing cache is refused.
    """
    from diffseg.stages.extract import job as stage
    from diffseg.stages.extract.config import ExtractConfig

    options = from_file(
        config,
        read_file,
        dict(
            dataset=dataset,
            root=root,
            split=split,
            out=out,
            model=model,
            recipe=recipe,
            preset=preset,
            steps=ints(steps),
            save_steps=ints(save_steps),
            layers=csv(layers),
            kinds=csv(kinds),
            resolution=size(resolution),
            scale=size(scale),
            views=views,
            photometric=photometric,
            branches=csv(branches),
            uncond_prompt=uncond_prompt,
            limit=limit,
            split_file=split_file,
            mapillary_map=mapillary_map,
            conditions=csv(conditions),
            dask_workers=renamed("--dask-workers", "--workers", dask_workers, old_workers),
            scheduler=scheduler,
            shard=parse_shard(shard),
            device=device,
            seed=seed,
            encode=encode,
            raw_eps=raw_eps,
            blk_sum=blk_sum,
            classes=csv(classes),
            descriptions=descriptions,
            strict=strict or None,  # a pure flag: given only when set
            codec=codec,
            unet_batch=renamed("--unet-batch", "--batch-size", unet_batch, old_batch_size),
            joint_branches=joint_branches,
            block_minutes=block_minutes,
            sample_seconds=sample_seconds,
        ),
    )
    if "dataset" not in options:
        raise DiffsegError("no dataset: give --dataset or `dataset` in the [extract] table of a --config file")
    stage.main(ExtractConfig(**options), dry_run=dry_run)
