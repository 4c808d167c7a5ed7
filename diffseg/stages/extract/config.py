"""The options of `diffseg extract` and their defaults, written once: `ExtractConfig`.

The command line gives only the options the user typed (`ExtractConfig(**given)`), the demo,
the benchmarks and the tests build one the same way, and `plan.build_plan` resolves it into
the `ExtractPlan` a run executes. An option left `None` is resolved by the plan: the recipe's
value (recipe.py) for the recipe-decided options, the preset's for the trajectory options, the
dataset's for the sizes, the split's for the branches. A default written anywhere else would be
a second, diverging truth (tests/test_extract_defaults.py checks).

A config is a plain record of plain values (strings, numbers, booleans, tuples, None), so
`to_dict`/`from_dict` round-trip it through JSON or TOML. Light on purpose: no torch, no numpy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

from diffseg.core import tomlfile
from diffseg.core.errors import DiffsegError
from diffseg.core.records import from_record
from diffseg.pipeline.config import ENCODE_MODES, PRESETS
from diffseg.stages.extract.recipe import RECIPES

DEFAULT_MODEL = "stabilityai/stable-diffusion-2-1"
MAPILLARY_MAPS = ("A", "B")  # Mapillary 66 -> 19 conventions: RobustNet/HRDA, Rein (data/mapillary.py)
_PATHS = ("root", "split_file", "out", "descriptions")  # given as str or Path, kept as str
# sequences kept as tuples (a TOML or JSON list arrives as a list)
_TUPLES = (
    "conditions",
    "steps",
    "save_steps",
    "layers",
    "kinds",
    "resolution",
    "scale",
    "branches",
    "classes",
    "shard",
)


@dataclass(frozen=True, kw_only=True)
class ExtractConfig:
    """Every option of `diffseg extract` (the `--option` of each field is its name, dashed);
    `dry_run` is not one: it decides what the command does with a config, not the config."""

    # the data
    dataset: str  # adapter name (diffseg.data.DATASET_NAMES)
    root: str | None = None  # None: $DIFFSEG_DATA/<folder> or data/<folder>
    split: str = "train"  # "train" gives a training cache (crops, both branches); any other an evaluation one
    split_file: str | None = None  # sample ids restricting the split
    mapillary_map: str = "A"  # MAPILLARY_MAPS
    conditions: tuple[str, ...] | None = None  # ACDC conditions to keep
    limit: int | None = None  # only the first N samples in sorted id order
    out: str | None = None  # cache folder or fsspec URL; None: plan.default_out
    # the model and the feature set
    model: str = DEFAULT_MODEL  # tiny | mini | sd21-random | a diffusers folder | a hub id in the local cache
    recipe: str = "diffseg"  # where the options below left None come from (recipe.RECIPES)
    preset: str | None = None  # pipeline.config.PRESETS
    steps: tuple[int, ...] | None = None  # evaluated timesteps (None: the preset's)
    save_steps: tuple[int, ...] | None = None  # saved timesteps, cache order
    layers: tuple[str, ...] | None = None
    kinds: tuple[str, ...] | None = None  # res, blk, xattn
    resolution: tuple[int, int] | None = None  # (W, H) fed to the VAE; None: the dataset's
    scale: tuple[int, int] | None = None  # training caches: image fitted inside (W, H) before cropping
    views: int | None = None  # seeded crops per training image
    photometric: bool | None = None  # mmseg's PhotoMetricDistortion on training views
    branches: tuple[str, ...] | None = None  # None: uncond,cond for training caches, uncond otherwise
    uncond_prompt: str = "empty"  # "empty" | "classes" (pipeline.prompts.UNCOND_PROMPTS)
    encode: str | None = None  # pipeline.config.ENCODE_MODES
    raw_eps: bool | None = None
    blk_sum: bool | None = None
    classes: tuple[str, ...] | None = None  # names or train ids; None: the recipe's (diffseg: all 19)
    descriptions: str | None = None  # JSON {class: description}; None: the recipe's
    seed: int = 0
    # how the cache is written and the work is spread
    codec: str = "raw"  # feature codec spec (cache.codecs)
    # images per U-Net call in the uncond branch (recorded as batch_size); None: 1, or plan.EVAL_CUDA_BATCH for
    # evaluation caches on CUDA (plan.default_batch_size)
    unet_batch: int | None = None
    joint_branches: bool = False  # both branches' rows of a step in one U-Net call (recorded: it rounds differently)
    block_minutes: float = 30.0  # dask: a block's time budget; a lost worker redoes at most that much
    sample_seconds: float | None = None  # dask: seconds per sample that size the blocks; None: measured first
    device: str = "auto"  # auto | cpu | cuda
    dask_workers: int | None = None  # a local dask cluster of N workers
    scheduler: str | None = None  # an existing dask scheduler's address
    shard: tuple[int, int] | None = None  # (I, N): extract share I of N
    strict: bool = False  # stop at the first bad sample instead of skipping it

    def __post_init__(self) -> None:
        for name in _PATHS:  # paths as strings: the record stays plain (and JSON/TOML-ready)
            value = getattr(self, name)
            if isinstance(value, Path):
                object.__setattr__(self, name, str(value))
        for name in _TUPLES:
            value = getattr(self, name)
            if value is not None and not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))
        self.validate()

    def validate(self) -> None:
        """Refuse values no plan could use, naming the option (values that need the dataset or the
        model are checked by the plan)."""
        _one_of("--recipe", self.recipe, RECIPES)
        _one_of("--preset", self.preset, PRESETS)
        _one_of("--encode", self.encode, ENCODE_MODES)
        _one_of("--mapillary-map", self.mapillary_map, MAPILLARY_MAPS)
        for name in ("limit", "views", "unet_batch", "dask_workers"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise DiffsegError(f"--{name.replace('_', '-')} {value}: expected at least 1")
        for name in ("resolution", "scale"):
            size = getattr(self, name)
            if size is not None and (len(size) != 2 or min(size) <= 0):
                raise DiffsegError(f"--{name} {size}: expected two positive sizes (W, H)")
        if self.shard is not None and (len(self.shard) != 2 or not 0 <= self.shard[0] < self.shard[1]):
            raise DiffsegError(f"--shard {self.shard}: expected (I, N) with 0 <= I < N")
        if not self.block_minutes > 0 or (self.sample_seconds is not None and not self.sample_seconds > 0):
            raise DiffsegError(
                f"--block-minutes {self.block_minutes} and --sample-seconds {self.sample_seconds}: expected positive numbers"
            )
        if self.dask_workers is not None and self.scheduler is not None:
            raise DiffsegError("give --dask-workers or --scheduler, not both")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ExtractConfig:
        return from_record(cls, d)  # lists become tuples in __post_init__


_FIELDS = {f.name: f for f in fields(ExtractConfig)}


def option_names() -> tuple[str, ...]:
    """The config's fields, in order (each is the `extract` option of the same name)."""
    return tuple(_FIELDS)


