"""The `diffseg` command line: parse options, call a stage; nothing else.

Heavy imports (torch, diffusers, zarr, dask) happen inside the commands so that
`diffseg --help` answers instantly. Every stage entry point is `diffseg.stages.<job>.main`
and takes the options below as keywords. A `DiffsegError` raised anywhere becomes one
line on stderr and exit code 1; typer's parser errors exit 2.
"""

from __future__ import annotations

import enum
import functools
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from diffseg.core.errors import DiffsegError

# Light (a dataclass, no torch): --help shows TrainConfig's defaults instead of restating them.
from diffseg.stages.train.config import ABLATION_CELL
from diffseg.stages.train.config import default as train_default

app = typer.Typer(
    help=(
        "Domain-generalised semantic segmentation from frozen Stable Diffusion features.\n\n"
        "Stage one (`extract`) runs the frozen U-Net trajectory once per image and writes a "
        "Zarr feature cache; stage two (`train`) fits the fusion block and head from that "
        "cache. Start with `diffseg demo` (built-in tiny model and demo dataset)."
    ),
    pretty_exceptions_show_locals=False,
    no_args_is_help=True,
    add_completion=False,
)
data_app = typer.Typer(help="Inspect datasets.", no_args_is_help=True)
cache_app = typer.Typer(help="Inspect feature caches.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(cache_app, name="cache")


class DatasetName(str, enum.Enum):
    gtav = "gtav"
    synthia = "synthia"
    cityscapes = "cityscapes"
    bdd100k = "bdd100k"
    mapillary = "mapillary"
    acdc = "acdc"
    darkzurich = "darkzurich"
    demo = "demo"


class Preset(str, enum.Enum):
    reference = "reference"
    five = "5step"
    one = "1step"
    lite = "lite"


class MapillaryMap(str, enum.Enum):
    A = "A"
    B = "B"


class UncondPrompt(str, enum.Enum):
    empty = "empty"
    classes = "classes"


class Recipe(str, enum.Enum):
    diffseg = "diffseg"
    paper = "paper"


class Encode(str, enum.Enum):
    mean = "mean"
    sample = "sample"


class Fusion(str, enum.Enum):
    reference = "reference"
    light = "light"


class TrainRecipe(str, enum.Enum):  # stages/train/config.py RECIPES
    diffseg = "diffseg"
    paper = "paper"


class Consistency(str, enum.Enum):
    l2 = "l2"
    kl = "kl"
    kl_ref = "kl-ref"
    none = "none"


class DemoSize(str, enum.Enum):
    small = "small"
    full = "full"


class Device(str, enum.Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


@app.callback()
def root(
    threads: Annotated[
        int | None,
        typer.Option(
            min=1,
            help=(
                "CPU threads for torch's intra-op pool (or DIFFSEG_THREADS). Default: OMP_NUM_THREADS "
                "if set, else the cores available to this process (affinity mask, cgroup quota); idle threads sleep "
                "(OMP_WAIT_POLICY=PASSIVE unless set), so a busy shared machine does not stall runs."
            ),
        ),
    ] = None,
) -> None:
    """Thread settings first: before any command imports torch (core/threads.py)."""
    from diffseg.core import threads as thread_settings

    if "torch" in sys.modules and threads is None:
        return  # called in-process (tests, a Python session): leave the host's settings alone
    try:
        thread_settings.apply(threads)
    except DiffsegError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None


def user_errors(func):
    """Turn a DiffsegError into one line on stderr and exit code 1 (no traceback)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except DiffsegError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(1) from None

    return wrapper


# Shared option declarations -------------------------------------------------------------
DatasetOpt = Annotated[DatasetName, typer.Option("--dataset", "-d", help="Dataset adapter (layouts: README).")]
RootOpt = Annotated[
    Path | None,
    typer.Option(help="Dataset root. Default: $DIFFSEG_DATA/<folder> or data/<folder> (gta, synthia, ...)."),
]
SplitOpt = Annotated[str, typer.Option(help="train | val (demo also: val-night, val-fog, and dev for tuning).")]
SplitFileOpt = Annotated[
    Path | None,
    typer.Option(exists=True, dir_okay=False, help="Text file of sample ids, one per line, restricting the split."),
]
MapOpt = Annotated[MapillaryMap, typer.Option(help="Mapillary 66->19 convention: A (RobustNet/HRDA) or B (Rein).")]
CondOpt = Annotated[
    str | None, typer.Option(help="ACDC conditions to keep, e.g. night or fog,rain (per-condition layout only).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]


def _cache_location(value):
    """A cache folder or an fsspec URL (s3://, gs://, file://), kept as a string (Path folds `//`);
    a local folder must exist (a usage error, exit 2, as `exists=True` gives)."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return [_cache_location(v) for v in value]
    from diffseg.core.location import is_local, local_path

    if is_local(value) and not local_path(value).is_dir():
        raise typer.BadParameter(f"{value} is not an existing cache folder")
    return str(value)


CACHE_HELP = "Cache folder or fsspec URL (s3://bucket/cache/name, gs://..., file://...)."
PARTIAL_HELP = (
    "Use a cache whose samples are not all written yet (pending: extraction running or interrupted): its complete "
    "samples are read and the run records which. Without it such a cache is refused."
)
CacheArg = Annotated[str, typer.Argument(callback=_cache_location, help=CACHE_HELP)]


def _csv(value: str | None) -> tuple[str, ...] | None:
    return None if value is None else tuple(v.strip() for v in value.split(",") if v.strip())


def _ints(value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        return tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated integers, got {value!r}") from None


def _shard(value: str) -> tuple[int, int]:
    from diffseg.core.errors import DiffsegError
    from diffseg.stages.extract.share import parse_shard

    try:
        return parse_shard(value)
    except DiffsegError as err:
        raise typer.BadParameter(str(err)) from None


def _size(value: str | None) -> tuple[int, int] | None:
    """Parse WxH; the U-Net needs multiples of 64 (checked by the stage that knows why)."""
    if value is None:
        return None
    try:
        w, h = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise typer.BadParameter(f"expected WxH such as 512x512, got {value!r}") from None
    if w <= 0 or h <= 0:
        raise typer.BadParameter(f"sizes must be positive, got {value!r}")
    return (w, h)


# Stage one --------------------------------------------------------------------------------
@app.command()
@user_errors
def extract(
    dataset: DatasetOpt,
    root: RootOpt = None,
    split: SplitOpt = "train",
    out: Annotated[
        str | None,
        typer.Option(help="Cache dir or fsspec URL (s3://, gs://). Default cache/<name> or cache/<name>-<split>."),
    ] = None,
    model: Annotated[
        str, typer.Option(help="tiny | sd21-random | a diffusers dir | a hub id in the local cache.")
    ] = "stabilityai/stable-diffusion-2-1",
    recipe: Annotated[
        Recipe,
        typer.Option(
            help="Defaults of the options below: diffseg (lite, 19 classes, v->eps, posterior mean) or paper "
            "(every reference-code choice: reference preset, 5 classes and their descriptions, raw output as eps, "
            "posterior sample, the reference's blk sum, 2 photometric views). Options given override it."
        ),
    ] = Recipe.diffseg,
    preset: Annotated[
        Preset | None,
        typer.Option(help="Feature set: lite (diffseg recipe, 13 MiB/512 crop), 5step, 1step, reference (236 MiB)."),
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
        typer.Option(min=1, help="Seeded crops (and flips) stored per training image (recipe: diffseg 1, paper 2)."),
    ] = None,
    photometric: Annotated[
        bool | None,
        typer.Option(
            "--photometric/--no-photometric",
            help="Training views: mmseg's PhotoMetricDistortion (brightness +-32, contrast and saturation "
            "0.5-1.5, hue +-18, each with probability 0.5), seeded per view. On in both recipes.",
        ),
    ] = None,
    branches: Annotated[str | None, typer.Option(help="uncond,cond (default for train) or uncond.")] = None,
    uncond_prompt: Annotated[
        UncondPrompt, typer.Option(help="empty (paper) or classes (label-free class list: gives xattn).")
    ] = UncondPrompt.empty,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N samples in sorted id order.")] = None,
    split_file: SplitFileOpt = None,
    mapillary_map: MapOpt = MapillaryMap.A,
    conditions: CondOpt = None,
    workers: Annotated[
        int | None, typer.Option(min=1, help="Run a local dask cluster of N workers (one per GPU on CUDA).")
    ] = None,
    scheduler: Annotated[str | None, typer.Option(help="Join an existing dask scheduler at ADDRESS.")] = None,
    shard: Annotated[
        str | None, typer.Option(help="I/N: extract only share I of N (job arrays without dask), e.g. 0/4.")
    ] = None,
    device: Annotated[Device, typer.Option(help="auto picks cuda when available.")] = Device.auto,
    seed: Annotated[int, typer.Option(help="Seed of every random draw (crops, VAE sample, eta noise).")] = 0,
    encode: Annotated[
        Encode | None,
        typer.Option(help="Latent from the VAE posterior: mean (diffseg recipe) or sample (seeded; paper)."),
    ] = None,
    raw_eps: Annotated[
        bool | None,
        typer.Option(
            "--raw-eps/--no-raw-eps", help="Treat the U-Net output as epsilon even for v-prediction (paper recipe)."
        ),
    ] = None,
    blk_sum: Annotated[
        bool | None,
        typer.Option(
            "--blk-sum/--no-blk-sum",
            help="blk as the reference sums it: 2 b_uncond + sum_k b_k in cond, 2 b_uncond in uncond (paper recipe).",
        ),
    ] = None,
    classes: Annotated[
        str | None,
        typer.Option(
            help="Active classes for masked prompts (names or train ids). Default: all 19 (paper: sidewalk, "
            "wall, rider, truck, train)."
        ),
    ] = None,
    descriptions: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="JSON {class: description} replacing the defaults (paper: the reference's, shipped with diffseg).",
        ),
    ] = None,
    strict: Annotated[
        bool, typer.Option(help="Stop at the first bad sample (default: skip, warn and record).")
    ] = False,
    codec: Annotated[
        str | None,
        typer.Option(
            help="Feature codec: raw (default), bitround[:keepbits=7], int8[:pct=99.9], pca[:k=32,calib=16,seed=0]; "
            "per-layer overrides after ';', e.g. 'pca:k=32;up1.*=int8' (README: Feature codecs)."
        ),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Images per U-Net call in the uncond branch (default 1; 4 for evaluation caches on CUDA). "
            "Recorded: batched calls round differently, so a resume must use the same.",
        ),
    ] = None,
    joint_branches: Annotated[
        bool,
        typer.Option(
            help="Walk both branches together: each step's uncond and cond rows in one U-Net call (fewer, "
            "larger calls on a GPU). Recorded: it rounds differently, so a resume must use the same.",
        ),
    ] = False,
    block_minutes: Annotated[
        float | None,
        typer.Option(
            min=0.01,
            help="Dask: minutes a block of samples should take (default 30): a lost worker redoes at most one block.",
        ),
    ] = None,
    sample_seconds: Annotated[
        float | None,
        typer.Option(
            min=0.001,
            help="Dask: seconds one sample takes, to size the blocks (default: measured on a first block per worker).",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option(help="Print bytes per sample (per codec), the total and the free disk; write nothing.")
    ] = False,
) -> None:
    """Stage one: run the frozen U-Net trajectory once per image and write the feature cache.

    `diffseg extract --dataset gtav` reads data/gta and writes cache/gtav. Rerunning the same
    command resumes; a different config on an existing cache is refused.
    """
    if workers is not None and scheduler is not None:
        raise typer.BadParameter("give --workers or --scheduler, not both")
    from diffseg.stages.extract import job as stage

    stage.main(
        dataset=dataset.value,
        root=root,
        split=split,
        out=out,
        model=model,
        recipe=recipe.value,
        preset=None if preset is None else preset.value,
        steps=_ints(steps),
        save_steps=_ints(save_steps),
        layers=_csv(layers),
        kinds=_csv(kinds),
        resolution=_size(resolution),
        scale=_size(scale),
        views=views,
        photometric=photometric,
        branches=_csv(branches),
        uncond_prompt=uncond_prompt.value,
        limit=limit,
        split_file=split_file,
        mapillary_map=mapillary_map.value,
        conditions=_csv(conditions),
        workers=workers,
        scheduler=scheduler,
        shard=None if shard is None else _shard(shard),
        device=device.value,
        seed=seed,
        encode=None if encode is None else encode.value,
        raw_eps=raw_eps,
        blk_sum=blk_sum,
        classes=_csv(classes),
        descriptions=descriptions,
        strict=strict,
        codec=codec,
        batch_size=batch_size,
        joint_branches=joint_branches,
        block_minutes=block_minutes,
        sample_seconds=sample_seconds,
        dry_run=dry_run,
    )


# Datasets and caches ----------------------------------------------------------------------
@data_app.command("check")
@user_errors
def data_check(
    dataset: DatasetOpt,
    root: RootOpt = None,
    split: SplitOpt = "train",
    split_file: SplitFileOpt = None,
    mapillary_map: MapOpt = MapillaryMap.A,
    conditions: CondOpt = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Check only the first N samples.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Count samples, histogram the classes, list every problem with its file. Exit 1 on problems."""
    from diffseg.stages.tools import datacheck as stage

    code = stage.main(
        dataset=dataset.value,
        root=root,
        split=split,
        split_file=split_file,
        mapillary_map=mapillary_map.value,
        conditions=_csv(conditions),
        limit=limit,
        as_json=as_json,
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
) -> None:
    """PCA-to-RGB pictures of the cached features per layer and step, and xattn heat maps."""
    from diffseg.stages.tools import cache as stage

    raise typer.Exit(stage.show(cache=cache, out=out, sample=sample))


@cache_app.command("migrate")
@user_errors
def cache_migrate(cache: CacheArg) -> None:
    """Rewrite a format-1 cache's attributes as format 2, in place (arrays untouched, atomic)."""
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


# Stage two --------------------------------------------------------------------------------
# Training options default to None ("not given"): the job takes TrainConfig's default (or, on
# --resume, the recorded value). `_shown` puts TrainConfig's defaults into --help; never a literal.
def _shown(name: str, table: dict | None = None) -> str:
    value = (table or {}).get(name, train_default(name))
    return str(value).lower() if isinstance(value, bool) else str(value)


def _given(**options) -> dict:
    """Keywords for a stage: the options the user gave (enums as their values), None ones left out."""
    return {k: getattr(v, "value", v) for k, v in options.items() if v is not None}


@app.command()
@user_errors
def train(
    cache: Annotated[str, typer.Option(callback=_cache_location, help="Training feature cache. " + CACHE_HELP)],
    out: Annotated[Path | None, typer.Option(help="Run dir. Default runs/<cache name>-<YYYYmmdd-HHMMSS>.")] = None,
    eval_cache: Annotated[
        list[str] | None,
        typer.Option(
            callback=_cache_location,
            help="Evaluate on this cache (folder or URL) every --eval-every iterations (repeatable).",
        ),
    ] = None,
    recipe: Annotated[
        TrainRecipe | None,
        typer.Option(
            help="Defaults for the options not given: diffseg, or paper (the reference code's training choices; "
            "README).",
            show_default=_shown("recipe"),
        ),
    ] = None,
    layers: Annotated[str | None, typer.Option(help="Subset of the cache's layers.")] = None,
    save_steps: Annotated[str | None, typer.Option(help="Subset of the cache's saved timesteps.")] = None,
    kinds: Annotated[str | None, typer.Option(help="Subset of the cache's kinds: res,blk,xattn.")] = None,
    branches: Annotated[str | None, typer.Option(help="Branches to train on (default: all the cache holds).")] = None,
    fusion: Annotated[
        Fusion | None, typer.Option(help="Fusion widths: reference (paper) or light.", show_default=_shown("fusion"))
    ] = None,
    consistency: Annotated[
        Consistency | None,
        typer.Option(
            help="IPKL consistency: l2 (MSE on logits), kl (per-pixel mean), kl-ref (the reference code's: "
            "batchmean sum x 0.1, clamped at 0.5), none.",
            show_default=_shown("consistency"),
        ),
    ] = None,
    w_cond: Annotated[
        float | None, typer.Option(help="Weight of the conditional CE.", show_default=_shown("w_cond"))
    ] = None,
    w_uncond: Annotated[
        float | None, typer.Option(help="Weight of the unconditional CE.", show_default=_shown("w_uncond"))
    ] = None,
    w_cons: Annotated[
        float | None, typer.Option(help="Weight of the consistency term.", show_default=_shown("w_cons"))
    ] = None,
    detach_teacher: Annotated[
        bool | None,
        typer.Option(
            help="Detach the conditional side in the consistency term.", show_default=_shown("detach_teacher")
        ),
    ] = None,
    rcs_temperature: Annotated[
        float | None,
        typer.Option(
            min=0,
            help="Rare-class sampling temperature (DAFormer's RCS); 0: uniform over images. Off for one-class caches.",
            show_default=_shown("rcs_temperature"),
        ),
    ] = None,
    flip_features: Annotated[
        float | None,
        typer.Option(
            min=0,
            max=1,
            help="Probability of a horizontal flip of both branches' features and the label (an approximation: "
            "README).",
            show_default=_shown("flip_features"),
        ),
    ] = None,
    iters: Annotated[int | None, typer.Option(min=1, help="Training iterations.", show_default=_shown("iters"))] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            min=1, help="Samples per iteration (per process under torchrun).", show_default=_shown("batch_size")
        ),
    ] = None,
    lr: Annotated[float | None, typer.Option(help="AdamW learning rate (head x10).", show_default=_shown("lr"))] = None,
    warmup: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Linear warm-up iterations (default: the recipe's 1500, at most a tenth of --iters).",
            show_default=False,
        ),
    ] = None,
    eval_every: Annotated[
        int | None,
        typer.Option(
            min=0, help="Evaluate every N iterations (0: only at the end).", show_default=_shown("eval_every")
        ),
    ] = None,
    ckpt_every: Annotated[
        int | None, typer.Option(min=1, help="Checkpoint every N iterations.", show_default=_shown("ckpt_every"))
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Reader threads that prefetch batches (0: read in the training thread, no prefetch).",
            show_default=_shown("workers"),
        ),
    ] = None,
    in_memory: Annotated[
        bool | None,
        typer.Option(help="Load the selected features into RAM first.", show_default=_shown("in_memory")),
    ] = None,
    sync_bn: Annotated[
        bool | None,
        typer.Option(
            help="Under torchrun on GPUs: the head's BatchNorm statistics over all processes (SyncBatchNorm).",
            show_default=_shown("sync_bn"),
        ),
    ] = None,
    device: Annotated[
        Device | None, typer.Option(help="auto picks cuda when available.", show_default=_shown("device"))
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(help="Seed for init, sampling order and dropout.", show_default=_shown("seed")),
    ] = None,
    seeds: Annotated[
        str | None,
        typer.Option(
            help="Train one run per seed (e.g. 0,1,2) under --out/seed-<k>/ and write seeds.json/seeds.md "
            "(mean +- std per target)."
        ),
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out (or the latest run of this cache).")] = False,
    allow_partial: Annotated[bool, typer.Option(help=PARTIAL_HELP)] = False,
) -> None:
    """Stage two: fit the DIFF fusion block and DAFormer head from a cache (never loads the U-Net).

    --resume keeps the run's recorded value of every option not given; a given one that would change the result is refused.
    """
    from diffseg.stages.train import job as stage

    options = _given(
        recipe=recipe,
        eval_caches=eval_cache or None,
        layers=_csv(layers),
        save_steps=_ints(save_steps),
        kinds=_csv(kinds),
        branches=_csv(branches),
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
        workers=workers,
        in_memory=in_memory,
        sync_bn=sync_bn,
        device=device,
        seed=seed,
    )
    if seeds is not None:
        from diffseg.stages.runs.seeds import parse_seeds

        stage.main_seeds(
            cache=cache, seeds=parse_seeds(seeds), out=out, resume=resume, allow_partial=allow_partial, **options
        )
    else:
        stage.main(cache=cache, out=out, resume=resume, allow_partial=allow_partial, **options)


