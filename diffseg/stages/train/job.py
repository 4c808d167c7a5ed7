"""Stage two entry point (`diffseg train`): resolve the run directory and config, then train.

Reads only the feature cache: nothing on this path imports diffusers or the pipeline's
models (a test checks `sys.modules`). Under torchrun every process runs `main`; rank 0
decides the run directory and writes every file.
"""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import torch

from diffseg.cache import CacheReader
from diffseg.cache.fastread import keep_freed_memory
from diffseg.core import location
from diffseg.core.errors import DiffsegError
from diffseg.stages.device import resolve_device
from diffseg.stages.runs.files import CONFIG, default_run_dir, new_folder, read_json, resolve_run_dir
from diffseg.stages.runs.model import held_layers
from diffseg.stages.runs.seeds import seed_dir, write_summary
from diffseg.stages.runs.usage import samples_used
from diffseg.stages.train import distributed
from diffseg.stages.train.classstats import class_counts
from diffseg.stages.train.config import RUNTIME_FIELDS, TrainConfig, default, given, recipe_defaults
from diffseg.stages.train.rcs import default_min_pixels
from diffseg.stages.train.sampling import image_groups
from diffseg.stages.train.selection import select

# Options that pick the features: resolved against the cache (selection.py) into TrainConfig's
# layers/save_steps/branches; `kinds` is not a TrainConfig field at all.
SELECTION = ("layers", "save_steps", "kinds", "branches")


def resolve_config(*, cache: str | Path, **options) -> tuple[TrainConfig, dict]:
    """The TrainConfig and layer specs a fresh run uses: the recipe's values (TrainConfig's defaults for
    `diffseg`) replaced by the given options (None or absent: not given), the feature selection
    resolved against the cache, and the loss weights put in force for the branches read."""
    opts = given(**options)
    base = recipe_defaults(opts.get("recipe", default("recipe")))
    pick = {k: opts.pop(k, None) for k in SELECTION}
    consistency = opts.pop("consistency", base["consistency"])
    w_cond = opts.pop("w_cond", base["w_cond"])
    w_uncond = opts.pop("w_uncond", base["w_uncond"])
    w_cons = opts.pop("w_cons", base["w_cons"])
    reader = CacheReader(cache)
    opts["rcs_min_pixels"] = opts.get("rcs_min_pixels") or default_min_pixels(reader.record.resolution)
    opts["rcs_temperature"] = rcs_in_force(reader, opts.get("rcs_temperature", base["rcs_temperature"]), opts)
    held = held_layers(reader)
    sel = select(str(cache), reader.record, held, **pick, w_cond=w_cond, w_uncond=w_uncond)
    both = len(sel.branches) == 2
    if w_uncond == 0 and consistency != "none" and w_cons > 0 and "cond" in sel.branches:
        raise DiffsegError(
            f"--w-uncond 0 trains on the cond branch alone: the consistency term needs both "
            f"branches; pass --consistency none (got --consistency {consistency})"
        )
    if "eval_caches" in opts:
        opts["eval_caches"] = tuple(str(p) for p in opts["eval_caches"])
    if "save_best" in opts:  # a target's name or its cache, perhaps a Path (the Python API)
        opts["save_best"] = str(opts["save_best"])
    if "warmup" not in opts:  # the paper's warm-up, capped at a tenth of a shorter run (else it never ends)
        opts["warmup"] = short_run_warmup(opts.get("iters", base["iters"]), base["warmup"])
    opts = {**{k: v for k, v in base.items() if k not in ("consistency", "w_cond", "w_uncond", "w_cons")}, **opts}
    cfg = TrainConfig(
        cache=str(cache),
        layers=sel.layers,
        save_steps=sel.save_steps,
        branches=sel.branches,
        consistency=consistency if both else "none",
        w_cond=w_cond if "cond" in sel.branches else 0.0,
        w_uncond=w_uncond if "uncond" in sel.branches else 0.0,
        w_cons=w_cons if both and consistency != "none" else 0.0,
        **opts,
    )
    return cfg, sel.layer_specs


