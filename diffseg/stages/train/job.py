"""Stage two entry point (`diffseg train`): resolve the run directory and config, then train.

Reads only the feature cache: nothing on this path imports diffusers or the pipeline's
models (a test checks `sys.modules`). Under torchrun every process runs `main`; rank 0
decides the run directory and writes every file.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import torch

from diffseg.cache import CacheReader
from diffseg.core.errors import DiffsegError
from diffseg.stages.device import resolve_device
from diffseg.stages.runs.files import CONFIG, read_json, resolve_run_dir
from diffseg.stages.runs.model import held_layers
from diffseg.stages.train import distributed
from diffseg.stages.train.config import TrainConfig
from diffseg.stages.train.selection import select


def resolve_config(
    *,
    cache: Path,
    eval_caches,
    layers,
    save_steps,
    kinds,
    branches,
    fusion,
    consistency,
    w_cond,
    w_uncond,
    w_cons,
    detach_teacher,
    **rest,
) -> tuple[TrainConfig, dict]:
    """The TrainConfig and layer specs a fresh run uses, from the CLI options and the cache."""
    reader = CacheReader(cache)
    held = held_layers(reader)
    sel = select(
        str(cache),
        reader.record,
        held,
        branches=branches,
        layers=layers,
        save_steps=save_steps,
        kinds=kinds,
        w_cond=w_cond,
        w_uncond=w_uncond,
    )
    both = len(sel.branches) == 2
    if w_uncond == 0 and consistency != "none" and w_cons > 0 and "cond" in sel.branches:
        raise DiffsegError(
            f"--w-uncond 0 trains on the cond branch alone: the consistency term needs both "
            f"branches; pass --consistency none (got --consistency {consistency})"
        )
    cfg = TrainConfig(
        cache=str(cache),
        eval_caches=tuple(str(p) for p in eval_caches),
        layers=sel.layers,
        save_steps=sel.save_steps,
        branches=sel.branches,
        fusion=fusion,
        consistency=consistency if both else "none",
        w_cond=w_cond if "cond" in sel.branches else 0.0,
        w_uncond=w_uncond if "uncond" in sel.branches else 0.0,
        w_cons=w_cons if both and consistency != "none" else 0.0,
        detach_teacher=detach_teacher,
        **rest,
    )
    return cfg, sel.layer_specs


def main(
    *,
    cache: Path,
    out: Path | None = None,
    eval_caches=(),
    layers=None,
    save_steps=None,
    kinds=None,
    branches=None,
    fusion: str = "reference",
    consistency: str = "l2",
    w_cond: float = 1.0,
    w_uncond: float = 1.0,
    w_cons: float = 1.0,
    detach_teacher: bool = False,
    iters: int = 40000,
    batch_size: int = 1,
    lr: float = 6e-5,
    warmup: int = 1500,
    eval_every: int = 4000,
    ckpt_every: int = 2000,
    workers: int = 2,
    in_memory: bool = False,
    device: str = "auto",
    seed: int = 0,
    resume: bool = False,
    accum: int = 1,
    log_every: int = 10,
    stop_at: int | None = None,
) -> Path:
    """Train (or resume) a run; returns its directory. Extra keywords beyond the CLI's
    (`accum`, `log_every`, `stop_at`) are internal options for tests and the ablation runner."""
    from diffseg.stages.train.trainer import Trainer  # torch-heavy; after the cheap checks

    env = distributed.from_env()
    dev = resolve_device(device, env.local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    distributed.init(env, dev)
    try:
        run = distributed.broadcast(env, resolve_run_dir(cache, out, resume) if env.main else None)
        runtime = dict(workers=workers, in_memory=in_memory, device=str(dev), stop_at=stop_at)
        if resume:
            asked = dict(
                iters=iters,
                batch_size=batch_size,
                lr=lr,
                warmup=warmup,
                eval_every=eval_every,
                ckpt_every=ckpt_every,
                seed=seed,
                fusion=fusion,
                consistency=consistency,
                w_cond=w_cond,
                w_uncond=w_uncond,
                w_cons=w_cons,
                detach_teacher=detach_teacher,
                layers=layers,
                save_steps=save_steps,
                kinds=kinds,
                branches=branches,
                eval_caches=eval_caches,
            )
            cfg, layer_specs = _recorded(run, cache, runtime, asked)
        else:
            cfg, layer_specs = resolve_config(
                cache=cache,
                eval_caches=eval_caches,
                layers=layers,
                save_steps=save_steps,
                kinds=kinds,
                branches=branches,
                fusion=fusion,
                consistency=consistency,
                w_cond=w_cond,
                w_uncond=w_uncond,
                w_cons=w_cons,
                detach_teacher=detach_teacher,
                iters=iters,
                batch_size=batch_size,
                accum=accum,
                lr=lr,
                warmup=warmup,
                eval_every=eval_every,
                ckpt_every=ckpt_every,
                log_every=log_every,
                seed=seed,
                **runtime,
            )
        Trainer(cfg, layer_specs, Path(run), env, dev, fresh=not resume).fit()
    finally:
        distributed.shutdown(env)
    return Path(run)


def _recorded(run: Path, cache: Path, runtime: dict, asked: dict) -> tuple[TrainConfig, dict]:
    """A resumed run keeps its recorded config (the schedule depends on it); runtime options may change.

    `asked` holds the result-deciding options of this call (RESUME_CHECKED); one that differs from
    the recorded run is refused (DiffsegError naming the option). An option equal to `main`'s
    default (the CLI's default) counts as not given: it is not compared, so a plain `--resume`
    never conflicts, and asking explicitly for the default value cannot be told apart from
    leaving it out."""
    record = read_json(Path(run) / CONFIG)
    recorded = record["config"]
    if Path(recorded["cache"]).resolve() != Path(cache).resolve():
        raise DiffsegError(f"--resume: {run} was trained on {recorded['cache']}, not {cache}")
    _check_asked(Path(run), cache, TrainConfig.from_dict(recorded), record["layer_specs"], asked)
    # Evaluation targets change what is scored, never the weights: given ones replace the record's.
    evals = tuple(str(p) for p in asked["eval_caches"]) if asked["eval_caches"] else recorded["eval_caches"]
    cfg = TrainConfig.from_dict({**recorded, **runtime, "eval_caches": evals})
    return cfg, record["layer_specs"]


# Options of `main` that decide the result, compared on --resume (in this order).
RESUME_CHECKED = (
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
    "layers",
    "save_steps",
    "kinds",
    "branches",
)
_DEFAULTS = {name: p.default for name, p in inspect.signature(main).parameters.items()}


def _is_default(name: str, value) -> bool:
    default = _DEFAULTS[name]
    if default is None or default == ():
        return value is None or len(value) == 0
    return value == default


def _shown(value) -> str:
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value)
    return str(value).lower() if isinstance(value, bool) else str(value)


def _check_asked(run: Path, cache: Path, have: TrainConfig, layer_specs: dict, asked: dict) -> None:
    """Refuse a resume whose given options would resolve to another config than the recorded one.

    Options not given take the recorded values; the given ones go through the same resolution as a
    fresh run (`resolve_config`: feature selection, loss weights in force), so e.g. `--w-cond 2` on a
    run that never read the cond branch is no difference. `--kinds` is compared via the layers it
    resolves to."""
    given = {k: asked[k] for k in RESUME_CHECKED if not _is_default(k, asked[k])}
    if not given:
        return
    base = dict(
        layers=None if "kinds" in given and "layers" not in given else have.layers,
        save_steps=have.save_steps,
        kinds=None,
        branches=have.branches,
        fusion=have.fusion,
        consistency=have.consistency,
        # a branch the run never read has weight 0 in the record: the default stands in for it
        w_cond=have.w_cond if "cond" in have.branches else _DEFAULTS["w_cond"],
        w_uncond=have.w_uncond if "uncond" in have.branches else _DEFAULTS["w_uncond"],
        w_cons=have.w_cons if have.consistency != "none" else _DEFAULTS["w_cons"],
        detach_teacher=have.detach_teacher,
        eval_caches=have.eval_caches,
        iters=have.iters,
        batch_size=have.batch_size,
        lr=have.lr,
        warmup=have.warmup,
        eval_every=have.eval_every,
        ckpt_every=have.ckpt_every,
        seed=have.seed,
    )
    merged = {**base, **given}
    want, _ = resolve_config(cache=cache, **{**merged, "eval_caches": tuple(merged["eval_caches"])})
    for opt, value in given.items():
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
