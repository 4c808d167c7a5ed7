"""`diffseg ablate`: the paper's Table IV (and the feature-selection axis) from one training cache.

Every cell (planned in cells.py) is a normal training run of the real trainer under
`<out>/cells/<name>/`, reading a subset of the same cache, scored on every target cache at the
end. Then `<out>/ablation.md`, `.csv` and `.png` are written (report.py).

Rerunning is cheap and safe:
- a finished cell (final weights and its scores on every target present) is not retrained;
  a finished cell missing a target's score (a new --eval-cache) is only scored;
- an interrupted cell (config.json without final weights) resumes from its last checkpoint;
- a finished cell trained with other settings (iterations, fusion...) is refused with the
  first difference, rather than mixed into the table.

The Table IV rows need a training cache with both branches: a cache without the conditional
branch is refused before anything runs (exit 1, the line names the cache and
`--branches uncond,cond`), because three of the five rows cannot be computed from it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from diffseg.cache import CacheReader
from diffseg.cache.fastread import keep_freed_memory
from diffseg.core import location
from diffseg.core.errors import DiffsegError
from diffseg.core.jobs import Done, Job, run_jobs
from diffseg.core.stats import pct
from diffseg.core.threads import available_cores
from diffseg.stages.ablate.cells import CELL_DECIDED, CacheLayout, Cell, plan_cells
from diffseg.stages.ablate.report import write_reports
from diffseg.stages.device import resolve_device, spread
from diffseg.stages.runs.files import CONFIG, read_json, write_json
from diffseg.stages.runs.model import held_layers
from diffseg.stages.runs.record import per_target_miou, read_run, score_run
from diffseg.stages.runs.scoring import target_names
from diffseg.stages.runs.seeds import mean_std, seed_dir
from diffseg.stages.train import job as train_stage
from diffseg.stages.train.checkpoint import FINAL
from diffseg.stages.train.config import ABLATION_CELL, TrainConfig, default, given, recorded_part

SCORES = "ablation_scores.json"  # per cell: {"targets": {name: {"cache", "miou"}}, "seconds"}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cache_layout(cache: str | Path) -> CacheLayout:
    """The cache's layers per branch; refuses a cache without the cond branch."""
    reader = CacheReader(cache)
    held = held_layers(reader)
    if not held.get("cond"):
        raise DiffsegError(
            f"{cache} holds only the {', '.join(b for b in held if held[b])} branch; the Table IV cells "
            f"ipkl-nocons/-kl/-l2 train on the conditional branch: extract the training cache with "
            f"--branches uncond,cond"
        )
    return CacheLayout(
        layers={name: spec.to_dict() for name, spec in reader.record.layers.items()},
        branch_layers=held,
        save_steps=reader.record.save_steps,
    )


def cell_options(cell: Cell, *, cache: str | Path, eval_caches: Sequence[str | Path], options: dict) -> dict:
    """Keywords of `train.main` for one cell: TrainConfig's defaults replaced by ABLATION_CELL, then by
    the options given to `ablate`, then by the cell's selection, loss and own options (a grid's
    overrides: the more specific wins); scored once, at the end.
    On a GPU a cell reads with TrainConfig's reader threads: ABLATION_CELL's inline reads suit a CPU."""
    cell_defaults = dict(ABLATION_CELL)
    if str(options.get("device", "")).startswith("cuda"):
        del cell_defaults["workers"]
    opts = {**cell_defaults, **options, **dict(cell.options)}
    return dict(
        cache=str(cache),
        eval_caches=[str(p) for p in eval_caches],
        layers=cell.layers,
        save_steps=cell.save_steps,
        branches=cell.branches,
        consistency=cell.consistency,
        w_cond=cell.w_cond,
        w_uncond=cell.w_uncond,
        w_cons=cell.w_cons,
        **opts,
        eval_every=0,
        ckpt_every=min(default("ckpt_every"), opts["iters"]),
    )


def check_recorded(cell_dir: Path, options: dict) -> None:
    """A cell folder trained with other settings is refused, naming the first difference."""
    recorded = read_json(cell_dir / CONFIG)["config"]
    wanted, _ = train_stage.resolve_config(**options)
    want = recorded_part(wanted)
    have = recorded_part(TrainConfig.from_dict(recorded))
    for key in want:
        if want[key] != have.get(key):
            raise DiffsegError(
                f"{cell_dir} was trained with {key}={have.get(key)!r}; this ablation asks "
                f"{key}={want[key]!r}: use another --out or remove that folder"
            )


def read_scores(cell_dir: Path) -> dict:
    path = cell_dir / SCORES
    return read_json(path) if path.is_file() else {"targets": {}, "seconds": 0.0}


