"""The paper's premise, measured in miniature: what trained diffusion features add over random
ones and over the pixels alone, in the source style and across the demo's domain shifts.

Backs the premise (README "The premise, measured"): trained diffusion features (`mini`) against
random ones (`tiny`) and the pixels alone. Outputs: experiments/premise.json, experiments/results.md.

One invocation trains the same head, with the demo's main-run recipe (DemoConfig `full`:
48 training images at 128 px, 16 per target, preset `5step` saving t = 60, 20, 1, kinds
res, blk, xattn, its main-run iterations (300 when the README's numbers were taken, 200 since), `light` fusion, lr 6e-4, warm-up 25, batch 4), once per
seed on each of three feature sets, and scores it on `val`, `val-night` and `val-fog`:

- `mini`: features of the built-in trained model (diffseg/pipeline/weights/mini);
- `tiny`: features of the built-in random model, same layers and steps;
- `pixels`: no diffusion model at all. Each cache sample holds the very image view the U-Net
  was given for the `mini` cache (same crop, flip and photometric draw: the extraction's own
  SampleRunner.view), scaled to [-1, 1] as the VAE sees it and rearranged by space-to-depth
  at stride 8 (torch pixel_unshuffle: 3 x 8 x 8 = 192 channels at 1/8 of the resolution),
  as one feature layer at one "step". The layer sits in the `up3.res2` slot (stride 8) only
  because the cache names layers by U-Net position; the record says model `pixels`. The
  fusion block derives its 1/16 and 1/32 levels from it (StridedDown), as it does for any
  selection without coarser layers, and the head is the same. Labels are checked equal to
  the `mini` cache's, sample by sample.

Stages run through their entry points (extract.job.main; train.job.main once per seed, which
scores every target at the end with the trainer's own scoring, as `diffseg eval` does; then
train.job.main_seeds tabulates the seeds), each extraction and training a job of
diffseg.core.jobs: `--jobs` at once (default one per core), each in its own process with
cores/jobs threads.
Nothing is tuned here: the recipe is the demo's, and val / val-night / val-fog only report.

Also printed for `mini` and `tiny`: the mean inside/outside ratio of cross-attention on each
target (`diffseg.stages.runs.attention.xattn_ratio`, the unconditional branch that the evaluation scores, whose
prompt names every class).

    python -m experiments.bench_premise                 # the full measurement (tens of minutes)
    python -m experiments.bench_premise --size small --seeds 0,1 --iters 4   # a smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from diffseg.stages.extract.config import ExtractConfig

import numpy as np

from diffseg.core.stats import pct, within_noise

HERE = Path(__file__).resolve().parent
ARMS = ("mini", "tiny", "pixels")
PIXEL_LAYER = "up3.res2"  # the stride-8 slot the pixels occupy (see the module docstring)
PIXEL_STRIDE = 8


def _ints(value: str | None) -> tuple[int, ...] | None:
    return None if value is None else tuple(int(v) for v in value.split(","))


def extract_options(cfg, model: str) -> ExtractConfig:
    """The demo's stage-one options with another model, on the CPU."""
    from diffseg.stages.demo.job import extract_options as demo_extract_options

    return demo_extract_options(cfg, model, "cpu")


def splits(cfg, targets: tuple[str, ...]) -> dict[str, int]:
    return {"train": cfg.train_images, **{t: cfg.target_images for t in targets}}


def extract_split(cfg, model: str, split: str, n: int, out: Path) -> Path:
    from diffseg.stages.extract import job as extract

    extract.main(dataclasses.replace(extract_options(cfg, model), split=split, limit=n, out=str(out)))
    return out


