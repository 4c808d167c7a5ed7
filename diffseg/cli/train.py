"""Stage two at the command line: `train` (`eval` is in evaluate.py, `ablate` in ablate.py).

Training options default to None ("not given"): the job takes TrainConfig's default (or, on
--resume, the recorded value). `shown` puts TrainConfig's defaults into --help; never a literal.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from diffseg.cli.errors import user_errors
from diffseg.cli.options import (
    CACHE_HELP,
    ConfigOpt,
    Consistency,
    DeviceOpt,
    Fusion,
    PartialOpt,
    TrainLog,
    TrainRecipe,
    cache_location,
    csv,
    from_file,
    ints,
    renamed,
    required_cache,
)
from diffseg.stages.train.config import default as train_default

# Light (a dataclass, no torch): --help shows TrainConfig's defaults instead of restating them.
from diffseg.stages.train.config import read_file, recipe_defaults


def shown(name: str, table: dict | None = None) -> str:
    value = (table or {}).get(name, train_default(name))
    return str(value).lower() if isinstance(value, bool) else str(value)


def recipe_help() -> str:
    """What `train --recipe paper` changes, from the recipes themselves."""
    ours, paper = recipe_defaults("diffseg"), recipe_defaults("paper")
    differ = [f"--{k.replace('_', '-')} {paper[k]}" for k in paper if k != "recipe" and paper[k] != ours[k]]
    what = (
        f"it sets {', '.join(differ)}"
        if differ
        else "they equal diffseg's defaults today, so it changes only the recipe recorded in config.json "
        "(checked on --resume)"
    )
    return (
        "Defaults for the options not given: diffseg, or paper, which pins the reference code's training "
        f"choices: {what}. The features are chosen at extraction (extract --recipe)."
    )


def threads(value: int | None, old: int | None) -> int | None:
    """--read-threads, formerly --workers (a name `extract` gives its dask processes)."""
    return renamed("--read-threads", "--workers", value, old)


@user_errors
def train(
    cache: Annotated[
        str | None,
        typer.Option(
            callback=cache_location, help="Training feature cache (required unless --config gives it). " + CACHE_HELP
        ),
    ] = None,
    config: ConfigOpt = None,
    out: Annotated[Path | None, typer.Option(help="Run dir. Default runs/<cache name>-<YYYYmmdd-HHMMSS>.")] = None,
    eval_cache: Annotated[
        list[str] | None,
        typer.Option(
            callback=cache_location,
            help="Evaluate on this cache (folder or URL) every --eval-every iterations (repeatable).",
        ),
    ] = None,
    recipe: Annotated[TrainRecipe | None, typer.Option(help=recipe_help(), show_default=shown("recipe"))] = None,
    layers: Annotated[str | None, typer.Option(help="Subset of the cache's layers.")] = None,
    save_steps: Annotated[str | None, typer.Option(help="Subset of the cache's saved timesteps.")] = None,
    kinds: Annotated[str | None, typer.Option(help="Subset of the cache's kinds: res,blk,xattn.")] = None,
    branches: Annotated[str | None, typer.Option(help="Branches to train on (default: all the cache holds).")] = None,
    fusion: Annotated[
        Fusion | None, typer.Option(help="Fusion widths: reference (paper) or light.", show_default=shown("fusion"))
    ] = None,
    consistency: Annotated[
        Consistency | None,
        typer.Option(
            help="IPKL consistency: l2 (MSE on logits), kl (per-pixel mean), kl-ref (the reference code's: "
            "batchmean sum x 0.1, clamped at 0.5), none.",
            show_default=shown("consistency"),
        ),
    ] = None,
    w_cond: Annotated[
        float | None, typer.Option(help="Weight of the conditional CE.", show_default=shown("w_cond"))
    ] = None,
    w_uncond: Annotated[
        float | None, typer.Option(help="Weight of the unconditional CE.", show_default=shown("w_uncond"))
    ] = None,
    w_cons: Annotated[
        float | None, typer.Option(help="Weight of the consistency term.", show_default=shown("w_cons"))
    ] = None,
    detach_teacher: Annotated[
        bool | None,
        typer.Option(help="Detach the conditional side in the consistency term.", show_default=shown("detach_teacher")),
    ] = None,
    rcs_temperature: Annotated[
        float | None,
        typer.Option(
            min=0,
            help="Rare-class sampling temperature (DAFormer's RCS); 0: uniform over images. Off for one-class caches.",
            show_default=shown("rcs_temperature"),
        ),
    ] = None,
    flip_features: Annotated[
        float | None,
        typer.Option(
            min=0,
            max=1,
            help="Probability of a horizontal flip of both branches' features and the label (an approximation: "
            "README).",
            show_default=shown("flip_features"),
        ),
    ] = None,
    iters: Annotated[int | None, typer.Option(min=1, help="Training iterations.", show_default=shown("iters"))] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            min=1, help="Samples per iteration (per process under torchrun).", show_default=shown("batch_size")
        ),
    ] = None,
    lr: Annotated[float | None, typer.Option(help="AdamW learning rate (head x10).", show_default=shown("lr"))] = None,
    warmup: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Linear warm-up iterations (not given: the recipe's, at most a tenth of --iters).",
            show_default=shown("warmup"),
        ),
    ] = None,
    eval_every: Annotated[
        int | None,
        typer.Option(min=0, help="Evaluate every N iterations (0: only at the end).", show_default=shown("eval_every")),
    ] = None,
    ckpt_every: Annotated[
        int | None, typer.Option(min=1, help="Checkpoint every N iterations.", show_default=shown("ckpt_every"))
    ] = None,
    keep_checkpoints: Annotated[
        int | None,
        typer.Option(
            help="Checkpoints kept, the newest (at least 2: a damaged newest one falls back to the one before).",
            show_default=shown("keep_checkpoints"),
        ),
    ] = None,
    save_best: Annotated[
        str | None,
        typer.Option(
            metavar="TARGET",
            help="Also keep the weights of the best mIoU on this evaluation target (its folder name or cache): "
            "best.safetensors, its iteration and score in best.json.",
        ),
    ] = None,
    log: Annotated[
        TrainLog | None,
        typer.Option(
            help="Also write the curves for TensorBoard under <run>/tensorboard/ (pip install "
            "'diffseg[tensorboard]'); metrics.jsonl is written either way."
        ),
    ] = None,
    read_threads: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Reader threads that prefetch batches (0: read in the training thread, no prefetch).",
            show_default=shown("workers"),
        ),
    ] = None,
    old_workers: Annotated[int | None, typer.Option("--workers", min=0, hidden=True)] = None,
    in_memory: Annotated[
        bool | None,
        typer.Option(help="Load the selected features into RAM first.", show_default=shown("in_memory")),
    ] = None,
    sync_bn: Annotated[
        bool | None,
        typer.Option(
            help="Under torchrun on GPUs: the head's BatchNorm statistics over all processes (SyncBatchNorm).",
            show_default=shown("sync_bn"),
        ),
    ] = None,
    device: DeviceOpt = None,
    seed: Annotated[
        int | None,
        typer.Option(help="Seed for init, sampling order and dropout.", show_default=shown("seed")),
    ] = None,
    seeds: Annotated[
        str | None,
        typer.Option(
            help="Train one run per seed (e.g. 0,1,2) under --out/seed-<k>/ and write seeds.json/seeds.md "
            "(mean +- std per target)."
        ),
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out (or the latest run of this cache).")] = False,
    allow_partial: PartialOpt = False,
) -> None:
    """Stage two: fit the DIFF fusion block and DAFormer head from a cache (never loads the U-Net).

    --resume keeps the run's recorded value of every option not given; a given one that would change the result is refused.
    """
    from diffseg.stages.train import job as stage

    options = from_file(
        config,
        read_file,
        dict(
            cache=cache,
            recipe=recipe,
            eval_caches=eval_cache or None,
            layers=csv(layers),
            save_steps=ints(save_steps),
            kinds=csv(kinds),
            branches=csv(branches),
            fusion=fusion,
            consistency=consistency,
            w_cond=w_cond,
            w_uncond=w_uncond,
            w_cons=w_cons,
            detach_teacher=detach_teacher,
            rcs_temperature=rcs_temperature,
            flip_features=flip_features,
            iters=iters,
            batch_size=batch_size,
            lr=lr,
            warmup=warmup,
            eval_every=eval_every,
            ckpt_every=ckpt_every,
            keep_checkpoints=keep_checkpoints,
            save_best=save_best,
            log=log,
            workers=threads(read_threads, old_workers),
            in_memory=in_memory,
            sync_bn=sync_bn,
            device=device,
            seed=seed,
        ),
    )
    cache = required_cache(options, config)
    run_options: dict[str, Any] = dict(out=out, resume=resume) | ({"allow_partial": True} if allow_partial else {})
    if seeds is not None:
        from diffseg.stages.runs.seeds import parse_seeds

        if seed is None:  # --seeds replaces the file's seed
            options.pop("seed", None)
        stage.main_seeds(cache=cache, seeds=parse_seeds(seeds), **run_options, **options)
    else:
        stage.main(cache=cache, **run_options, **options)
