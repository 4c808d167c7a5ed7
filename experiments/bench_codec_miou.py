"""Demo mIoU per feature codec, paired over seeds: what a lossy codec costs the method.

Backs the feature codecs' accuracy claim: int8, pca and bitround caches cost the demo's mIoU
no more than its seed noise. Outputs: experiments/codec_miou.json, experiments/results.md.

One invocation: stage one once with `raw` (the demo's `full` caches, `mini` features unless
`--model` says otherwise), `diffseg cache convert` of every cache to each codec, then the
demo's main-run recipe trained with the same seeds on every codec's caches and scored on
`val`, `val-night`, `val-fog`. Seeds are paired (seed k of a codec against seed k of raw:
same initialisation, same batches), so the table reports the paired difference's mean and
std; a difference smaller than its spread is noise.

    python -m experiments.bench_codec_miou --codecs int8,pca:k=32,bitround --seeds 0,1,2 --iters 300

(`--iters 300`: the README's numbers were taken when the demo's main run had 300 iterations.)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

from diffseg.core.stats import mean_over_targets
from diffseg.stages.demo.config import TARGETS


def extract_raw(root: Path, model: str) -> dict[str, Path]:
    """The demo's `full` caches (raw) under root/raw/<split>; reused when already complete."""
    from diffseg.stages.demo.config import demo_config
    from diffseg.stages.demo.job import extract_options
    from diffseg.stages.extract import job as extract

    cfg = demo_config("full")
    caches = {}
    for split in ("train", *TARGETS):
        out = root / "raw" / split
        n = cfg.train_images if split == "train" else cfg.target_images
        extract.main(dataclasses.replace(extract_options(cfg, model, "cpu"), split=split, limit=n, out=str(out)))
        caches[split] = out
    return caches


def convert_all(root: Path, raw: dict[str, Path], codec: str) -> dict[str, Path]:
    from diffseg.cache.convert import convert

    folder = root / codec.replace(":", "_").replace("=", "").replace(",", "_").replace(";", "+")
    caches = {}
    for split, src in raw.items():
        caches[split] = folder / "cache" / split
        convert(src, codec, caches[split], progress=False)
    return caches


def train_seeds(out: Path, caches: dict[str, Path], seeds: tuple[int, ...], iters: int | None) -> dict:
    """The demo's main-run recipe, one run per seed; {target: {seed: mIoU}} (fractions)."""
    from diffseg.stages.demo.config import demo_config
    from diffseg.stages.demo.job import main_run_options
    from diffseg.stages.runs.files import read_json
    from diffseg.stages.runs.seeds import SUMMARY_JSON
    from diffseg.stages.train import job as train

    cfg = demo_config("full")
    if iters is not None:
        cfg = dataclasses.replace(cfg, iters=iters)
    if not (out / SUMMARY_JSON).is_file():
        train.main_seeds(
            cache=caches["train"], seeds=seeds, out=out, resume=out.is_dir(), **main_run_options(cfg, caches, "cpu")
        )
    summary = read_json(out / SUMMARY_JSON)
    return {t: {int(s): v for s, v in summary["targets"][t]["miou"].items()} for t in TARGETS}


def bytes_per_sample(cache: Path) -> float:
    """Feature bytes one complete sample's files take on disk (after the codec and any compressor)."""
    from diffseg.cache.reader import CacheReader

    reader = CacheReader(cache)
    stored, _ = reader.stored_feature_bytes()
    return stored / len(reader.complete_indices())


def paired(a: dict[int, float], b: dict[int, float]) -> tuple[float, float]:
    """mean and sample std (n - 1) of b - a over the shared seeds, in mIoU points."""
    d = [100 * (b[s] - a[s]) for s in sorted(a)]
    mean = sum(d) / len(d)
    std = (sum((x - mean) ** 2 for x in d) / (len(d) - 1)) ** 0.5 if len(d) > 1 else 0.0
    return mean, std


def markdown(res: dict) -> str:
    seeds = res["seeds"]
    lines = [
        f"Demo `full` caches ({res['model']} features), main-run recipe, seeds {', '.join(map(str, seeds))} "
        f"paired with raw; mIoU in % (mean +- std over seeds), difference to raw as paired mean +- std. "
        f"Load average {res['load']}; {res['seconds']:.0f} s.",
        "",
        "| codec | train feature bytes/sample | ratio | " + " | ".join(TARGETS) + " | mean diff to raw |",
        "|---|---:|---:|" + "---:|" * (len(TARGETS) + 1),
    ]
    raw = res["codecs"]["raw"]
    for name, row in res["codecs"].items():
        cells = []
        for t in TARGETS:
            xs = [100 * v for v in row["miou"][t].values()]
            m = sum(xs) / len(xs)
            s = (sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) ** 0.5 if len(xs) > 1 else 0.0
            if name == "raw":
                cells.append(f"{m:.2f} +- {s:.2f}")
            else:
                dm, ds = paired(raw["miou"][t], row["miou"][t])
                cells.append(f"{m:.2f} +- {s:.2f} ({dm:+.2f} +- {ds:.2f})")
        if name == "raw":
            diff = "-"
        else:
            mean_raw = {k: mean_over_targets([raw["miou"][t][k] for t in TARGETS]) for k in seeds}
            mean_codec = {k: mean_over_targets([row["miou"][t][k] for t in TARGETS]) for k in seeds}
            dm, ds = paired(mean_raw, mean_codec)
            verdict = "within noise" if abs(dm) <= ds else ("worse" if dm < 0 else "better")
            diff = f"{dm:+.2f} +- {ds:.2f} ({verdict})"
        ratio = raw["bytes"] / row["bytes"]
        lines.append(
            f"| `{name}` | {row['bytes'] / 2**20:.3f} MiB | {ratio:.2f} | " + " | ".join(cells) + f" | {diff} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default=".bench/codec_miou", help="working folder (reused: a rerun resumes)")
    ap.add_argument("--model", default="mini")
    ap.add_argument("--codecs", default="int8,pca:k=32,bitround", help="codecs besides raw, comma-separated specs")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--iters", type=int, default=None, help="main-run iterations (default: the demo's)")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    seeds = tuple(int(s) for s in args.seeds.split(","))
    specs = [s for s in args.codecs.split(",") if s]
    root = Path(args.work)
    t0 = time.perf_counter()
    raw = extract_raw(root, args.model)
    res: dict = {"model": args.model, "seeds": list(seeds), "codecs": {}}
    for spec in ["raw", *specs]:
        caches = raw if spec == "raw" else convert_all(root, raw, spec)
        runs = (root / "runs" / spec.replace(":", "_").replace("=", "")) if spec != "raw" else root / "runs" / "raw"
        miou = train_seeds(runs, caches, seeds, args.iters)
        res["codecs"][spec] = {"bytes": bytes_per_sample(caches["train"]), "miou": miou}
        print(
            f"{spec}: " + json.dumps({t: [round(100 * v, 2) for v in m.values()] for t, m in miou.items()}), flush=True
        )
    res["seconds"] = time.perf_counter() - t0
    res["load"] = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    text = markdown(res)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
