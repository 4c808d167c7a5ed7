"""`diffseg demo`: the whole method end to end on the built-in `tiny` model and demo data.

From nothing: stage one extracts the demo training split (conditional with masked class
prompts, and unconditional) and the three demo targets (`val` in the source style,
`val-night` and `val-fog` shifted), all with `--uncond-prompt classes` so that `xattn`
exists in both branches; stage two trains the fusion block and head, scores every target,
runs the Table IV ablation grid, and `report.md` gathers the tables and pictures.

Every step calls the stage's entry point (the function its command calls) with the demo's
settings; CI runs the demo itself through the command line. Layout of `--out`:
`cache/<split>/`, `run/` (a normal run directory), `ablation/`, `pictures/`, `report.md`,
`results.json`.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from diffseg.stages.demo.config import TARGETS, DemoConfig, demo_config
from diffseg.stages.demo.report import pictures, write_report


def _step(line: str) -> None:
    """Say which stage runs next, as the command a user would type for it."""
    print(f"\n$ diffseg {line}", flush=True)


def extract_all(cfg: DemoConfig, out: Path, device: str) -> dict[str, Path]:
    """Stage one for the training split and every target (the `extract` defaults for the rest)."""
    from diffseg.stages.extract import job as extract

    common: dict[str, Any] = dict(
        dataset="demo",
        model="tiny",
        preset=cfg.preset,
        steps=_ints(cfg.steps),
        save_steps=_ints(cfg.save_steps),
        kinds=tuple(cfg.kinds.split(",")),
        resolution=(cfg.resolution, cfg.resolution),
        uncond_prompt="classes",
        device=device,
    )
    caches = {}
    for split in ("train", *TARGETS):
        cache = out / "cache" / split
        n = cfg.train_images if split == "train" else cfg.target_images
        _step(f"extract --dataset demo --model tiny --split {split} --limit {n} --out {cache}")
        extract.main(**common, split=split, limit=n, out=cache)
        caches[split] = cache
    return caches


def _ints(value: str | None) -> tuple[int, ...] | None:
    return None if value is None else tuple(int(v) for v in value.split(","))


def train_main(cfg: DemoConfig, out: Path, caches: dict[str, Path], device: str) -> Path:
    from diffseg.stages.train import job as train

    run = out / "run"
    resume = (run / "config.json").is_file()  # a rerun of the demo continues (or re-scores) the main run
    _step(f"train --cache {caches['train']} --out {run}" + (" --resume" if resume else ""))
    train.main(
        cache=caches["train"],
        out=run,
        resume=resume,
        eval_caches=[caches[t] for t in TARGETS],
        fusion=cfg.fusion,
        iters=cfg.iters,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        warmup=cfg.warmup,
        eval_every=0,
        ckpt_every=cfg.iters,
        workers=0,
        device=device,
    )
    return run


def evaluate_main(run: Path, caches: dict[str, Path], device: str) -> dict:
    from diffseg.stages import evaluate

    _step(f"eval --run {run} " + " ".join(f"--cache {caches[t]}" for t in TARGETS))
    return evaluate.main(run=run, caches=[caches[t] for t in TARGETS], as_json=False, device=device)


def ablate_all(cfg: DemoConfig, out: Path, caches: dict[str, Path], device: str) -> Path:
    from diffseg.stages.ablate import job as ablate

    folder = out / "ablation"
    _step(f"ablate --cache {caches['train']} --out {folder}")
    ablate.main(
        cache=caches["train"],
        eval_caches=[caches[t] for t in TARGETS],
        out=folder,
        iters=cfg.ablation_iters,
        batch_size=cfg.batch_size,
        fusion=cfg.fusion,
        lr=cfg.lr,
        warmup=cfg.warmup,
        device=device,
    )
    return folder


def main(*, out: Path, size: str = "full", device: str = "auto") -> Path:
    cfg = demo_config(size)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    start = time.perf_counter()

    def timed(name: str, step, *args):
        t = time.perf_counter()
        result = step(*args)
        timings[name] = time.perf_counter() - t
        return result

    caches = timed("extract (stage one)", extract_all, cfg, out, device)
    run = timed("train (stage two)", train_main, cfg, out, caches, device)
    results = timed("eval", evaluate_main, run, caches, device)
    ablation = timed("ablate", ablate_all, cfg, out, caches, device)
    pics = timed("pictures", pictures, cfg, out, run, caches, ablation, device)
    timings["total"] = time.perf_counter() - start

    report = write_report(
        cfg=asdict(cfg),
        out=out,
        run=run,
        caches=caches,
        results=results,
        ablation=ablation,
        pictures=pics,
        timings=timings,
    )
    shutil.rmtree(out / "tmp", ignore_errors=True)
    print(f"\nDemo finished in {timings['total']:.0f} s. Report: {report}", flush=True)
    print(f"Main run (accepted by `diffseg eval` and `diffseg predict`): {run}")
    return report
