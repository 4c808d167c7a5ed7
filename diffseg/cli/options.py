"""Option types and value parsers that several commands share, each written once.

Choices come from the library's own value lists. Where the list lives in a module that imports
torch or numpy (which `diffseg --help` must not), it is restated here and
tests/test_cli_choices.py keeps the two equal.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeAlias

import typer

from diffseg.cli.errors import warn
from diffseg.core.errors import DiffsegError
from diffseg.pipeline.config import ENCODE_MODES, PRESETS
from diffseg.stages.demo.config import SIZES
from diffseg.stages.extract.config import MAPILLARY_MAPS
from diffseg.stages.extract.config import default as extract_default
from diffseg.stages.extract.recipe import RECIPES
from diffseg.stages.train.config import LOGS
from diffseg.stages.train.config import RECIPES as TRAIN_RECIPES

# Lists of heavy modules, kept equal to theirs by tests/test_cli_choices.py.
BUILTIN_DATASETS = (
    "gtav",
    "synthia",
    "cityscapes",
    "bdd100k",
    "mapillary",
    "acdc",
    "darkzurich",
    "folder",
    "demo",
)  # data
# and the names of installed adapters of the `diffseg.datasets` entry point group (data/plugins.py; names
# only: loading them waits until one is used)
DATASETS = BUILTIN_DATASETS + tuple(
    sorted({ep.name for ep in metadata.entry_points(group="diffseg.datasets")} - set(BUILTIN_DATASETS))
)
UNCOND_PROMPTS = ("empty", "classes")  # pipeline.prompts
CONSISTENCY = ("l2", "kl", "kl-ref", "none")  # nn.losses
FUSIONS = ("reference", "light")  # nn.config.FUSION_PRESETS
DEVICES = ("auto", "cpu", "cuda")  # stages.device


def choices(name: str, values: Iterable[str]) -> type[enum.Enum]:
    """A choice type for typer, its members the library's values (a command passes `.value` on)."""
    return enum.Enum(name, {v: v for v in values}, type=str)  # type: ignore[return-value]


if TYPE_CHECKING:  # mypy sees the strings the commands pass on
    DatasetName: TypeAlias = str
    Preset: TypeAlias = str
    MapillaryMap: TypeAlias = str
    UncondPrompt: TypeAlias = str
    Recipe: TypeAlias = str
    Encode: TypeAlias = str
    Fusion: TypeAlias = str
    TrainRecipe: TypeAlias = str
    Consistency: TypeAlias = str
    DemoSize: TypeAlias = str
    Device: TypeAlias = str
    TrainLog: TypeAlias = str
else:
    DatasetName = choices("DatasetName", DATASETS)
    Preset = choices("Preset", PRESETS)
    MapillaryMap = choices("MapillaryMap", MAPILLARY_MAPS)
    UncondPrompt = choices("UncondPrompt", UNCOND_PROMPTS)
    Recipe = choices("Recipe", RECIPES)
    Encode = choices("Encode", ENCODE_MODES)
    Fusion = choices("Fusion", FUSIONS)
    TrainRecipe = choices("TrainRecipe", TRAIN_RECIPES)
    Consistency = choices("Consistency", CONSISTENCY)
    DemoSize = choices("DemoSize", SIZES)
    Device = choices("Device", DEVICES)
    TrainLog = choices("TrainLog", LOGS)


def given(**options: Any) -> dict[str, Any]:
    """Keywords for a stage: the options the user gave (choices as their values), None ones left out."""
    return {k: getattr(v, "value", v) for k, v in options.items() if v is not None}


def renamed(new: str, old: str, value: Any, old_value: Any) -> Any:
    """The value of an option renamed from `old` to `new`: the old spelling is still accepted for one
    release, with a one-line warning naming the new one."""
    if old_value is None:
        return value
    if value is not None:
        raise typer.BadParameter(f"give {new} (or its old name {old}), not both")
    warn(f"{old} is now {new}; the old name will be removed in the next release")
    return old_value


# Value parsers ---------------------------------------------------------------------------------
def cache_location(value):
    """A cache folder or an fsspec URL (s3://, gs://, file://), kept as a string (Path folds `//`);
    a local folder must exist (a usage error, exit 2, as `exists=True` gives)."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return [cache_location(v) for v in value]
    from diffseg.core.location import is_local, local_path

    if is_local(value) and not local_path(value).is_dir():
        raise typer.BadParameter(f"{value} is not an existing cache folder")
    return str(value)


def csv(value: str | None) -> tuple[str, ...] | None:
    return None if value is None else tuple(v.strip() for v in value.split(",") if v.strip())


def ints(value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        return tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated integers, got {value!r}") from None


def shard(value: str | None) -> tuple[int, int] | None:
    from diffseg.core.errors import DiffsegError
    from diffseg.stages.extract.share import parse_shard

    if value is None:
        return None
    try:
        return parse_shard(value)
    except DiffsegError as err:
        raise typer.BadParameter(str(err)) from None


def size(value: str | None) -> tuple[int, int] | None:
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


# Shared option declarations ----------------------------------------------------------------------
DatasetOpt = Annotated[
    DatasetName,
    typer.Option(
        "--dataset",
        "-d",
        help="Dataset adapter (layouts: README; a dataset of your own: folder, docs/guides/custom-dataset.md).",
    ),
]
RootOpt = Annotated[
    Path | None,
    typer.Option(help="Dataset root. Default: $DIFFSEG_DATA/<folder> or data/<folder> (gta, synthia, ...)."),
]
SPLIT_HELP = "train | val (demo also: val-night, val-fog, and dev for tuning)."
SplitFileOpt = Annotated[
    Path | None,
    typer.Option(exists=True, dir_okay=False, help="Text file of sample ids, one per line, restricting the split."),
]
MapOpt = Annotated[
    MapillaryMap | None,
    typer.Option(
        help="Mapillary 66->19 convention: A (RobustNet/HRDA) or B (Rein).",
        show_default=extract_default("mapillary_map"),
    ),
]
CondOpt = Annotated[
    str | None, typer.Option(help="ACDC conditions to keep, e.g. night or fog,rain (per-condition layout only).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
DeviceOpt = Annotated[
    Device | None, typer.Option(help="auto (the default) picks cuda when available.", show_default=False)
]
CACHE_HELP = "Cache folder or fsspec URL (s3://bucket/cache/name, gs://..., file://...)."
PartialOpt = Annotated[
    bool,
    typer.Option(
        help="Use a cache whose samples are not all written yet (pending: extraction running or interrupted): its "
        "complete samples are read and the run records which. Without it such a cache is refused."
    ),
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        exists=True,
        dir_okay=False,
        help="Config file (TOML; docs/guides/configs.md): its values replace the defaults, the options given "
        "here replace its values. A run's config.toml reruns it.",
    ),
]


def from_file(config: Path | None, read: Callable[[Path], dict], flags: dict[str, Any]) -> dict[str, Any]:
    """The options a command runs with: the config file's (`read`: its table as given options), replaced by
    the flags given (`flags`: None for a flag not given). Defaults < file < command line."""
    return {**(read(config) if config is not None else {}), **given(**flags)}


def required_cache(options: dict[str, Any], config: Path | None) -> str:
    """The training cache: --cache, else the config file's `cache`; a one-line error when neither gives it."""
    cache = options.pop("cache", None)
    if cache is None:
        where = f"`cache` in the config file {config}" if config is not None else "--config FILE with a `cache`"
        raise DiffsegError(f"no training cache: give --cache or {where}")
    return str(cache)


CacheArg = Annotated[str, typer.Argument(callback=cache_location, help=CACHE_HELP)]