def missing_targets(
    cell_dir: Path, eval_caches: Sequence[str | Path], names: list[str]
) -> list[tuple[str | Path, str]]:
    have = read_scores(cell_dir)["targets"]
    return [(p, n) for p, n in zip(eval_caches, names) if n not in have or not location.same(have[n]["cache"], p)]


def run_cell(cell: Cell, cell_dir: Path, options: dict, eval_caches: Sequence[str | Path], names: list[str]) -> str:
    """Train/resume/score one cell as needed; returns what was done ("done earlier", "trained", ...).

    The trainer scores every target at the end (eval.json); only a target it has not scored (a
    new --eval-cache, or an interruption between the final weights and eval.json) is scored here."""
    keep_freed_memory()  # cache/fastread.py (a cell may run in a worker process: each calls it)
    started = time.perf_counter()
    did = "done earlier"
    if (cell_dir / CONFIG).is_file():
        check_recorded(cell_dir, options)
    if not (cell_dir / FINAL).is_file():
        resume = (cell_dir / CONFIG).is_file()
        (cell_dir / SCORES).unlink(missing_ok=True)  # scores of earlier weights
        train_stage.main(out=cell_dir, resume=resume, **options)
        did = "resumed" if resume else "trained"
    missing = missing_targets(cell_dir, eval_caches, names)
    if missing:
        found = per_target_miou(read_json(cell_dir / "eval.json")) if (cell_dir / "eval.json").is_file() else {}
        lacking = [p for p, _ in missing if location.normalize(p) not in found]
        if lacking:
            found.update(per_target_miou(score_run(read_run(cell_dir), lacking, options["device"])[0]))
            did = did if did != "done earlier" else "scored"
        record = read_scores(cell_dir)
        for path, name in missing:
            record["targets"][name] = {"cache": location.normalize(path), "miou": found[location.normalize(path)]}
        record["seconds"] = record.get("seconds", 0.0) + time.perf_counter() - started
        write_json(cell_dir / SCORES, record)
    return did


@dataclass(frozen=True)
class Plan:
    """What one `ablate` call trains: its cells, and one run (cell, run folder, train options) per cell
    and seed. The demo submits these runs beside its other jobs, then calls `tabulate`."""

    cache: str | Path
    eval_caches: tuple[str | Path, ...]
    out: Path
    cells: list[Cell]  # every planned cell (also those without a run of their own)
    todo: list[Cell]  # the cells that train
    names: list[str]  # target names
    options: dict  # the given training options, device resolved
    seeds: tuple[int, ...] | None

    def runs(self) -> list[tuple[Cell, Path, dict]]:
        """(cell, run folder, train.main keywords) per run; on CUDA run k trains on GPU k mod the visible
        GPUs (`spread`), so runs trained at once (--jobs) do not all share cuda:0."""
        out: list[tuple[Cell, Path, dict]] = []
        for cell in self.todo:
            cell_dir = self.out / "cells" / cell.name
            for run_dir, run_options in (
                [(cell_dir, self.options)]
                if self.seeds is None
                else [(seed_dir(cell_dir, s), {**self.options, "seed": s}) for s in self.seeds]
            ):
                run_options = {**run_options, "device": spread(run_options["device"], len(out))}
                opts = cell_options(cell, cache=self.cache, eval_caches=self.eval_caches, options=run_options)
                out.append((cell, run_dir, opts))
        return out

    def job_name(self, cell: Cell, options: dict) -> str:
        return run_name(cell.name, options["seed"] if self.seeds is not None else None)

    def jobs(self, prefix: str = "") -> list[Job]:
        """One job per run, named `<prefix><cell>[-seed<k>]` (core.jobs); each returns what it did."""
        return [
            Job(
                prefix + self.job_name(cell, opts),
                run_cell,
                dict(cell=cell, cell_dir=run_dir, options=opts, eval_caches=self.eval_caches, names=self.names),
            )
            for cell, run_dir, opts in self.runs()
        ]


def run_name(cell: str, seed: int | None = None) -> str:
    """The job name of one run of a cell: with `--seeds`, one per seed."""
    return cell + (f"-seed{seed}" if seed is not None else "")


