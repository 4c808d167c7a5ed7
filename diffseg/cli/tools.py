"""`diffseg data ...` and `diffseg cache ...`: inspect datasets and feature caches."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from diffseg.cli.errors import user_errors
from diffseg.cli.options import (
    SPLIT_HELP,
    CacheArg,
    CondOpt,
    DatasetOpt,
    JsonOpt,
    MapOpt,
    RootOpt,
    SplitFileOpt,
    csv,
    given,
)

data_app = typer.Typer(help="Inspect datasets.", no_args_is_help=True)
cache_app = typer.Typer(help="Inspect feature caches.", no_args_is_help=True)


@data_app.command("check")
@user_errors
def data_check(
    dataset: DatasetOpt,
    root: RootOpt = None,
    split: Annotated[str, typer.Option(help=SPLIT_HELP)] = "train",
    split_file: SplitFileOpt = None,
    mapillary_map: MapOpt = None,
    conditions: CondOpt = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Check only the first N samples.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Count samples, histogram the classes, list every problem with its file. Exit 1 on problems."""
    from diffseg.stages.tools import datacheck as stage

    code = stage.main(
        dataset=getattr(dataset, "value", dataset),
        root=root,
        split=split,
        split_file=split_file,
        conditions=csv(conditions),
        limit=limit,
        as_json=as_json,
        **given(mapillary_map=mapillary_map),
    )
    raise typer.Exit(code)


@cache_app.command("info")
@user_errors
def cache_info(cache: CacheArg, as_json: JsonOpt = False) -> None:
    """What a cache holds: config, layers, bytes per sample, completeness."""
    from diffseg.stages.tools import cache as stage

    raise typer.Exit(stage.info(cache=cache, as_json=as_json))


@cache_app.command("verify")
@user_errors
def cache_verify(
    cache: CacheArg,
    as_json: JsonOpt = False,
    data: Annotated[
        bool, typer.Option("--data", help="Also hash the source samples: which changed since extraction.")
    ] = False,
    root: RootOpt = None,
) -> None:
    """Read every sample: complete, readable, finite, checksums intact. Exit 1 on problems."""
    from diffseg.stages.tools import cache as stage

    raise typer.Exit(stage.verify(cache=cache, as_json=as_json, data=data, root=root))


@cache_app.command("show")
@user_errors
def cache_show(
    cache: CacheArg,
    out: Annotated[Path, typer.Option(help="Folder for the PNGs.")],
    sample: Annotated[int, typer.Option(min=0, help="Sample index.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace pictures already in --out.")] = False,
) -> None:
    """PCA-to-RGB pictures of the cached features per layer and step, and xattn heat maps."""
    from diffseg.stages.tools import cache as stage

    raise typer.Exit(stage.show(cache=cache, out=out, sample=sample, overwrite=overwrite))


@cache_app.command("migrate")
@user_errors
def cache_migrate(cache: CacheArg) -> None:
    """Bring a format-1 or -2 cache to format 3, in place.

    The record is rewritten first (atomically; the cache reads from then on), then every complete
    sample's features are copied into the stride packs of format 3 (a few files per sample instead
    of one per layer), read back and compared, and the old arrays deleted. An interrupted migration
    is finished by running it again. Holds a local cache's extraction lock meanwhile."""
    from diffseg.stages.tools import cache as stage

    raise typer.Exit(stage.migrate(cache=cache))


@cache_app.command("convert")
@user_errors
def cache_convert(
    cache: CacheArg,
    codec: Annotated[str, typer.Option(help="Feature codec spec, as extract --codec (e.g. int8, pca:k=32).")],
    out: Annotated[str, typer.Option(help="The new cache (dir or fsspec URL); a rerun resumes it.")],
) -> None:
    """Re-encode a cache with another feature codec, without the U-Net (resumable like extract)."""
    from diffseg.stages.tools import cache as stage

    raise typer.Exit(stage.convert(cache=cache, codec=codec, out=out))
