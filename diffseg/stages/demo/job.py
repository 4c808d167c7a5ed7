"""`diffseg demo`: the whole method end to end on the built-in trained `mini` model and demo data.

From nothing: stage one extracts the demo training split (conditional with masked class
prompts, and unconditional) and the three demo targets (`val` in the source style,
`val-night` and `val-fog` shifted), all with `--uncond-prompt classes` so that `xattn`
exists in both branches; stage two trains the fusion block and head (the main run), scores
every target; the same main run is repeated on the features of the random `tiny` model
(same head, same budget), so the report shows what trained features add; the Table IV cells
are trained once per seed (mean +- std), with the recipe cells (photometric views off,
two views, rare-class sampling off) beside them; `report.md` gathers the tables, the
cross-attention inside/outside ratios and the pictures (the model's samples and
reconstructions, predictions, features, heat maps).

Every step calls the stage's entry point (the function its command calls) with the demo's
settings, as a job of diffseg.core.jobs: by default one worker process per core, each with one
torch thread (its output in `logs/<job>.log`), in two batches: every extraction and the two
main runs, then the ablation runs and the pictures. CI runs the demo itself through the
command line. Layout of `--out`:
`cache/<model>/<split>/`, `run/` (the main run, a normal run directory), `run-<compare>/`,
`ablation/` (Table IV) and `ablation/recipe-<cell>/`, `pictures/`, `report.md`, `results.json`.
The demo's choices were tuned on the demo's `dev` split, never on the targets it reports.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from diffseg.core.jobs import Done, Job, JobPool
from diffseg.stages.demo.config import COMPARE_MODEL, MODEL, TARGETS, DemoConfig, demo_config
from diffseg.stages.demo.report import ablation_chart, pictures, ratios, write_report
from diffseg.stages.extract.config import ExtractConfig

# The recipe cells: the full method (RECIPE_CELL) with one recipe choice changed, each against the
# Table IV ipkl-l2 cell (photometric views on, one view, rare-class sampling at T = 0.01).
# name: (training cache variant or None for the main one, extract options, train options, what changes)
RECIPE_CELL = "ipkl-l2"
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


def extract_options(cfg: DemoConfig, model: str, device: str) -> ExtractConfig:
    """The demo's stage-one options (add split, limit and out with `dataclasses.replace`): the one
    place they are spelled, also for the benchmarks that reuse the demo's recipe."""
    return ExtractConfig(
        dataset="demo",
        model=model,
        preset=cfg.preset,
        steps=_ints(cfg.steps),
        save_steps=_ints(cfg.save_steps),
        kinds=tuple(cfg.kinds.split(",")),
        resolution=(cfg.resolution, cfg.resolution),
        uncond_prompt="classes",
        device=device,
        unet_batch=1,  # one image per U-Net call on every device (CUDA's evaluation default is larger)
    )


def extract_jobs(cfg: DemoConfig, out: Path, model: str, device: str, recipe: bool = False) -> tuple[list[Job], dict]:
    """Stage one for the training split and every target (the `extract` defaults for the rest); with
    `recipe`, also the training caches the recipe cells need. Returns (one job per cache, {name: cache})."""
    folder = out / "cache" / model_folder(model)
    specs: list[tuple[str, str, dict]] = [("train", "train", {}), *((t, t, {}) for t in TARGETS)]
    if recipe:
        specs += [(variant, "train", opts) for variant, opts, _, _ in RECIPE_CELLS.values() if variant]
    jobs, caches = [], {}
    for name, split, opts in specs:
        cache = folder / name
        n = cfg.train_images if split == "train" else cfg.target_images
        flags = "".join(
            f" --{k.replace('_', '-')} {v}" if not isinstance(v, bool) else f" --{'' if v else 'no-'}{k}"
            for k, v in opts.items()
        )
        line = f"extract --dataset demo --model {model} --split {split} --limit {n}{flags} --out {cache}"
        config = replace(extract_options(cfg, model, device), split=split, limit=n, out=str(cache), **opts)
        jobs.append(Job(extract_job_name(model, name), _extract, dict(line=line, config=config)))
        caches[name] = cache
    return jobs, caches


def extract_job_name(model: str, cache: str) -> str:
    return f"extract-{model_folder(model)}-{cache}"


def _extract(line: str, config: ExtractConfig) -> None:
    from diffseg.stages.extract import job as extract

    _step(line)
    extract.main(config)


def _ints(value: str | None) -> tuple[int, ...] | None:
    return None if value is None else tuple(int(v) for v in value.split(","))