# -- the pixels-only baseline ---------------------------------------------------------------
def space_to_depth(image_HW3: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 3] -> float16 [1, 192, H/8, W/8]: the image in [-1, 1] (the VAE's input scale),
    each 8 x 8 patch stacked on channels (torch pixel_unshuffle order)."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(image_HW3)).permute(2, 0, 1).float() / 127.5 - 1.0
    return torch.nn.functional.pixel_unshuffle(x[None], PIXEL_STRIDE).to(torch.float16).numpy()


def pixel_record(source):
    """The record of a pixels cache: `source`'s record (dataset, views, prompts, resolution) with
    model `pixels`, one layer and one step."""
    from diffseg.cache.record import ModelRecord
    from diffseg.core.layers import LayerSpec

    W, H = source.resolution
    spec = LayerSpec(kind="res", stride=PIXEL_STRIDE, channels=3 * PIXEL_STRIDE**2, size=(H // 8, W // 8))
    trajectory = {**source.extract.trajectory, "steps": [0], "save_steps": [0], "layers": [PIXEL_LAYER]}
    fingerprint = hashlib.sha256(b"pixels: space-to-depth, stride 8, [-1, 1]").hexdigest()
    return dataclasses.replace(
        source,
        model=ModelRecord(name="pixels", fingerprint=fingerprint, prediction_type="none"),
        extract=dataclasses.replace(source.extract, trajectory=trajectory),
        layers={PIXEL_LAYER: spec},
        skipped=(),
        timings={},
        host={},
    )


class NoModel:
    """The extractor of the pixels runner: no VAE latent, no U-Net."""

    def latent(self, image, view):
        return None


def pixel_cache(cfg, model: str, source: Path, split: str, n: int, out: Path) -> Path:
    """A cache at `out` whose only feature layer holds the pixels of the views that `model`'s cache
    `source` was extracted from (the same plan: the extraction's own view code)."""
    from diffseg.cache import CacheReader, CacheWriter, schema
    from diffseg.stages.extract.plan import build_plan
    from diffseg.stages.extract.worker import SampleRunner

    class PixelRunner(SampleRunner):
        """The extraction's runner with the U-Net replaced by space-to-depth of the view."""

        def __init__(self, plan, writer):
            super().__init__(plan, models=None, writer=writer, extractor=NoModel())

        def batch_features(self, items):
            return [
                {schema.feature_name(b, PIXEL_LAYER): space_to_depth(it.image) for b in self.plan.branches}
                for it in items
            ]

    src = CacheReader(source)
    orig_max = None
    if src.is_eval:
        h, w = src.zarr_array(schema.ORIG_LABELS).shape[1:]
        orig_max = (int(h), int(w))
    writer = CacheWriter.create(out, pixel_record(src.record), src.ids, orig_label_max=orig_max)
    plan = build_plan(dataclasses.replace(extract_options(cfg, model), split=split, limit=n, out=str(source)))
    runner = PixelRunner(plan, writer)
    for done in runner.run_many(list(src.complete_indices())):
        i = done.index
        if not done.written:
            raise RuntimeError(f"pixels cache {out}: sample {done.id} failed: {done.reason}")
        mine = CacheReader(out).read(i, [schema.LABELS])[schema.LABELS]
        if not np.array_equal(mine, src.read(i, [schema.LABELS])[schema.LABELS]):
            raise RuntimeError(f"pixels cache {out}: sample {done.id} has another view than {source}")
    return out


# -- cross-attention inside / outside its class ----------------------------------------------
# -- the measurement ------------------------------------------------------------------------
def train_seed(cfg, caches: dict[str, Path], out: Path, seed: int, targets: tuple[str, ...]) -> None:
    """One seed of one arm: the demo's main run, scored on every target at the end."""
    from diffseg.stages.demo.job import main_run_options
    from diffseg.stages.runs.seeds import seed_dir
    from diffseg.stages.train import job as train

    run = seed_dir(out, seed)
    options = main_run_options(cfg, caches, "cpu", targets)
    train.main(cache=caches["train"], out=run, resume=(run / "config.json").is_file(), seed=seed, **options)


def summary(cfg, caches: dict[str, Path], out: Path, seeds: tuple[int, ...], targets: tuple[str, ...]) -> dict:
    """seeds.json of an arm whose seed runs are finished (train.main_seeds finds them done and tabulates)."""
    from diffseg.stages.demo.job import main_run_options
    from diffseg.stages.runs.files import read_json
    from diffseg.stages.runs.seeds import SUMMARY_JSON
    from diffseg.stages.train import job as train

    options = main_run_options(cfg, caches, "cpu", targets)
    train.main_seeds(cache=caches["train"], seeds=seeds, out=out, resume=True, **options)
    return read_json(out / SUMMARY_JSON)


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "load average: " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def run(
    cfg,
    seeds: tuple[int, ...],
    work: Path,
    jobs: int,
    targets: tuple[str, ...],
    arms: tuple[str, ...] = ARMS,
    models: dict[str, str] | None = None,
) -> dict:
    """Every extraction, pixels cache and training as a job (diffseg.core.jobs): `jobs` at once, each
    in its own process with cores/jobs threads, so the numbers depend on that thread count only.
    `models`: the model spec of the `mini` / `tiny` arms (default their names; e.g. a pre-training's
    OUT/model directory as `mini`, to compare it on `dev` before it ships)."""
    from diffseg.core.jobs import Job, JobPool
    from diffseg.core.threads import available_cores
    from diffseg.stages.runs.attention import xattn_ratio

    models = {"mini": "mini", "tiny": "tiny", **(models or {})}
    cores = available_cores()
    if jobs <= 1:  # everything here, in order
        import torch

        torch.set_num_threads(cores)
    res: dict[str, Any] = {
        "recipe": dataclasses.asdict(cfg),
        "seeds": list(seeds),
        "targets": list(targets),
        "models": {a: models[a] for a in ("mini", "tiny") if a in arms},
        "jobs": jobs,
        "threads": max(1, cores // jobs),
        "uptime_start": uptime(),
        "timings_s": {},
        "arms": {},
        "xattn": {},
    }
    parts = splits(cfg, targets)
    caches = {arm: {s: work / "cache" / arm / s for s in parts} for arm in ARMS}
    needed = {"mini", "tiny"} & (set(arms) | ({"mini"} if "pixels" in arms else set()))  # pixels use mini's views
    work_list = [
        Job(
            f"extract-{model}-{s}",
            extract_split,
            dict(cfg=cfg, model=models[model], split=s, n=n, out=caches[model][s]),
        )
        for model in ("mini", "tiny")
        if model in needed
        for s, n in parts.items()
    ]
    if "pixels" in arms:
        work_list += [
            Job(
                f"pixels-{s}",
                pixel_cache,
                dict(cfg=cfg, model=models["mini"], source=caches["mini"][s], split=s, n=n, out=caches["pixels"][s]),
                after=(f"extract-mini-{s}",),
            )
            for s, n in parts.items()
        ]
    prefix = {"mini": "extract-mini-", "tiny": "extract-tiny-", "pixels": "pixels-"}
    work_list += [
        Job(
            f"train-{arm}-seed{k}",
            train_seed,
            dict(cfg=cfg, caches=caches[arm], out=work / "runs" / arm, seed=k, targets=targets),
            after=tuple(prefix[arm] + s for s in parts),
        )
        for arm in arms
        for k in seeds
    ]
    t0 = time.perf_counter()
    with JobPool(workers=jobs, cores=cores, logs=work / "logs", echo=lambda line: print(line, flush=True)) as pool:
        done = pool.run(work_list)
    res["timings_s"]["wall (all jobs)"] = time.perf_counter() - t0
    for label, start in (
        ("extract mini", "extract-mini-"),
        ("extract tiny", "extract-tiny-"),
        ("write pixels caches", "pixels-"),
    ):
        res["timings_s"][label] = sum(d.seconds for n, d in done.items() if n.startswith(start))
    for model in ("mini", "tiny"):
        if model in arms:
            res["xattn"][model] = {t: xattn_ratio(caches[model][t]) for t in targets}
    for arm in arms:
        res["timings_s"][f"train {arm} ({len(seeds)} seeds)"] = sum(
            d.seconds for n, d in done.items() if n.startswith(f"train-{arm}-")
        )
        summ = summary(cfg, caches[arm], work / "runs" / arm, seeds, targets)
        mean = summ.get("mean_miou", summ["targets"][targets[0]])  # one target: its own row
        res["arms"][arm] = {t: {k: summ["targets"][t][k] for k in ("miou", "mean", "std")} for t in targets} | {
            "mean over targets": {k: mean[k] for k in ("miou", "mean", "std")}
        }
    res["uptime_end"] = uptime()
    return res


def _pct(v: float | None) -> str:
    return pct(v, 1)


def _cell(row: dict) -> str:
    return f"{_pct(row['mean'])} +- {_pct(row['std'])}"


def compare(a: dict, b: dict) -> tuple[float, bool]:
    """(difference of the means, whether it is within noise: smaller than the two stds added)."""
    diff = a["mean"] - b["mean"]
    return diff, within_noise(diff, a["std"], b["std"], rule="stds-added")


def markdown(res: dict) -> str:
    from diffseg.stages.demo.config import TARGETS as DEMO_TARGETS

    TARGETS = tuple(res.get("targets", DEMO_TARGETS))
    cols = [*TARGETS, "mean over targets"]
    seeds = res["seeds"]
    cfg = res["recipe"]
    lines = [
        f"Recipe: demo `{cfg['size']}` main run ({cfg['train_images']} training images at {cfg['resolution']} px, "
        f"{cfg['target_images']} per target, preset {cfg['preset']} saving t = {cfg['save_steps']}, kinds "
        f"{cfg['kinds']}, {cfg['iters']} iterations, {cfg['fusion']} fusion, lr {cfg['lr']}, warm-up "
        f"{cfg['warmup']}, batch {cfg['batch_size']}); seeds {', '.join(map(str, seeds))}; "
        f"{res.get('jobs', 1)} jobs at once, torch threads {res['threads']} each.",
        "",
        f"mIoU in % (mean +- std over {len(seeds)} seeds, std with n - 1):",
        "",
        "| features | " + " | ".join(cols) + " |",
        "|---|" + "---:|" * len(cols),
    ]
    for arm, rows in res["arms"].items():
        lines.append(f"| {arm} | " + " | ".join(_cell(rows[c]) for c in cols) + " |")
    lines += ["", "Per seed (mIoU %):", "", "| features | target | " + " | ".join(f"seed {s}" for s in seeds) + " |"]
    lines.append("|---|---|" + "---:|" * len(seeds))
    for arm, rows in res["arms"].items():
        for c in cols:
            lines.append(f"| {arm} | {c} | " + " | ".join(_pct(rows[c]["miou"][str(s)]) for s in seeds) + " |")
    lines += [
        "",
        "Cross-attention inside/outside its class mask (mean ratio over images, xattn layers and classes "
        "present; unconditional branch; 1.00 = flat), and in brackets its chance level (each mask scored on "
        "the other present classes' maps):",
        "",
        "| features | " + " | ".join(TARGETS) + " |",
        "|---|" + "---:|" * len(TARGETS),
    ]
    for model, per in res["xattn"].items():
        lines.append(
            f"| {model} | "
            + " | ".join(
                "n/a" if per[t]["ratio"] is None else f"{per[t]['ratio']:.2f} ({per[t]['chance']:.2f})" for t in TARGETS
            )
            + " |"
        )
    for model, per in res["xattn"].items():
        by_block = []
        for block in ("up1", "up2", "up3"):
            vals = [[v for k, v in per[t]["layers"].items() if k.startswith(block + ".") and v == v] for t in TARGETS]
            if all(vals):
                by_block.append(f"{block} " + " / ".join(f"{np.mean(v):.2f}" for v in vals))
        lines.append(f"\n{model}, mean of an up block's layers ({' / '.join(TARGETS)}): " + "; ".join(by_block))
    lines += ["", "Read plainly (a difference within the two stds added is called noise):", ""]
    arms = res["arms"]
    for a, b in (("mini", "tiny"), ("mini", "pixels"), ("tiny", "pixels")):
        if a not in arms or b not in arms:
            continue
        parts = []
        for c in cols:
            diff, noise = compare(arms[a][c], arms[b][c])
            parts.append(f"{c} {100 * diff:+.1f}" + (" (noise)" if noise else ""))
        lines.append(f"- {a} - {b}, points: " + "; ".join(parts))
    for arm in arms if len(TARGETS) > 1 else ():
        gaps = []
        for t in TARGETS[1:]:  # (none when the only target is dev)
            diff, noise = compare(arms[arm][TARGETS[0]], arms[arm][t])
            gaps.append(f"{t} {100 * -diff:+.1f}" + (" (noise)" if noise else ""))
        lines.append(f"- domain gap for {arm} (target - {TARGETS[0]}, points): " + "; ".join(gaps))
    lines += ["", "Timings (s): " + "; ".join(f"{k} {v:.0f}" for k, v in res["timings_s"].items())]
    lines += [f"Load: at start `{res['uptime_start']}`; at end `{res['uptime_end']}`."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    from diffseg.stages.demo.config import DemoConfig, demo_config
    from diffseg.stages.runs.seeds import parse_seeds

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="full", help="the demo size whose recipe is used (full | small)")
    ap.add_argument("--seeds", default="0,1,2", help="training seeds per arm")
    ap.add_argument(
        "--targets",
        default="val,val-night,val-fog",
        help="demo splits to score: the three reporting targets, or dev (the tuning split: compare a "
        "candidate model there before it ships, never on the targets)",
    )
    ap.add_argument("--arms", default=",".join(ARMS), help="feature sets to train: mini, tiny, pixels")
    ap.add_argument("--mini-model", default="mini", help="the model of the `mini` arm (e.g. a pretrain OUT/model)")
    ap.add_argument("--iters", type=int, default=None, help="override the recipe's iterations (smoke runs)")
    ap.add_argument("--train-images", type=int, default=None, help="override (smoke runs)")
    ap.add_argument("--target-images", type=int, default=None, help="override (smoke runs)")
    ap.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="extractions and trainings at once, each a process with cores/jobs threads (default: one per core)",
    )
    ap.add_argument("--work", default=None, help="keep caches and runs here (a rerun resumes); default: a temp dir")
    ap.add_argument("--json", default=str(HERE / "premise.json"), help="where the JSON goes")
    ap.add_argument("--show", default=None, help="print the tables of an earlier run's JSON and stop")
    args = ap.parse_args(argv)
    if args.show is not None:
        res = json.loads(Path(args.show).read_text())
        print(markdown(res))
        return res
    overrides = {
        k: v
        for k, v in (("iters", args.iters), ("train_images", args.train_images), ("target_images", args.target_images))
        if v is not None
    }
    cfg: DemoConfig = dataclasses.replace(demo_config(args.size), **overrides)
    seeds = parse_seeds(args.seeds)
    if len(seeds) < 2:
        sys.exit("--seeds: give at least two (a spread needs them)")
    from diffseg.core.threads import available_cores

    jobs = args.jobs or available_cores()
    targets = tuple(t.strip() for t in args.targets.split(",") if t.strip())
    arms = tuple(a.strip() for a in args.arms.split(",") if a.strip())
    if set(arms) - set(ARMS) or not arms:
        sys.exit(f"--arms: choose among {', '.join(ARMS)}")
    with contextlib.redirect_stdout(sys.stderr):  # the stages' reports: stdout keeps the tables alone
        if args.work is None:
            with tempfile.TemporaryDirectory() as tmp:
                res = run(cfg, seeds, Path(tmp), jobs, targets, arms, {"mini": args.mini_model})
        else:
            res = run(cfg, seeds, Path(args.work), jobs, targets, arms, {"mini": args.mini_model})
    Path(args.json).write_text(json.dumps(res, indent=1, default=str))
    print(markdown(res))
    print(f"written: {args.json}", file=sys.stderr)
    return res


if __name__ == "__main__":
    main()
