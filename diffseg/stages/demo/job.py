"""`diffseg demo`: the whole method end to end on the built-in trained `mini` model and demo data.

From nothing: stage one extracts the demo training split (conditional with masked class
prompts, and unconditional) and the three demo targets (`val` in the source style,
`val-night` and `val-fog` shifted), all with `--uncond-prompt classes` so that `xattn`
exists in both branches; stage two trains the fusion block and head (the main run), scores
every target; the same main run is repeated on the features of the random `tiny` model
(same head, same budget), so the report shows what trained features add; the Table IV cells
are trained once per seed (mean +- std), with issue 9's recipe cells (photometric views off,
two views, rare-class sampling off) beside them; `report.md` gathers the tables, the
cross-attention inside/outside ratios and the pictures (the model's samples and
reconstructions, predictions, features, heat maps).

Every step calls the stage's entry point (the function its command calls) with the demo's
settings; CI runs the demo itself through the command line. Layout of `--out`:
`cache/<model>/<split>/`, `run/` (the main run, a normal run directory), `run-<compare>/`,
`ablation/` (Table IV) and `ablation/recipe-<cell>/`, `pictures/`, `report.md`, `results.json`.
The demo's choices were tuned on the demo's `dev` split, never on the targets it reports.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from diffseg.stages.demo.config import COMPARE_MODEL, MODEL, TARGETS, DemoConfig, demo_config
from diffseg.stages.demo.report import pictures, ratios, write_report

# Issue 9's cells: the full method (ipkl-l2) with one recipe choice changed, each against the
# Table IV ipkl-l2 cell (photometric views on, one view, rare-class sampling at T = 0.01).
# name: (training cache variant or None for the main one, extract options, train options, what changes)
RECIPE_CELLS: dict[str, tuple[str | None, dict, dict, str]] = {
    "rcs-off": (None, {}, {"rcs_temperature": 0.0}, "rare-class sampling off (`train --rcs-temperature 0`)"),
    "photometric-off": (
        "train-photometric-off",
        {"photometric": False},
        {},
        "no photometric distortion on the training views (`extract --no-photometric`)",
    ),
    "views-2": ("train-views-2", {"views": 2}, {}, "two seeded views per training image (`extract --views 2`)"),
}


def _step(line: str) -> None:
    """Say which stage runs next, as the command a user would type for it."""
    print(f"\n$ diffseg {line}", flush=True)


def model_folder(model: str) -> str:
    """A folder name for a `--model` spec (a built-in name, a directory or a hub id)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(model).name or model) or "model"


def extract_options(cfg: DemoConfig, model: str, device: str) -> dict[str, Any]:
    """The demo's stage-one options (besides split, limit and out): the one place they are spelled,
    also for the benchmarks that reuse the demo's recipe."""
    return dict(
        dataset="demo",
        model=model,
        preset=cfg.preset,
        steps=_ints(cfg.steps),
        save_steps=_ints(cfg.save_steps),
        kinds=tuple(cfg.kinds.split(",")),
        resolution=(cfg.resolution, cfg.resolution),
        uncond_prompt="classes",
        device=device,
    )


def extract_all(cfg: DemoConfig, out: Path, model: str, device: str, recipe: bool = False) -> dict[str, Path]:
    """Stage one for the training split and every target (the `extract` defaults for the rest); with
    `recipe`, also the training caches the recipe cells need."""
    from diffseg.stages.extract import job as extract

    folder = out / "cache" / model_folder(model)
    jobs: list[tuple[str, str, dict]] = [("train", "train", {}), *((t, t, {}) for t in TARGETS)]
    if recipe:
        jobs += [(variant, "train", opts) for variant, opts, _, _ in RECIPE_CELLS.values() if variant]
    caches = {}
    for name, split, opts in jobs:
        cache = folder / name
        n = cfg.train_images if split == "train" else cfg.target_images
        flags = "".join(
            f" --{k.replace('_', '-')} {v}" if not isinstance(v, bool) else f" --{'' if v else 'no-'}{k}"
            for k, v in opts.items()
        )
        _step(f"extract --dataset demo --model {model} --split {split} --limit {n}{flags} --out {cache}")
        extract.main(**extract_options(cfg, model, device), split=split, limit=n, out=cache, **opts)
        caches[name] = cache
    return caches


def _ints(value: str | None) -> tuple[int, ...] | None:
    return None if value is None else tuple(int(v) for v in value.split(","))


def train_main(cfg: DemoConfig, run: Path, caches: dict[str, Path], device: str) -> Path:
    from diffseg.stages.train import job as train

    resume = (run / "config.json").is_file()  # a rerun of the demo continues (or re-scores) the main run
    _step(f"train --cache {caches['train']} --out {run}" + (" --resume" if resume else ""))
    train.main(cache=caches["train"], out=run, resume=resume, **main_run_options(cfg, caches, device))
    return run


def main_run_options(cfg: DemoConfig, caches: dict[str, Path], device: str) -> dict[str, Any]:
    """The main run's stage-two options (besides cache, out, resume and seed), scored on every target."""
    return dict(
        eval_caches=[caches[t] for t in TARGETS],
        eval_every=0,
        ckpt_every=cfg.iters,
        workers=0,
        **_head(cfg, cfg.iters, device),
    )