def main_run(cfg: DemoConfig, run: Path, caches: dict[str, Path], device: str) -> dict:
    """Train the main run (resumed by a rerun of the demo) and score it on every target; the scores."""
    from diffseg.stages import evaluate
    from diffseg.stages.train import job as train

    resume = (run / "config.json").is_file()  # a rerun of the demo continues (or re-scores) the main run
    _step(f"train --cache {caches['train']} --out {run}" + (" --resume" if resume else ""))
    train.main(cache=caches["train"], out=run, resume=resume, **main_run_options(cfg, caches, device))
    _step(f"eval --run {run} " + " ".join(f"--cache {caches[t]}" for t in TARGETS))
    return evaluate.main(run=run, caches=[caches[t] for t in TARGETS], as_json=False, device=device)


def main_run_options(
    cfg: DemoConfig, caches: dict[str, Path], device: str, targets: tuple[str, ...] = TARGETS
) -> dict[str, Any]:
    """The main run's stage-two options (besides cache, out, resume and seed), scored on every target
    (`targets`: other caches' names, e.g. the tuning split `dev`)."""
    return dict(
        eval_caches=[caches[t] for t in targets],
        eval_every=0,
        ckpt_every=cfg.iters,
        workers=0,
        **_head(cfg, cfg.iters, device),
    )


def _head(cfg: DemoConfig, iters: int, device: str) -> dict[str, Any]:
    """The head recipe every demo training shares (main runs: cfg.iters; cells: cfg.ablation_iters)."""
    return dict(iters=iters, batch_size=cfg.batch_size, fusion=cfg.fusion, lr=cfg.lr, warmup=cfg.warmup, device=device)


def ablation_plans(cfg: DemoConfig, out: Path, caches: dict[str, Path], device: str, full_grid: bool) -> dict:
    """{name: ablate Plan}: Table IV (every cell once per seed), the recipe cells (the full method
    alone, on another training cache or with another option) and, with `full_grid`, the
    feature-selection cells (one seed, the first). The training caches must exist (plans read them)."""
    from diffseg.stages.ablate import job as ablate
    from diffseg.stages.ablate.cells import feature_cells

    head = _head(cfg, cfg.ablation_iters, device)
    targets = [caches[t] for t in TARGETS]
    seeds = ",".join(map(str, cfg.seeds))
    plans = {}
    _step(f"ablate --cache {caches['train']} --seeds {seeds} --no-features --out {out / 'ablation'}")
    plans["table4"] = ablate.plan(
        cache=caches["train"], eval_caches=targets, out=out / "ablation", seeds=cfg.seeds, features=False, **head
    )
    if full_grid:
        layout = ablate.cache_layout(caches["train"])
        names = tuple(c.name for c in feature_cells(layout) if c.not_applicable is None)
        folder = out / "ablation-features"
        _step(f"ablate --cache {caches['train']} --seed {cfg.seeds[0]} --cells {','.join(names)} --out {folder}")
        plans["features"] = ablate.plan(
            cache=caches["train"], eval_caches=targets, out=folder, only=names, seed=cfg.seeds[0], **head
        )
    if cfg.recipe_cells:
        for name, (variant, _, train_opts, _) in RECIPE_CELLS.items():
            cache, folder = caches[variant or "train"], out / "ablation" / f"recipe-{name}"
            flags = "".join(f" --{k.replace('_', '-')} {v}" for k, v in train_opts.items())
            _step(f"ablate --cache {cache} --seeds {seeds} --no-features --cells {RECIPE_CELL}{flags} --out {folder}")
            plans[f"recipe-{name}"] = ablate.plan(
                cache=cache,
                eval_caches=targets,
                out=folder,
                seeds=cfg.seeds,
                features=False,
                only=(RECIPE_CELL,),
                **head,
                **train_opts,
            )
    return plans


def later_jobs(cfg: DemoConfig) -> list[str]:
    """The second batch's jobs as far as they are known before the caches exist (`ablation_plans` reads
    them): the pictures, and every run of Table IV and of the recipe cells (at most: a cell the cache
    cannot run, or the same as another, has none). The first batch's estimate of the time left counts
    them; `--full-grid`'s feature cells are known only once planned."""
    from diffseg.stages.ablate.cells import TABLE4
    from diffseg.stages.ablate.job import run_name

    names = ["pictures", *(f"table4-{run_name(c, s)}" for c in TABLE4 for s in cfg.seeds)]
    if cfg.recipe_cells:
        names += [f"recipe-{n}-{run_name(RECIPE_CELL, s)}" for n in RECIPE_CELLS for s in cfg.seeds]
    return names