@app.command("eval")
@user_errors
def evaluate(
    run: Annotated[Path, typer.Option(exists=True, file_okay=False, help="Run directory from `diffseg train`.")],
    cache: Annotated[
        list[str],
        typer.Option(callback=_cache_location, help="Evaluation cache, folder or URL (repeatable: one row each)."),
    ],
    as_json: JsonOpt = False,
    device: Annotated[Device, typer.Option(help="auto picks cuda when available.")] = Device.auto,
    allow_partial: Annotated[bool, typer.Option(help=PARTIAL_HELP)] = False,
) -> None:
    """Score a run on evaluation caches: per-class IoU, mIoU (mIoU16/13 for Synthia runs)."""
    from diffseg.stages import evaluate as stage

    stage.main(run=run, caches=list(cache), as_json=as_json, device=device.value, allow_partial=allow_partial)


@app.command()
@user_errors
def ablate(
    cache: Annotated[str, typer.Option(callback=_cache_location, help="Training cache (with both branches).")],
    eval_cache: Annotated[list[str], typer.Option(callback=_cache_location, help="Target cache (repeatable).")],
    out: Annotated[Path, typer.Option(help="Folder of the ablation runs and tables.")],
    iters: Annotated[
        int | None, typer.Option(min=1, help="Iterations per cell.", show_default=_shown("iters", ABLATION_CELL))
    ] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, show_default=_shown("batch_size", ABLATION_CELL))] = None,
    fusion: Annotated[
        Fusion | None,
        typer.Option(help="Fusion widths for every cell.", show_default=_shown("fusion", ABLATION_CELL)),
    ] = None,
    lr: Annotated[
        float | None,
        typer.Option(help="AdamW learning rate of every cell (head x10).", show_default=_shown("lr", ABLATION_CELL)),
    ] = None,
    warmup: Annotated[
        int | None,
        typer.Option(
            min=0, help="Linear warm-up iterations of every cell.", show_default=_shown("warmup", ABLATION_CELL)
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Reader threads per cell (train --workers); on CUDA train's default.",
            show_default=_shown("workers", ABLATION_CELL),
        ),
    ] = None,
    features: Annotated[bool, typer.Option(help="Also run the feature-selection axis (steps, layers, kinds).")] = True,
    device: Annotated[
        Device | None,
        typer.Option(help="auto picks cuda when available.", show_default=_shown("device", ABLATION_CELL)),
    ] = None,
    seed: Annotated[int | None, typer.Option(show_default=_shown("seed", ABLATION_CELL))] = None,
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
            show_default=_shown("rcs_temperature"),
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
    stage.main(
        cache=cache,
        eval_caches=list(eval_cache),
        out=out,
        features=features,
        **chosen,
        **_given(
            iters=iters,
            batch_size=batch_size,
            fusion=fusion,
            lr=lr,
            warmup=warmup,
            workers=workers,
            device=device,
            seed=seed,
            rcs_temperature=rcs_temperature,
        ),
    )