def short_run_warmup(iters: int, warmup: int) -> int:
    """The warm-up in force when none is given: the recipe's (the paper's 1500), at most iters // 10."""
    return min(warmup, iters // 10)


def rcs_in_force(reader: CacheReader, temperature: float, opts: dict) -> float:
    """The rare-class temperature in force: 0 when fewer than two classes have an image holding
    `rcs_min_pixels` of them (nothing to balance), else the one asked for."""
    indices = reader.complete_indices()
    if temperature == 0 or not indices:
        return 0.0
    counts, _ = class_counts(reader, indices)
    groups = image_groups([reader.ids[i] for i in indices])
    held = np.stack([counts[g].sum(axis=0) for g in groups]) >= opts["rcs_min_pixels"]
    return float(temperature) if int(held.any(axis=0).sum()) >= 2 else 0.0


def main(
    *, cache: str | Path, out: Path | None = None, resume: bool = False, allow_partial: bool = False, **options
) -> Path:
    """Train (or resume) a run; returns its directory. A cache with samples still pending (the training
    cache or an evaluation target) is refused unless `allow_partial` (runs/usage.py); the run's
    caches.json then records the samples it trained on.

    `options`: TrainConfig fields and the selection options (`layers`, `save_steps`, `kinds`,
    `branches`), each None (or absent) when not given. A fresh run takes TrainConfig's default for
    an option not given; a resumed run takes the recorded value, and refuses a given result-deciding
    option that differs from the record. The runtime options (device, workers, in_memory, stop_at, log)
    are never taken from the record: not given, they are TrainConfig's defaults."""
    from diffseg.stages.train.trainer import Trainer  # torch-heavy; after the cheap checks

    keep_freed_memory()  # cache/fastread.py: reused sample buffers instead of page faults on every read
    opts = given(**options)
    known = {f.name for f in fields(TrainConfig)} - {"cache"} | set(SELECTION)
    assert set(opts) <= known, f"unknown train options {sorted(set(opts) - known)}"
    samples_used(CacheReader(cache), allow_partial)  # before the class counts of resolve_config
    env = distributed.from_env()
    dev = resolve_device(opts.pop("device", default("device")), env.local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    distributed.init(env, dev)
    try:
        run = distributed.broadcast(env, resolve_run_dir(cache, out, resume) if env.main else None)
        runtime = {k: opts.pop(k, default(k)) for k in ("workers", "in_memory", "stop_at", "log")}
        runtime["device"] = str(dev)
        if resume:
            cfg, layer_specs = _recorded(Path(run), cache, runtime, opts)
        else:
            cfg, layer_specs = resolve_config(cache=cache, **opts, **runtime)
        # a fresh run's folder is created with its records: `run` when given, else the next free default name
        trainer = Trainer(
            cfg,
            layer_specs,
            Path(run),
            env,
            dev,
            fresh=not resume,
            explicit=out is not None,
            allow_partial=allow_partial,
        )
        run = distributed.broadcast(env, trainer.run if env.main else None)
        trainer.fit()
    finally:
        distributed.shutdown(env)
    return Path(run)


def main_seeds(
    *,
    cache: str | Path,
    seeds: tuple[int, ...],
    out: Path | None = None,
    resume: bool = False,
    allow_partial: bool = False,
    **options,
) -> Path:
    """One normal run per seed under `out` (`seed-<k>/`), then seeds.json/.md with mean +- std per
    target; returns `out`. --resume continues the unfinished seed runs and starts the missing ones."""
    from diffseg.stages.train.checkpoint import FINAL

    if given(**options).get("seed") is not None:
        raise DiffsegError("--seed and --seeds: give one of them")
    if resume and out is None:
        raise DiffsegError("--seeds --resume: give the --out folder that holds the seed-<k> runs")
    if out is None and distributed.from_env().main:  # rank 0 decides each seed's run folder (main)
        parent = new_folder(default_run_dir(cache))
    else:
        parent = Path(out) if out is not None else default_run_dir(cache)
    if not resume and out is not None and parent.exists() and (not parent.is_dir() or any(parent.iterdir())):
        raise DiffsegError(f"{parent} already exists; pass --resume to continue it or choose another --out")
    if resume and not parent.is_dir():
        raise DiffsegError(f"--resume: {parent} is not a folder of seed runs")
    for seed in seeds:
        run = seed_dir(parent, seed)
        again = resume and (run / CONFIG).is_file()
        if again and (run / FINAL).is_file():
            continue  # finished earlier
        main(cache=cache, out=run, resume=again, allow_partial=allow_partial, seed=seed, **options)
    finished = all((seed_dir(parent, s) / FINAL).is_file() for s in seeds)  # not so after a --stop-at
    if finished and distributed.from_env().main:
        write_summary(parent, seeds)
    return parent


def _recorded(run: Path, cache: str | Path, runtime: dict, asked: dict) -> tuple[TrainConfig, dict]:
    """A resumed run keeps its recorded config (the schedule depends on it), replaced by the runtime
    options and the given evaluation targets; `asked` holds the other given options, each of which
    must resolve to the recorded value (else DiffsegError naming the option)."""
    record = read_json(run / CONFIG)
    have = TrainConfig.from_dict(record["config"])
    if not location.same(have.cache, cache):
        raise DiffsegError(f"--resume: {run} was trained on {have.cache}, not {cache}")
    asked = dict(asked)
    # Evaluation targets change what is scored, never the weights: given ones replace the record's.
    evals = asked.pop("eval_caches", None)
    # So does the number of checkpoints kept (not given: the recorded one, 2 for a run older than the option).
    keep = asked.pop("keep_checkpoints", have.keep_checkpoints)
    _check_asked(run, cache, have, record["layer_specs"], asked)
    evals = tuple(str(p) for p in evals) if evals else have.eval_caches
    cfg = replace(have, **runtime, eval_caches=evals, keep_checkpoints=keep)
    return cfg, record["layer_specs"]


# Options compared on --resume first, in this order (any other given TrainConfig field after them).
RESUME_CHECKED = (
    "recipe",
    "iters",
    "batch_size",
    "lr",
    "warmup",
    "eval_every",
    "ckpt_every",
    "seed",
    "fusion",
    "consistency",
    "w_cond",
    "w_uncond",
    "w_cons",
    "detach_teacher",
    "rcs_temperature",
    "rcs_min_pixels",
    "flip_features",
    "save_best",
    "layers",
    "save_steps",
    "kinds",
    "branches",
)


def _shown(value) -> str:
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value)
    return str(value).lower() if isinstance(value, bool) else str(value)


def _check_asked(run: Path, cache: str | Path, have: TrainConfig, layer_specs: dict, asked: dict) -> None:
    """Refuse a resume whose given options would resolve to another config than the recorded one.

    Options not given take the recorded values; the given ones go through the same resolution as a
    fresh run (`resolve_config`: feature selection, loss weights in force), so e.g. `--w-cond 2` on a
    run that never read the cond branch is no difference. `--kinds` is compared via the layers it
    resolves to."""
    if not asked:
        return
    base = {
        **{k: v for k, v in have.to_dict().items() if k not in RUNTIME_FIELDS and k != "cache"},
        "layers": None if "kinds" in asked and "layers" not in asked else have.layers,
        # a branch the run never read has weight 0 in the record: the default stands in for it
        "w_cond": have.w_cond if "cond" in have.branches else default("w_cond"),
        "w_uncond": have.w_uncond if "uncond" in have.branches else default("w_uncond"),
        "w_cons": have.w_cons if have.consistency != "none" else default("w_cons"),
    }
    want, _ = resolve_config(cache=cache, **{**base, **asked})
    order = [k for k in RESUME_CHECKED if k in asked] + [k for k in asked if k not in RESUME_CHECKED]
    for opt in order:
        value = asked[opt]
        if opt == "kinds":
            differs = want.layers != have.layers
            kinds = ",".join(sorted({layer_specs[l]["kind"] for l in have.layers}))
            recorded = f"{kinds} (layers {_shown(have.layers)})"
        else:
            differs = getattr(want, opt) != getattr(have, opt)
            recorded = getattr(have, opt)
        if differs:
            flag = opt.replace("_", "-")
            raise DiffsegError(
                f"--resume: {run} was started with --{flag} {_shown(recorded) or '(none)'}; this "
                f"call asks for {_shown(value)}: drop the option or start a new run with --out"
            )