def default_jobs(device: str) -> int:
    """Jobs at once: one per available core on a CPU (each single-threaded), one on a GPU."""
    from diffseg.core.threads import available_cores
    from diffseg.stages.device import resolve_device

    return 1 if resolve_device(device).type != "cpu" else available_cores()


def main(
    *,
    out: Path,
    size: str = "full",
    model: str | None = None,
    full_grid: bool = False,
    device: str = "auto",
    jobs: int | None = None,
) -> Path:
    """The demo; `jobs`: extractions and trainings at once, each in its own process (core.jobs; None:
    `default_jobs`; 1: one after another in this process)."""
    from diffseg.core.threads import available_cores
    from diffseg.stages.ablate import job as ablate

    cfg = demo_config(size)
    model = model or MODEL
    compare = COMPARE_MODEL if model != COMPARE_MODEL else None
    workers = jobs if jobs is not None else default_jobs(device)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    load_start = os.getloadavg()[0]
    cores = available_cores()

    # 1. stage one for both models, and the two main runs as soon as their caches exist
    work, caches = extract_jobs(cfg, out, model, device, cfg.recipe_cells)
    runs = {model: (out / "run", caches)}
    if compare:
        more, other = extract_jobs(cfg, out, compare, device)
        work += more
        runs[compare] = (out / f"run-{model_folder(compare)}", other)
    for m, (run, cs) in runs.items():
        needs = tuple(extract_job_name(m, name) for name in ("train", *TARGETS))
        work.append(Job(f"train-{model_folder(m)}", main_run, dict(cfg=cfg, run=run, caches=cs, device=device), needs))
    with JobPool(workers=workers, cores=cores, logs=out / "logs") as pool:
        done = pool.run(work, to_come=later_jobs(cfg))
        # 2. the ablation cells (their plans read the training caches written above) and the pictures
        plans = ablation_plans(cfg, out, caches, device, full_grid)
        later = [
            Job(
                "pictures",
                pictures,
                dict(cfg=cfg, out=out, model=model, run=runs[model][0], caches=caches, device=device),
            )
        ]
        later += [j for name, p in plans.items() for j in p.jobs(prefix=f"{name}-")]
        done.update(pool.run(later))
    tables = {
        name: ablate.tabulate(p, {k.removeprefix(f"{name}-"): d for k, d in done.items() if k.startswith(f"{name}-")})
        for name, p in plans.items()
    }
    timings = _job_seconds(done, model, compare)
    t = time.perf_counter()
    attention = ratios({m: cs for m, (_, cs) in runs.items()})
    timings["xattn ratios"] = time.perf_counter() - t
    pics = {**done["pictures"].result, "ablation": [ablation_chart(out, tables["table4"])]}
    timings[f"total (wall; {workers} job{'s' * (workers > 1)} at once)"] = time.perf_counter() - start

    report = write_report(
        cfg={**asdict(cfg), "model": model, "compare_model": compare, "full_grid": full_grid, "jobs": workers},
        out=out,
        runs={m: (run, done[f"train-{model_folder(m)}"].result) for m, (run, _) in runs.items()},
        ablation=tables["table4"],
        recipe={name: (tables[f"recipe-{name}"], RECIPE_CELLS[name][3]) for name in RECIPE_CELLS if cfg.recipe_cells},
        attention=attention,
        pictures=pics,
        timings=timings,
        load=(load_start, os.getloadavg()[0]),
    )
    shutil.rmtree(out / "tmp", ignore_errors=True)
    total = timings[next(k for k in timings if k.startswith("total"))]
    print(f"\nDemo finished in {total:.0f} s. Report: {report}", flush=True)
    print(f"Main run (accepted by `diffseg eval` and `diffseg predict`): {runs[model][0]}")
    return report


def _job_seconds(done: dict[str, Done], model: str, compare: str | None) -> dict[str, float]:
    """Seconds per step, summed over its jobs (which ran side by side)."""
    groups = {
        f"extract ({model})": f"extract-{model_folder(model)}-",
        f"train + eval ({model})": f"train-{model_folder(model)}",
    }
    if compare:
        groups[f"extract ({compare})"] = f"extract-{model_folder(compare)}-"
        groups[f"train + eval ({compare})"] = f"train-{model_folder(compare)}"
    groups["pictures"] = "pictures"
    groups |= {
        "ablate (Table IV)": "table4-",
        "ablate (feature selection, one seed)": "features-",
        "ablate (recipe cells)": "recipe-",
    }
    out = {}
    for label, prefix in groups.items():
        seconds = [d.seconds for name, d in done.items() if name.startswith(prefix)]
        if seconds:
            out[label] = sum(seconds)
    return out