def plan(
    *,
    cache: str | Path,
    eval_caches: Sequence[str | Path],
    out: Path,
    features: bool = True,
    seeds: tuple[int, ...] | None = None,
    only: Sequence[str] | None = None,
    grid: str | Path | None = None,
    **options,
) -> Plan:
    """The cells and runs of one ablation (see `main`); refuses bad arguments before anything runs."""
    if not eval_caches:
        raise DiffsegError("ablate needs at least one --eval-cache (the targets the cells are scored on)")
    options = given(**options)
    decided = sorted(set(options) & CELL_DECIDED)
    if decided:
        raise DiffsegError(f"ablate: the cells decide {', '.join(decided)}; give them in a --grid file, not as options")
    if seeds is not None and "seed" in options:
        raise DiffsegError("--seed and --seeds: give one of them")
    options["device"] = resolve_device(options.get("device", default("device"))).type
    layout = cache_layout(cache)
    cells = plan_cells(layout, features=features, grid=grid)
    if only is not None:
        unknown = sorted(set(only) - {c.name for c in cells})
        if unknown:
            raise DiffsegError(
                f"ablate: no cell named {', '.join(unknown)} (cells: {', '.join(c.name for c in cells)})"
            )
        # a kept cell whose twin is left out trains itself
        cells = [replace(c, same_as=None) if c.same_as not in (None, *only) else c for c in cells if c.name in only]
    names = target_names([str(p) for p in eval_caches])
    todo = [c for c in cells if c.runs]
    return Plan(cache, tuple(eval_caches), Path(out), cells, todo, names, options, seeds)


def main(*, jobs: int = 1, **arguments) -> Path:
    """Run every missing cell, then write ablation.md/.csv/.png under `out`; returns `out`.

    `arguments`: those of `plan` (cache, eval_caches, out, features, seeds, only, grid: a grid file, None:
    grids/table4.toml) and the TrainConfig
    fields given for every cell (None or absent: not given, ABLATION_CELL's or TrainConfig's
    default). `seeds`: every cell once per seed under `<cell>/seed-<k>/`, the tables showing
    mean +- std over them. `only`: the names of the planned cells to run (e.g. the full method
    alone on another cache, as the demo's recipe cells do); None: all of them. `jobs`: runs
    trained at once, each in its own process (core.jobs; 1: one after another, here)."""
    p = plan(**arguments)
    (p.out / "cells").mkdir(parents=True, exist_ok=True)
    log(
        f"ablate: {len(p.todo)} cells to train on {p.cache} ({len(p.cells) - len(p.todo)} listed without a run of "
        f"their own: same config as another cell or not applicable), targets {', '.join(p.names)}"
    )
    return tabulate(p, run_jobs(p.jobs(), workers=jobs, cores=available_cores(), logs=p.out / "logs", echo=log))


def tabulate(p: Plan, done: dict[str, Done] | None = None) -> Path:
    """Read every run's scores (all runs finished) and write the tables; `done`: the runs' job results
    by `Plan.job_name`, for each cell's line (what was done, in how many seconds)."""
    results: dict[str, dict[str, float | None]] = {}
    spreads: dict[str, dict[str, float | None]] | None = {} if p.seeds is not None else None
    runs = p.runs()
    for cell in p.todo:
        mine = [(run_dir, p.job_name(c, opts)) for c, run_dir, opts in runs if c.name == cell.name]
        found: dict[str, list] = {n: [] for n in p.names}
        for run_dir, _ in mine:
            scores = read_scores(run_dir)["targets"]
            for n in p.names:
                found[n].append(scores[n]["miou"])
        stats = {n: mean_std(v) for n, v in found.items()}
        results[cell.name] = {n: m for n, (m, _) in stats.items()}
        if spreads is not None:
            spreads[cell.name] = {n: sd for n, (_, sd) in stats.items()}
        shown = ", ".join(f"{n} {pct(v)}" for n, v in results[cell.name].items())
        jobs = [done[name] for _, name in mine if done and name in done]
        did = (
            f"{', '.join(sorted({str(d.result) for d in jobs}))} in {sum(d.seconds for d in jobs):.1f} s"
            if jobs
            else "scores read"
        )
        log(f"{cell.name}: {did}; mIoU {shown}")
    options, seeds, out = p.options, p.seeds, p.out
    in_header = ("iters", "batch_size", "fusion", "lr", "warmup", "seed")
    o = {**{name: default(name) for name in in_header}, **ABLATION_CELL, **options}
    seeds_shown = f"seed {o['seed']}" if seeds is None else f"seeds {', '.join(map(str, seeds))} (mean +- std)"
    where = f"`{out / 'cells'}/<cell>/`" if seeds is None else f"`{out / 'cells'}/<cell>/seed-<k>/`"
    header = (
        f"# diffseg ablate\n\nTraining cache: `{p.cache}`; {o['iters']} iterations per cell, batch {o['batch_size']}, "
        f"fusion `{o['fusion']}`, lr {o['lr']}, warm-up {o['warmup']}, {seeds_shown}. Cells: {where} "
        f"(normal run directories)."
    )
    write_reports(out, p.cells, p.names, results, header, spreads)
    log(f"ablate: wrote {out / 'ablation.md'}, {out / 'ablation.csv'}, {out / 'ablation.png'}")
    return out