def _head(cfg: DemoConfig, iters: int, device: str) -> dict[str, Any]:
    """The head recipe every demo training shares (main runs: cfg.iters; cells: cfg.ablation_iters)."""
    return dict(iters=iters, batch_size=cfg.batch_size, fusion=cfg.fusion, lr=cfg.lr, warmup=cfg.warmup, device=device)


def evaluate_main(run: Path, caches: dict[str, Path], device: str) -> dict:
    from diffseg.stages import evaluate

    _step(f"eval --run {run} " + " ".join(f"--cache {caches[t]}" for t in TARGETS))
    return evaluate.main(run=run, caches=[caches[t] for t in TARGETS], as_json=False, device=device)


def _ablate(cfg: DemoConfig, cache: Path, folder: Path, caches: dict[str, Path], device: str, **extra) -> Path:
    from diffseg.stages.ablate import job as ablate

    seeds = ",".join(map(str, cfg.seeds))
    flags = "" if extra.get("features") else " --no-features"
    flags += f" --cells {','.join(extra['only'])}" if extra.get("only") else ""
    flags += "".join(f" --{k.replace('_', '-')} {v}" for k, v in extra.items() if k not in ("features", "only"))
    _step(f"ablate --cache {cache} --seeds {seeds}{flags} --out {folder}")
    ablate.main(
        cache=cache,
        eval_caches=[caches[t] for t in TARGETS],
        out=folder,
        seeds=cfg.seeds,
        **_head(cfg, cfg.ablation_iters, device),
        **extra,
    )
    return folder


def ablate_all(cfg: DemoConfig, out: Path, caches: dict[str, Path], device: str) -> Path:
    """The Table IV cells, every cell once per seed."""
    return _ablate(cfg, caches["train"], out / "ablation", caches, device, features=False)


def features_all(cfg: DemoConfig, out: Path, caches: dict[str, Path], device: str) -> Path:
    """`--full-grid`: the feature-selection cells, one seed (the first), beside the Table IV cells."""
    from diffseg.stages.ablate import job as ablate
    from diffseg.stages.ablate.cells import feature_cells

    names = tuple(c.name for c in feature_cells(ablate.cache_layout(caches["train"])) if c.not_applicable is None)
    folder = out / "ablation-features"
    _step(f"ablate --cache {caches['train']} --seed {cfg.seeds[0]} --cells {','.join(names)} --out {folder}")
    ablate.main(
        cache=caches["train"],
        eval_caches=[caches[t] for t in TARGETS],
        out=folder,
        only=names,
        seed=cfg.seeds[0],
        **_head(cfg, cfg.ablation_iters, device),
    )
    return folder


def recipe_all(cfg: DemoConfig, out: Path, caches: dict[str, Path], device: str) -> dict[str, Path]:
    """Issue 9's cells: the full method alone, on another training cache or with another option."""
    folders = {}
    for name, (variant, _, train_opts, _) in RECIPE_CELLS.items():
        folders[name] = _ablate(
            cfg,
            caches[variant or "train"],
            out / "ablation" / f"recipe-{name}",
            caches,
            device,
            features=False,
            only=("ipkl-l2",),
            **train_opts,
        )
    return folders


def main(
    *, out: Path, size: str = "full", model: str | None = None, full_grid: bool = False, device: str = "auto"
) -> Path:
    cfg = demo_config(size)
    model = model or MODEL
    compare = COMPARE_MODEL if model != COMPARE_MODEL else None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    load_start = os.getloadavg()[0]

    def timed(name: str, step, *args):
        t = time.perf_counter()
        result = step(*args)
        timings[name] = time.perf_counter() - t
        return result

    caches = timed(f"extract ({model})", extract_all, cfg, out, model, device, cfg.recipe_cells)
    run = timed(f"train ({model})", train_main, cfg, out / "run", caches, device)
    results = timed("eval", evaluate_main, run, caches, device)
    runs = {model: (run, results, caches)}
    if compare:
        other = timed(f"extract ({compare})", extract_all, cfg, out, compare, device)
        other_run = timed(f"train ({compare})", train_main, cfg, out / f"run-{model_folder(compare)}", other, device)
        runs[compare] = (other_run, evaluate_main(other_run, other, device), other)
    ablation = timed("ablate (Table IV)", ablate_all, cfg, out, caches, device)
    if full_grid:
        timed("ablate (feature selection, one seed)", features_all, cfg, out, caches, device)
    recipe = timed("ablate (recipe cells)", recipe_all, cfg, out, caches, device) if cfg.recipe_cells else {}
    attention = timed("xattn ratios", ratios, {m: c for m, (_, _, c) in runs.items()})
    pics = timed("pictures", pictures, cfg, out, model, run, caches, ablation, device)
    timings["total"] = time.perf_counter() - start

    report = write_report(
        cfg={**asdict(cfg), "model": model, "compare_model": compare, "full_grid": full_grid},
        out=out,
        runs={m: (r, res) for m, (r, res, _) in runs.items()},
        ablation=ablation,
        recipe={name: (folder, RECIPE_CELLS[name][3]) for name, folder in recipe.items()},
        attention=attention,
        pictures=pics,
        timings=timings,
        load=(load_start, os.getloadavg()[0]),
    )
    shutil.rmtree(out / "tmp", ignore_errors=True)
    print(f"\nDemo finished in {timings['total']:.0f} s. Report: {report}", flush=True)
    print(f"Main run (accepted by `diffseg eval` and `diffseg predict`): {run}")
    return report
