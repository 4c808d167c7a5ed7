"""`diffseg ablate`: the paper's Table IV (and feature-selection cells) from one cache.

Cell options default to None ("not given"): the job takes the ablation cell's defaults
(TrainConfig's ABLATION_CELL), shown in --help by `shown`; never a literal.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from diffseg.cli.errors import user_errors
from diffseg.cli.options import ConfigOpt, DeviceOpt, Fusion, cache_location, from_file, required_cache
from diffseg.cli.train import shown, threads
from diffseg.stages.train.config import ABLATION_CELL, read_file


@user_errors
def ablate(
    out: Annotated[Path, typer.Option(help="Folder of the ablation runs and tables.")],
    cache: Annotated[
        str | None,
        typer.Option(
            callback=cache_location, help="Training cache (with both branches); required unless --config gives it."
        ),
    ] = None,
    eval_cache: Annotated[
        list[str] | None,
        typer.Option(
            callback=cache_location, help="Target cache (repeatable); required unless --config gives eval_caches."
        ),
    ] = None,
    config: ConfigOpt = None,
    grid: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="Grid file (TOML) of the cells, each a set of config overrides (default: the paper's Table IV and "
            "the feature-selection cells, diffseg/stages/ablate/grids/table4.toml).",
        ),
    ] = None,
    iters: Annotated[
        int | None, typer.Option(min=1, help="Iterations per cell.", show_default=shown("iters", ABLATION_CELL))
    ] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, show_default=shown("batch_size", ABLATION_CELL))] = None,
    fusion: Annotated[
        Fusion | None,
        typer.Option(help="Fusion widths for every cell.", show_default=shown("fusion", ABLATION_CELL)),
    ] = None,
    lr: Annotated[
        float | None,
        typer.Option(help="AdamW learning rate of every cell (head x10).", show_default=shown("lr", ABLATION_CELL)),
    ] = None,
    warmup: Annotated[
        int | None,
        typer.Option(
            min=0, help="Linear warm-up iterations of every cell.", show_default=shown("warmup", ABLATION_CELL)
        ),
    ] = None,
    read_threads: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Reader threads per cell (train --read-threads); on CUDA train's default.",
            show_default=shown("workers", ABLATION_CELL),
        ),
    ] = None,
    old_workers: Annotated[int | None, typer.Option("--workers", min=0, hidden=True)] = None,
    features: Annotated[bool, typer.Option(help="Also run the feature-selection axis (steps, layers, kinds).")] = True,
    device: DeviceOpt = None,
    seed: Annotated[int | None, typer.Option(show_default=shown("seed", ABLATION_CELL))] = None,
    seeds: Annotated[
        str | None,
        typer.Option(
            help="Train every cell once per seed (e.g. 0,1,2) under <cell>/seed-<k>/; tables show mean +- std."
        ),
    ] = None,
    cells: Annotated[str | None, typer.Option(help="Only these planned cells, comma-separated (e.g. ipkl-l2).")] = None,
    jobs: Annotated[
        int,
        typer.Option(
            min=1,
            help="Cell runs trained at once, each in its own process with cores/jobs threads (logs in "
            "OUT/logs/); 1: one after another, here. On a CPU one job per core is fastest for small heads.",
        ),
    ] = 1,
    rcs_temperature: Annotated[
        float | None,
        typer.Option(
            min=0,
            help="Rare-class sampling temperature of every cell; 0: uniform over images.",
            show_default=shown("rcs_temperature"),
        ),
    ] = None,
) -> None:
    """The paper's Table IV (and feature-selection cells) from one cache; finished cells are kept."""
    from diffseg.stages.ablate import job as stage
    from diffseg.stages.runs.seeds import parse_seeds

    chosen: dict[str, Any] = {}  # only what was given reaches the stage
    if seeds is not None:
        chosen["seeds"] = parse_seeds(seeds)
    if cells is not None:
        chosen["only"] = tuple(c.strip() for c in cells.split(",") if c.strip())
    if jobs != 1:
        chosen["jobs"] = jobs
    if grid is not None:
        chosen["grid"] = grid
    options = from_file(
        config,
        read_file,
        dict(
            cache=cache,
            eval_caches=eval_cache or None,
            iters=iters,
            batch_size=batch_size,
            fusion=fusion,
            lr=lr,
            warmup=warmup,
            workers=threads(read_threads, old_workers),
            device=device,
            seed=seed,
            rcs_temperature=rcs_temperature,
        ),
    )
    if seeds is not None and seed is None:  # --seeds replaces the file's seed
        options.pop("seed", None)
    cache = required_cache(options, config)
    eval_caches = list(options.pop("eval_caches", ()))
    stage.main(cache=cache, eval_caches=eval_caches, out=out, features=features, **chosen, **options)