@app.command()
@user_errors
def predict(
    run: Annotated[Path, typer.Option(exists=True, file_okay=False, help="Run directory from `diffseg train`.")],
    inputs: Annotated[list[Path], typer.Argument(exists=True, help="Images or folders of images.")],
    out: Annotated[Path, typer.Option(help="Output folder for masks and pictures.")],
    model: Annotated[str | None, typer.Option(help="Model for the online trajectory (default: the run's).")] = None,
    resolution: Annotated[
        str | None,
        typer.Option(
            help="Size fed to the U-Net, WxH. Default: each input's aspect ratio within the area of the run's "
            "first evaluation cache's resolution (1024x512 without one), multiples of 64."
        ),
    ] = None,
    labels: Annotated[
        Path | None,
        typer.Option(exists=True, file_okay=False, help="Label files with matching stems (train ids or palette)."),
    ] = None,
    device: Annotated[Device, typer.Option(help="auto picks cuda when available.")] = Device.auto,
) -> None:
    """Segment images: palette PNG masks plus image | prediction (| ground truth) pictures."""
    from diffseg.stages.predict import job as stage

    stage.main(
        run=run,
        inputs=list(inputs),
        out=out,
        model=model,
        resolution=_size(resolution),
        labels=labels,
        device=device.value,
    )


