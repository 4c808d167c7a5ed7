"""`diffseg demo`: the whole method end to end on the built-in `tiny` model and demo data.

From nothing: stage one extracts the demo training split (conditional with masked class
prompts, and unconditional) and the three demo targets (`val` in the source style,
`val-night` and `val-fog` shifted), all with `--uncond-prompt classes` so that `xattn`
exists in both branches; stage two trains the fusion block and head, scores every target,
runs the Table IV ablation grid, and `report.md` gathers the tables and pictures.

Every step goes through the same command-line entry points a user types (the typer app),
so the demo also proves that those commands work together. Layout of `--out`:
`cache/<split>/`, `run/` (a normal run directory), `ablation/`, `pictures/`, `report.md`,
`results.json`.
"""

from __future__ import annotations

import shlex
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from diffseg.core.errors import DiffsegError

TARGETS = ("val", "val-night", "val-fog")


@dataclass(frozen=True, kw_only=True)
class DemoConfig:
    size: str  # "small" | "full"
    resolution: int  # square image side fed to the VAE (px)
    train_images: int
    target_images: int  # per target split
    preset: str
    steps: str | None  # override of the preset's evaluated steps (None: the preset's)
    save_steps: str | None
    kinds: str
    iters: int  # main run
    ablation_iters: int  # each ablation cell
    batch_size: int
    lr: float
    warmup: int
    fusion: str
    pictures_per_target: int


def demo_config(size: str) -> DemoConfig:
    """`full` fits in about 10 minutes on 2 CPU cores; `small` is the CI-sized run."""
    if size == "full":
        return DemoConfig(
            size="full",
            resolution=128,
            train_images=48,
            target_images=16,
            preset="5step",
            steps=None,
            save_steps="60,20,1",
            kinds="res,blk,xattn",
            iters=300,
            ablation_iters=80,
            batch_size=4,
            lr=6e-4,
            warmup=25,
            fusion="light",
            pictures_per_target=4,
        )
    if size == "small":
        return DemoConfig(
            size="small",
            resolution=64,
            train_images=6,
            target_images=3,
            preset="5step",
            steps="0,1,20",
            save_steps="20,1",
            kinds="res,blk,xattn",
            iters=12,
            ablation_iters=6,
            batch_size=2,
            lr=6e-4,
            warmup=2,
            fusion="light",
            pictures_per_target=2,
        )
    raise DiffsegError(f"unknown demo size {size!r}: small or full")


def _cli(argv: list[str]) -> None:
    """Run one diffseg command in-process, exactly as typed; a failure stops the demo."""
    from diffseg.cli import app

    print(f"\n$ diffseg {shlex.join(argv)}", flush=True)
    code = app(argv, standalone_mode=False, prog_name="diffseg")
    if code not in (None, 0):
        raise DiffsegError(f"demo step failed (exit {code}): diffseg {shlex.join(argv)}")


def extract_all(cfg: DemoConfig, out: Path, device: str) -> dict[str, Path]:
    common = [
        "--dataset",
        "demo",
        "--model",
        "tiny",
        "--preset",
        cfg.preset,
        "--kinds",
        cfg.kinds,
        "--resolution",
        f"{cfg.resolution}x{cfg.resolution}",
        "--uncond-prompt",
        "classes",
        "--device",
        device,
    ]
    if cfg.steps:
        common += ["--steps", cfg.steps]
    if cfg.save_steps:
        common += ["--save-steps", cfg.save_steps]
    caches = {}
    for split in ("train", *TARGETS):
        cache = out / "cache" / split
        n = cfg.train_images if split == "train" else cfg.target_images
        _cli(["extract", *common, "--split", split, "--limit", str(n), "--out", str(cache)])
        caches[split] = cache
    return caches


def train_main(cfg: DemoConfig, out: Path, caches: dict[str, Path], device: str) -> Path:
    run = out / "run"
    argv = [
        "train",
        "--cache",
        str(caches["train"]),
        "--out",
        str(run),
        "--fusion",
        cfg.fusion,
        "--iters",
        str(cfg.iters),
        "--batch-size",
        str(cfg.batch_size),
        "--lr",
        str(cfg.lr),
        "--warmup",
        str(cfg.warmup),
        "--eval-every",
        "0",
        "--ckpt-every",
        str(cfg.iters),
        "--workers",
        "0",
        "--device",
        device,
    ]
    for t in TARGETS:
        argv += ["--eval-cache", str(caches[t])]
    if (run / "config.json").is_file():
        argv.append("--resume")  # a rerun of the demo continues (or re-scores) the main run
    _cli(argv)
    return run


def evaluate_main(run: Path, caches: dict[str, Path], device: str) -> dict:
    from diffseg.stages import evaluate

    print(f"\n$ diffseg eval --run {run} " + " ".join(f"--cache {caches[t]}" for t in TARGETS), flush=True)
    return evaluate.main(run=run, caches=[caches[t] for t in TARGETS], as_json=False, device=device)


def ablate_all(cfg: DemoConfig, out: Path, caches: dict[str, Path], device: str) -> Path:
    folder = out / "ablation"
    argv = [
        "ablate",
        "--cache",
        str(caches["train"]),
        "--out",
        str(folder),
        "--iters",
        str(cfg.ablation_iters),
        "--batch-size",
        str(cfg.batch_size),
        "--fusion",
        cfg.fusion,
        "--lr",
        str(cfg.lr),
        "--warmup",
        str(cfg.warmup),
        "--device",
        device,
    ]
    for t in TARGETS:
        argv += ["--eval-cache", str(caches[t])]
    _cli(argv)
    return folder


def main(*, out: Path, size: str = "full", device: str = "auto") -> Path:
    from diffseg.stages.demo.report import pictures, write_report

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
