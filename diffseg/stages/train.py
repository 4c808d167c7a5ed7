"""Stage two entry point (`diffseg train`): resolve the run directory and config, then train.

Reads only the feature cache: nothing on this path imports diffusers or the pipeline's
models (a test checks `sys.modules`). Under torchrun every process runs `main`; rank 0
decides the run directory and writes every file.
"""

from __future__ import annotations

from pathlib import Path

from diffseg.cache import CacheReader
from diffseg.errors import DiffsegError
from diffseg.stages import distributed
from diffseg.stages.run_dir import CONFIG, read_json, resolve_run_dir
from diffseg.stages.run_model import held_layers
from diffseg.stages.selection import select
from diffseg.stages.train_config import TrainConfig


def resolve_config(*, cache: Path, eval_caches, layers, save_steps, kinds, branches, fusion, consistency,
                   w_cond, w_uncond, w_cons, detach_teacher, **rest) -> tuple[TrainConfig, dict]:
    """The TrainConfig and layer specs a fresh run uses, from the CLI options and the cache."""
    reader = CacheReader(cache)
    held = held_layers(reader)
    sel = select(str(cache), reader.attrs, held, branches=branches, layers=layers, save_steps=save_steps,
                 kinds=kinds, w_cond=w_cond, w_uncond=w_uncond)
    both = len(sel.branches) == 2
    if w_uncond == 0 and consistency != "none" and w_cons > 0 and "cond" in sel.branches:
        raise DiffsegError(f"--w-uncond 0 trains on the cond branch alone: the consistency term needs both "
                           f"branches; pass --consistency none (got --consistency {consistency})")
    cfg = TrainConfig(
        cache=str(cache), eval_caches=tuple(str(p) for p in eval_caches), layers=sel.layers,
        save_steps=sel.save_steps, branches=sel.branches, fusion=fusion,
        consistency=consistency if both else "none",
        w_cond=w_cond if "cond" in sel.branches else 0.0, w_uncond=w_uncond if "uncond" in sel.branches else 0.0,
        w_cons=w_cons if both and consistency != "none" else 0.0, detach_teacher=detach_teacher, **rest)
    return cfg, sel.layer_specs


def main(*, cache: Path, out: Path | None = None, eval_caches=(), layers=None, save_steps=None, kinds=None,
         branches=None, fusion: str = "reference", consistency: str = "l2", w_cond: float = 1.0,
         w_uncond: float = 1.0, w_cons: float = 1.0, detach_teacher: bool = False, iters: int = 40000,
         batch_size: int = 1, lr: float = 6e-5, warmup: int = 1500, eval_every: int = 4000,
         ckpt_every: int = 2000, workers: int = 2, in_memory: bool = False, device: str = "auto",
         seed: int = 0, resume: bool = False, accum: int = 1, log_every: int = 10,
         stop_at: int | None = None) -> Path:
    """Train (or resume) a run; returns its directory. Extra keywords beyond the CLI's
    (`accum`, `log_every`, `stop_at`) are internal options for tests and the ablation runner."""
    from diffseg.stages.trainer import Trainer  # torch-heavy; after the cheap checks

    env = distributed.from_env()
    dev = distributed.pick_device(device, env)
    distributed.init(env, dev)
    try:
        run = distributed.broadcast(env, resolve_run_dir(cache, out, resume) if env.main else None)
        runtime = dict(workers=workers, in_memory=in_memory, device=str(dev), stop_at=stop_at)
        if resume:
            cfg, layer_specs = _recorded(run, cache, runtime)
        else:
            cfg, layer_specs = resolve_config(
                cache=cache, eval_caches=eval_caches, layers=layers, save_steps=save_steps, kinds=kinds,
                branches=branches, fusion=fusion, consistency=consistency, w_cond=w_cond, w_uncond=w_uncond,
                w_cons=w_cons, detach_teacher=detach_teacher, iters=iters, batch_size=batch_size, accum=accum,
                lr=lr, warmup=warmup, eval_every=eval_every, ckpt_every=ckpt_every, log_every=log_every,
                seed=seed, **runtime)
        Trainer(cfg, layer_specs, Path(run), env, dev, fresh=not resume).fit()
    finally:
        distributed.shutdown(env)
    return Path(run)


def _recorded(run: Path, cache: Path, runtime: dict) -> tuple[TrainConfig, dict]:
    """A resumed run keeps its recorded config (the schedule depends on it); runtime options may change."""
    record = read_json(Path(run) / CONFIG)
    recorded = record["config"]
    if Path(recorded["cache"]).resolve() != Path(cache).resolve():
        raise DiffsegError(f"--resume: {run} was trained on {recorded['cache']}, not {cache}")
    cfg = TrainConfig.from_dict({**recorded, **runtime, "eval_caches": recorded["eval_caches"]})
    return cfg, record["layer_specs"]