def default(name: str):
    """ExtractConfig's default of one option (for help texts)."""
    return _FIELDS[name].default


# A cache's config.toml, beside it (`<cache>.config.toml`): the ExtractConfig it was extracted with, as a
# config file (core/tomlfile.py);
# `extract --config` with another --out extracts the same cache again. The options that spread the work
# (device, dask, shard) are comments: they change speed, not the features; a None option is resolved by
# the plan (recipe, preset, dataset), the same way again.
CONFIG_SUFFIX = ".config.toml"
_COMMENTED = ("device", "dask_workers", "scheduler", "shard", "strict", "block_minutes", "sample_seconds")
_HEADER = """The options diffseg extract wrote this cache with (the cache record is the authority).
Extract it again: diffseg extract --config THIS_FILE --out NEW_CACHE."""


def read_file(path: str | Path) -> dict:
    """The [extract] table of a config file as given options (ExtractConfig fields)."""
    return tomlfile.read_table(path, "extract", ExtractConfig)


def file_text(config: ExtractConfig) -> str:
    return tomlfile.dumps({"extract": config.to_dict()}, header=_HEADER, commented=_COMMENTED)


def _one_of(option: str, value: str | None, allowed: tuple[str, ...]) -> None:
    if value is not None and value not in allowed:
        raise DiffsegError(f"{option} {value}: expected one of {', '.join(allowed)}")
