"""The resolved configuration of one training run (stage two), as recorded in config.json,
and the one place where the training options' defaults live.

Everything that decides the final weights is here: the cache and the feature selection
it resolved to, the loss weights actually in force, the optimisation schedule, the seed
and the world/accumulation split of a global batch. `device` and `workers` change speed,
never the result, and `stop_at` only simulates an interruption (tests); neither is
compared when a run is resumed.

The command line (`train`, `ablate`) and the jobs take every option as "not given" (None)
unless the user gave it, and build a config with `replace(defaults or recorded, **given)`:
a default written anywhere else would be a second, diverging truth (a test checks).
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path

from diffseg.core import tomlfile
from diffseg.core.errors import DiffsegError
from diffseg.core.records import from_record
from diffseg.stages.train.retention import KEEP, check_keep

# Fields that may differ between the recorded config and a resumed invocation.
RUNTIME_FIELDS = ("device", "workers", "in_memory", "stop_at", "eval_caches", "keep_checkpoints", "log")
LOGS = ("tensorboard",)  # curves written besides metrics.jsonl (`train --log`; curves.py)
_TUPLES = ("eval_caches", "layers", "save_steps", "branches")
# A record written before an option existed ran without it (a resumed old run must not change).
BEFORE_OPTION = {"rcs_temperature": 0.0, "sync_bn": False}


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    cache: str  # training cache path
    recipe: str = "diffseg"  # the recipe whose values the options not given took (RECIPES)
    eval_caches: tuple[str, ...] = ()  # scored every eval_every iterations and at the end
    layers: tuple[str, ...]  # selected layers, cache order
    save_steps: tuple[int, ...]  # selected saved timesteps, cache order
    branches: tuple[str, ...]  # branches read: ("uncond",), ("cond",) or ("uncond", "cond")
    fusion: str = "reference"  # fusion widths preset
    consistency: str = "l2"  # l2 | kl | none (in force: "none" when one branch only)
    w_cond: float = 1.0  # weights in force (0 for a branch not read)
    w_uncond: float = 1.0
    w_cons: float = 1.0
    detach_teacher: bool = False
    rcs_temperature: float = 0.01  # rare-class sampling T (DAFormer); 0: uniform (in force: 0 with < 2 classes)
    flip_features: float = 0.0  # probability of mirroring a sample's features and label (feature-space flip)
    rcs_min_pixels: int | None = None  # pixels of a class an image must hold; None: 3000 x crop area / 512^2
    iters: int = 40000
    batch_size: int = 1  # samples per micro-batch per process
    accum: int = 1  # micro-batches accumulated per iteration per process
    lr: float = 6e-5
    head_lr_mult: float = 10.0  # DAFormer: decode head lr x10
    weight_decay: float = 0.01
    warmup: int = 1500  # linear warm-up iterations (not given: this, at most iters // 10; job.short_run_warmup)
    warmup_ratio: float = 1e-6  # lr factor at iteration 0 (mmcv's linear warm-up)
    clip_norm: float = 5.0
    eval_every: int = 4000  # 0: at the end only
    ckpt_every: int = 2000
    keep_checkpoints: int = KEEP  # newest checkpoints kept (>= 2: a damaged newest one falls back to the one before)
    save_best: str | None = None  # evaluation target (name or cache) whose best mIoU's weights are kept (best.py)
    log_every: int = 10  # metrics.jsonl line every N iterations
    seed: int = 0
    sync_bn: bool = False  # the head's BatchNorm statistics over all DDP ranks (SyncBatchNorm; CUDA only)
    workers: int = 2  # reader threads of the BatchLoader (cache/loader.py)
    in_memory: bool = False
    log: str | None = None  # "tensorboard": curves under <run>/tensorboard/ too (metrics.jsonl stays the record)
    device: str = "auto"  # auto | cpu | cuda[:N]; the record holds the resolved device
    stop_at: int | None = None  # stop (after checkpointing) at this iteration: simulated interruption

    def __post_init__(self):
        if not self.branches:
            raise DiffsegError("no branch selected for training")
        if self.recipe not in RECIPES:
            raise DiffsegError(f"unknown recipe {self.recipe!r} (expected {' or '.join(RECIPES)})")
        if not self.rcs_temperature >= 0:
            raise DiffsegError(f"--rcs-temperature must be >= 0, got {self.rcs_temperature}")
        if not 0 <= self.flip_features <= 1:
            raise DiffsegError(f"--flip-features is a probability in [0, 1], got {self.flip_features}")
        check_keep(self.keep_checkpoints)
        if self.log is not None and self.log not in LOGS:
            raise DiffsegError(f"unknown --log {self.log!r} (expected {' or '.join(LOGS)})")
        if self.iters < 1 or self.batch_size < 1 or self.accum < 1:
            raise DiffsegError(f"iters/batch_size/accum must be >= 1, got {self.iters}/{self.batch_size}/{self.accum}")

    def global_batch(self, world: int) -> int:
        """Samples per iteration over all processes."""
        return self.batch_size * self.accum * world

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        return from_record(cls, {**BEFORE_OPTION, **d}, tuples=_TUPLES)


# A run's config.toml: its resolved config as a config file (core/tomlfile.py), `train --config` reruns it.
# config.json stays the record. The runtime fields that name this machine's resources are written as
# comments: they change speed, never the weights, and another machine has other devices.
CONFIG_TOML = "config.toml"
_COMMENTED = ("device", "workers", "in_memory", "stop_at", "log")
_HEADER = """The resolved configuration of a diffseg training run (config.json is its record).
Rerun it: diffseg train --config config.toml --out NEW_RUN_DIR (the same weights on the same machine).
Runtime options (device, read threads, ...) are comments: they change speed, not the result."""


def read_file(path: str | Path) -> dict:
    """The [train] table of a config file as given options: TrainConfig fields and `kinds` (job.SELECTION)."""
    return tomlfile.read_table(path, "train", TrainConfig, extra={"kinds": tuple[str, ...]})


def write_file(path: str | Path, cfg: TrainConfig) -> None:
    tomlfile.write(path, {"train": cfg.to_dict()}, header=_HEADER, commented=_COMMENTED)


# Recipes (docs/contributing.md §2: a variant is a function returning a config). `diffseg` is TrainConfig's
# defaults; `paper` pins the reference code's training choices (docs/design/method.md §7-8), so they hold
# whatever diffseg's defaults become. Flips stay off in `paper`: the reference flips images before
# the U-Net, which the cached views hold (`extract --views K`), not features.
def diffseg_recipe(**required) -> TrainConfig:
    return TrainConfig(**required)


def paper_recipe(**required) -> TrainConfig:
    return TrainConfig(
        **required,
        recipe="paper",
        fusion="reference",
        consistency="l2",  # the released config trains with L2, weights 1
        w_cond=1.0,
        w_uncond=1.0,
        w_cons=1.0,
        detach_teacher=False,
        rcs_temperature=0.01,  # DAFormer's RCS
        flip_features=0.0,
        iters=40000,
        lr=6e-5,
        batch_size=1,
        warmup=1500,
    )


RECIPES = {"diffseg": diffseg_recipe, "paper": paper_recipe}
_REQUIRED = {"cache": "", "layers": (), "save_steps": (), "branches": ("uncond",)}


def recipe_defaults(recipe: str) -> dict:
    """{field: value} of every optional TrainConfig field under this recipe (what an option not given takes)."""
    if recipe not in RECIPES:
        raise DiffsegError(f"unknown recipe {recipe!r} (expected {' or '.join(RECIPES)})")
    cfg = RECIPES[recipe](**_REQUIRED)
    return {k: v for k, v in cfg.to_dict().items() if k not in _REQUIRED}


def default(name: str):
    """TrainConfig's default of one field (for help texts and the jobs' "not given")."""
    (field,) = [f for f in fields(TrainConfig) if f.name == name]
    assert field.default is not MISSING, f"TrainConfig.{name} has no default"
    return field.default


def given(**options) -> dict:
    """The options that were given: None means "not given" (take the default or the record)."""
    return {k: v for k, v in options.items() if v is not None}


# An ablation cell is a short run (`diffseg ablate`'s defaults, replacing TrainConfig's for every
# cell; options given to `ablate` replace these in turn). Workers 0: cells run on the 2-core CPU
# path, where reading inline is as fast (the data wait is ~0.2% of an iteration); on CUDA a cell
# keeps TrainConfig's reader threads (ablate's cell_options).
ABLATION_CELL = {"iters": 4000, "warmup": 150, "workers": 0}


def recorded_part(cfg: TrainConfig) -> dict:
    """The fields that decide the result (what a resume must agree with)."""
    return {k: v for k, v in cfg.to_dict().items() if k not in RUNTIME_FIELDS}