@app.command()
@user_errors
def demo(
    out: Annotated[Path, typer.Option(help="Folder of the report, caches and the main run (DIR/run).")] = Path("demo"),
    size: Annotated[
        DemoSize, typer.Option(help="full (about 10 min on 2 CPU cores) or small (CI, about 1 min).")
    ] = DemoSize.full,
    model: Annotated[
        str | None,
        typer.Option(help="Model of stage one (default: the trained built-in mini; e.g. tiny, or a directory)."),
    ] = None,
    full_grid: Annotated[
        bool, typer.Option(help="Also the feature-selection ablation cells (one seed each: slower).")
    ] = False,
    device: Annotated[Device, typer.Option(help="auto picks cuda when available.")] = Device.auto,
    jobs: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Extractions and trainings run at once, each in its own process with cores/jobs threads "
            "(logs in OUT/logs/). Default: one per available core on a CPU, 1 on a GPU; 1 runs everything here, "
            "in order.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """The whole method end to end on the built-in trained mini model and demo dataset, with a report."""
    from diffseg.stages.demo import job as stage

    stage.main(out=out, size=size.value, model=model, full_grid=full_grid, device=device.value, jobs=jobs)


@app.command()
@user_errors
def pretrain(
    out: Annotated[
        Path, typer.Option(help="Working folder (images, checkpoints, log.txt); the model is written to OUT/model.")
    ] = Path(".pretrain/mini"),
    seed: Annotated[
        int, typer.Option(min=0, max=2**32 - 1, help="Seed of the images, the initialisation, batches and noise.")
    ] = 0,
    quick: Annotated[bool, typer.Option(help="A few steps on a few images: a smoke test, not the recipe.")] = False,
) -> None:
    """Pre-train the built-in `mini` model on the demo world (about an hour on 2 CPU cores).

    Rerun with the same --out to resume after an interruption. The default recipe and seed
    reproduce the shipped weights on the same torch build (2 threads).
    """
    from diffseg.pipeline.pretrain.config import PretrainConfig, quick_config
    from diffseg.stages import pretrain as stage

    model = stage.main(quick_config(seed=seed) if quick else PretrainConfig(seed=seed), out)
    typer.echo(f"model: {model} (use it with --model {model})")


@app.command()
@user_errors
def env() -> None:
    """Versions, devices, and whether xformers kernels actually run (for bug reports)."""
    from diffseg.stages.tools import env as stage

    stage.main()


def main() -> None:
    """Console entry point: user errors become one line and exit 1, never a traceback."""
    try:
        app(standalone_mode=True)
    except DiffsegError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
