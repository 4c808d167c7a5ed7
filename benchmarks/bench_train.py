"""Ablation cost of the two-stage design: a training iteration with the U-Net in the loop
versus one from the feature cache, and the data-wait share of a cached iteration.

    /work/venv/bin/python benchmarks/bench_train.py [--model sd21-random] [--size 256] [--quick]

For each preset (reference, 5step, lite), at size x size px, both branches (IPKL):

- cached iteration: the real trainer (`diffseg.stages.train.job.main`, reference fusion, batch 1,
  DataLoader workers) on a cache of that preset's exact feature shapes (random float16
  features written with CacheWriter: the step cost depends on the shapes only). Median
  per-iteration wall time after the first (warm-up) iteration; data-wait share = time
  blocked on the DataLoader / wall time, from metrics.jsonl.
- online iteration: what the reference pays instead, features recomputed every iteration
  by stage one's FeatureExtractor under no_grad (the same trajectory config) for both
  branches, plus the same training step. The trajectory is NOT run in full: a truncated
  config with 1 and with 2 U-Net evaluations is timed per branch, the difference gives the
  cost per evaluation, and it is scaled to the preset's evaluation count
  (fixed + n_evals * per_eval; reference 34, 5step and lite 5). The conditional branch's
  cost grows with the classes present in the crop (one prompt copy each, batched): the
  label used has `cond_classes` classes.
- ratio = online / cached (goal >= 50 for reference at 256 px).

`run(...)` returns every number as a dict; `__main__` prints it as JSON and a short table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks._cuda import sync
from diffseg.cache.synthetic import make_cache
from diffseg.pipeline.config import TrajectoryConfig, preset
from diffseg.pipeline.extractor import FeatureExtractor
from diffseg.pipeline.models import load_models
from diffseg.stages.train import job as train


def synthetic_label(size: int, n_classes: int, seed: int = 0) -> np.ndarray:
    """uint8 [size, size] with vertical stripes of `n_classes` train ids (0, 1, ...)."""
    cols = np.arange(size) * n_classes // size
    return np.broadcast_to(cols[None, :], (size, size)).astype(np.uint8).copy()


def time_cached(cache: Path, out: Path, iters: int, workers: int, device: str = "cpu") -> dict:
    """Median seconds per cached iteration (after the first) and the data-wait share."""
    train.main(
        cache=cache,
        out=out,
        fusion="reference",
        iters=iters,
        warmup=0,
        eval_every=0,
        ckpt_every=10**6,
        workers=workers,
        device=device,
        log_every=1,
    )
    recs = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    recs = [r for r in recs if "wall_s" in r][1:]  # drop the warm-up iteration
    wall = [r["wall_s"] for r in recs]
    wait = [r["data_wait_s"] for r in recs]
    return {
        "iter_s": statistics.median(wall),
        "data_wait_s": statistics.median(wait),
        "data_wait_share": sum(wait) / sum(wall),
        "iters_timed": len(recs),
    }


def time_online_extraction(models, cfg: TrajectoryConfig, size: int, cond_classes: int, repeat: int = 2) -> dict:
    """Seconds of one sample's features for both branches, scaled from 1- and 2-evaluation runs
    (best of `repeat`, alternating, after one warm-up)."""
    image = np.random.default_rng(0).integers(0, 255, (1, size, size, 3), dtype=np.uint8)
    label = synthetic_label(size, cond_classes)[None]
    out: dict = {}
    for branch in ("uncond", "cond"):
        kw: dict[str, Any] = {"labels": label} if branch == "cond" else {}
        ex = {
            k: FeatureExtractor(
                models, TrajectoryConfig(**{**cfg.to_dict(), "steps": cfg.steps[:2], "save_steps": (cfg.steps[k - 1],)})
            )
            for k in (1, 2)
        }
        ex[1].extract_tensors(branch, image, ["warm"], grad_mode="no_grad", **kw)
        t = {1: float("inf"), 2: float("inf")}
        for _ in range(repeat):
            for k in (1, 2):
                sync(models.device)
                t0 = time.perf_counter()
                ex[k].extract_tensors(branch, image, ["s0"], grad_mode="no_grad", **kw)
                sync(models.device)
                t[k] = min(t[k], time.perf_counter() - t0)
        per_eval = max(t[2] - t[1], 0.0)
        out[branch] = {
            "one_eval_s": t[1],
            "two_evals_s": t[2],
            "per_eval_s": per_eval,
            "fixed_s": max(t[1] - per_eval, 0.0),
        }
    return out


def scale_online(measured: dict, n_evals: int) -> dict:
    """Per-sample extraction seconds for a trajectory of n_evals U-Net evaluations."""
    out = {"n_evals": n_evals, **measured}
    for branch in ("uncond", "cond"):
        m = measured[branch]
        out[branch] = {**m, "sample_s": m["fixed_s"] + n_evals * m["per_eval_s"]}
    out["both_s"] = out["uncond"]["sample_s"] + out["cond"]["sample_s"]
    return out


def run(
    model: str = "sd21-random",
    size: int = 256,
    presets=("reference", "5step", "lite"),
    iters: int = 4,
    cache_samples: int = 3,
    workers: int = 2,
    cond_classes: int = 6,
    online: bool = True,
    workdir: Path | None = None,
    device: str = "cpu",
) -> dict:
    """`device` cuda: the U-Net in float16 (as extraction runs it there), training with autocast."""
    torch.manual_seed(0)
    results: dict = {
        "model": model,
        "size": size,
        "iters": iters,
        "workers": workers,
        "cond_classes": cond_classes,
        "threads": torch.get_num_threads(),
        "device": device,
        "presets": {},
    }
    t0 = time.perf_counter()
    dtype = torch.float16 if torch.device(device).type == "cuda" else torch.float32
    models = load_models(model, device=device, dtype=dtype)
    results["model_build_s"] = time.perf_counter() - t0
    measured: dict = {}  # per layer set: the cost per U-Net evaluation does not depend on the step count
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        for name in presets:
            cfg = preset(name)
            cache = make_cache(
                Path(tmp) / name / "cache",
                cache_samples,
                unet=models.unet.config,
                layers=cfg.layers,
                resolution=(size, size),
                save_steps=cfg.save_steps,
                labels="blocks",
                block=size // 8,
                features="label",
            )  # random values of the preset's shapes
            cached = time_cached(cache, Path(tmp) / name / "run", iters, workers, device)
            row: dict[str, Any] = {"layers": len(cfg.layers), "saved_steps": len(cfg.save_steps), "cached": cached}
            if online:
                if cfg.layers not in measured:
                    measured[cfg.layers] = time_online_extraction(models, cfg, size, cond_classes)
                extraction = scale_online(measured[cfg.layers], cfg.last_index + 1)
                step = cached["iter_s"] - cached["data_wait_s"]  # the same training step, no data wait
                row["online"] = {**extraction, "iter_s": extraction["both_s"] + step}
                row["ratio"] = row["online"]["iter_s"] / cached["iter_s"]
            else:
                row["online"] = "not measured"
            results["presets"][name] = row
            print(f"{name}: {json.dumps(row)}", file=sys.stderr, flush=True)
    return results


def _table(res: dict) -> str:
    lines = [
        f"model {res['model']}, {res['size']} px, both branches, cond label with {res['cond_classes']} classes, "
        f"{res['threads']} threads, reference fusion",
        "| preset | U-Net evals | online s/iter | cached s/iter | ratio | data wait |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, row in res["presets"].items():
        on = row["online"]
        online = f"{on['iter_s']:.2f}" if isinstance(on, dict) else "not measured"
        n = on["n_evals"] if isinstance(on, dict) else "-"
        ratio = f"{row['ratio']:.0f}x" if "ratio" in row else "-"
        lines.append(
            f"| {name} | {n} | {online} | {row['cached']['iter_s']:.2f} | {ratio} | "
            f"{100 * row['cached']['data_wait_share']:.1f}% |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="sd21-random")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--presets", default="reference,5step,lite")
    ap.add_argument("--iters", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--cond-classes", type=int, default=6)
    ap.add_argument("--no-online", action="store_true", help="time the cached side only")
    args = ap.parse_args()
    res = run(
        model=args.model,
        size=args.size,
        presets=tuple(args.presets.split(",")),
        iters=args.iters,
        workers=args.workers,
        cond_classes=args.cond_classes,
        online=not args.no_online,
    )
    print(json.dumps(res, indent=2), file=sys.stderr)  # the full record, for whoever digs in
    print(_table(res))
