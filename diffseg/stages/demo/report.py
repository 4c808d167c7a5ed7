"""The demo's pictures and `report.md` / `results.json`.

Pictures: the model's generated samples (one per pre-training style) and autoencoder
reconstructions of demo target images (diffseg.pretrain.samples), a prediction grid
(rows = target domains; image over prediction over ground truth), PCA-to-RGB views of the
cached features per layer and step, the cross-attention heat maps of the paper's Fig. 3
(both from `diffseg cache show`'s code), and the ablation bar chart.

Numbers over seeds: each ablation cell is trained once per seed; a cell shows mean +- sample
std over the seeds, and the mean over targets is computed per seed first. Two cells are
compared with NOISE_RULE: a difference smaller than the larger of the two spreads is printed
"within noise" and not ranked.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from diffseg.core.stats import mean_over_targets, pct, within_noise
from diffseg.stages.demo.config import TARGETS
from diffseg.stages.runs.seeds import mean_std


@torch.no_grad()
def predict_cached(run: Path, cache: Path, n: int, device: str) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(image, prediction, ground truth) of the first n samples of an evaluation cache.

    Predictions come from the run's model on the cached unconditional features, upsampled to
    the label's original size; the image is re-rendered from the demo dataset (the cache keeps
    features and labels, not pixels).
    """
    from diffseg.cache import CacheReader, FeatureDataset
    from diffseg.data import open_dataset
    from diffseg.stages.device import resolve_device
    from diffseg.stages.runs.record import load_segmentor, read_run, run_targets

    record = read_run(run)
    (target,) = run_targets(record, [cache])
    dev = resolve_device(device)
    model, _ = load_segmentor(record, dev)
    reader = CacheReader(cache)
    data = FeatureDataset(str(cache), ("uncond",), target.layers, target.step_indices)
    w, h = reader.record.resolution
    ds = open_dataset("demo", split=reader.record.dataset.split, demo_size=(w, h))
    by_id = {sid: k for k, sid in enumerate(ds.ids)}
    rows = []
    for pos in range(min(n, len(data))):
        item = data[pos]
        feats = {k: v[None].to(dev).float() for k, v in item["feats"]["uncond"].items()}
        gt = reader.orig_label(item["index"]) if reader.is_eval else item["label"].numpy()
        logits = F.interpolate(model(feats).float(), size=gt.shape, mode="bilinear", align_corners=False)
        pred = logits.argmax(1)[0].to(torch.uint8).cpu().numpy()
        sample = ds.load(by_id[reader.ids[item["index"]]])
        rows.append((sample.image, pred, gt.astype(np.uint8)))
    return rows


def pictures(cfg, out: Path, model: str, run: Path, caches: dict[str, Path], device: str) -> dict[str, list[Path]]:
    """Every picture but the ablation chart (`ablation_chart`, once the cells are done)."""
    from diffseg.cache import CacheReader
    from diffseg.stages.tools.cacheshow import write_pictures
    from diffseg.stages.viz import prediction_grid

    folder = Path(out) / "pictures"
    folder.mkdir(exist_ok=True)
    rows = {t: predict_cached(run, caches[t], cfg.pictures_per_target, device) for t in TARGETS}
    grid = folder / "predictions.png"
    prediction_grid(rows, cell_h=max(96, cfg.resolution)).save(grid)
    reader = CacheReader(caches["train"])
    written = write_pictures(reader, folder / "features", 0)
    # The report shows the PCA grids and the finest xattn layer at the least noisy saved step;
    # `diffseg cache show` writes every layer and step for whoever wants them all.
    xattn = sorted(k for k, spec in reader.layer_specs.items() if spec.kind == "xattn")
    keep = {"_features.png"} | ({f"_{xattn[-1]}_t{min(reader.save_steps)}.png"} if xattn else set())
    flat = []
    for p in written:
        if any(p.name.endswith(k) for k in keep):
            dest = folder / p.name
            shutil.move(str(p), dest)
            flat.append(dest)
    shutil.rmtree(folder / "features", ignore_errors=True)
    return {"predictions": [grid], "model": model_pictures(cfg, folder, model, rows, device), "features": flat}


def ablation_chart(out: Path, ablation: Path) -> Path:
    """The Table IV chart beside the other pictures."""
    chart = Path(out) / "pictures" / "ablation.png"
    chart.parent.mkdir(exist_ok=True)
    shutil.copyfile(ablation / "ablation.png", chart)
    return chart


# The classes every generated sample is asked for: road, sidewalk, building, vegetation, sky, car.
SAMPLE_CLASSES = (0, 1, 2, 8, 10, 13)


def model_pictures(cfg, folder: Path, model: str, rows: dict, device: str) -> list[Path]:
    """samples.png (one DDIM sample per pre-training style, seed 0) and reconstructions.png (the
    demo target images shown with the predictions, over the model's autoencoder reconstructions)."""
    from diffseg.data.demo.pretrain import PRETRAIN_STYLES
    from diffseg.pretrain.samples import model_pictures as render
    from diffseg.pretrain.samples import style_prompt
    from diffseg.stages.device import resolve_device
    from diffseg.stages.viz import image_rows

    styles = PRETRAIN_STYLES[: cfg.samples]
    images = np.stack([img for t in TARGETS for img, _, _ in rows[t]])
    generated, recon = render(
        model, [style_prompt(s, SAMPLE_CLASSES) for s in styles], images, seed=0, device=resolve_device(device)
    )
    samples = folder / "samples.png"
    image_rows({f"{model}: samples ({', '.join(styles)})": list(generated)}, cell_h=max(96, cfg.resolution)).save(
        samples
    )
    recons = folder / "reconstructions.png"
    image_rows(
        {
            f"demo images ({', '.join(TARGETS)})": list(images),
            f"{model} autoencoder reconstructions": list(recon),
        },
        cell_h=max(96, cfg.resolution),
    ).save(recons)
    return [samples, recons]


def ratios(caches_by_model: dict[str, dict[str, Path]]) -> dict[str, dict[str, dict]]:
    """{model: {target: xattn_ratio(...)}} on the target caches' unconditional branch."""
    from diffseg.stages.runs.attention import xattn_ratio

    return {m: {t: xattn_ratio(caches[t]) for t in TARGETS} for m, caches in caches_by_model.items()}


# Seeds ------------------------------------------------------------------------------------
NOISE_RULE = (
    "a difference between two cells (same seeds, same budget) is **within noise** when its size is "
    "smaller than the larger of the two cells' sample standard deviations over seeds; only larger "
    "differences are ranked"
)


def cell_seeds(folder: Path, cell: str, seeds: tuple[int, ...], targets: tuple[str, ...]) -> dict[str, list]:
    """{target: [mIoU per seed], "mean": [mean over targets per seed]} of one ablation cell."""
    from diffseg.stages.ablate.job import SCORES
    from diffseg.stages.runs.files import read_json
    from diffseg.stages.runs.seeds import seed_dir

    per = [read_json(seed_dir(folder / "cells" / cell, s) / SCORES)["targets"] for s in seeds]
    values: dict[str, list] = {t: [p[t]["miou"] for p in per] for t in targets}
    values["mean"] = [mean_over_targets([values[t][k] for t in targets]) for k in range(len(seeds))]
    return values


def stats(values: list) -> dict:
    mean, std = mean_std(values)
    return {"seeds": values, "mean": mean, "std": std}


def compare(a: dict, b: dict) -> dict:
    """The difference of two cells' means and whether it is within noise (NOISE_RULE)."""
    if a["mean"] is None or b["mean"] is None:
        return {"diff": None, "within_noise": None}
    diff = a["mean"] - b["mean"]
    return {"diff": diff, "within_noise": within_noise(diff, a["std"], b["std"])}


def _diff_text(c: dict) -> str:
    if c["diff"] is None:
        return "n/a"
    signed = f"{100 * c['diff']:+.1f}"
    return f"within noise ({signed})" if c["within_noise"] else f"**{signed}**"


def _ablation_rows(ablation: Path) -> list[dict]:
    with open(ablation / "ablation.csv", newline="") as f:
        return list(csv.DictReader(f))


def seed_table(cfg: dict, ablation: Path, recipe: dict[str, tuple[Path, str]]) -> dict[str, dict]:
    """{cell: {"group", "description", "reference", "targets": {target | "mean": stats}}}: the Table IV
    cells and the recipe cells (each the ipkl-l2 cell of its own ablation folder)."""
    seeds, out = tuple(cfg["seeds"]), {}
    for row in _ablation_rows(ablation):
        if row["group"] != "table4" or row["status"] == "n/a":
            continue
        twin = row["status"].split(":", 1)[1] if row["status"].startswith("same_as:") else row["cell"]
        values = cell_seeds(ablation, twin, seeds, TARGETS)
        out[row["cell"]] = {
            "group": "table4",
            "description": row["description"],
            "reference": float(row["paper_miou"]) if row["paper_miou"] else None,
            "targets": {k: stats(v) for k, v in values.items()},
        }
    for name, (folder, description) in recipe.items():
        values = cell_seeds(folder, "ipkl-l2", seeds, TARGETS)
        out[name] = {
            "group": "recipe",
            "description": f"ipkl-l2 with {description}",
            "reference": None,
            "targets": {k: stats(v) for k, v in values.items()},
        }
    return out


# Table IV's steps (what each row adds) and each recipe cell against the full method it changes.
COMPARISONS = (
    ("diff", "baseline"),
    ("ipkl-l2", "diff"),
    ("ipkl-l2", "baseline"),
    ("ipkl-kl", "ipkl-l2"),
    ("ipkl-nocons", "ipkl-l2"),
)


def comparisons(table: dict[str, dict]) -> list[dict]:
    pairs = [*COMPARISONS, *((name, "ipkl-l2") for name, c in table.items() if c["group"] == "recipe")]
    out = []
    for a, b in pairs:
        if a in table and b in table:
            cols = {k: compare(table[a]["targets"][k], table[b]["targets"][k]) for k in (*TARGETS, "mean")}
            out.append({"a": a, "b": b, "targets": cols})
    return out


def _pct(v) -> str:
    return pct(v, 1)


def _ref(v: float | None) -> str:
    return pct(v, 2, missing="")


def _ms(s: dict) -> str:
    return "n/a" if s["mean"] is None else f"{pct(s['mean'], 1)} +- {pct(s['std'], 1)}"


def _miou_by_target(results: dict) -> dict[str, float | None]:
    return {t["target"]: t["miou"] for t in results["targets"]}


def features_section(cfg: dict, out: Path) -> list[str]:
    folder = out / "ablation-features"
    if not cfg["full_grid"] or not (folder / "ablation.md").is_file():
        return []
    return [
        "## Feature selection (`--full-grid`; **single seed**, not comparable within noise)",
        "",
        (folder / "ablation.md").read_text().split("\n", 1)[1].strip(),
        "",
    ]


def write_report(
    *,
    cfg: dict,
    out: Path,
    runs: dict[str, tuple[Path, dict]],
    ablation: Path,
    recipe: dict[str, tuple[Path, str]],
    attention: dict[str, dict[str, dict]],
    pictures: dict[str, list[Path]],
    timings: dict[str, float],
    load: tuple[float, float] | None = None,
) -> Path:
    out = Path(out)
    model, compare_model = cfg["model"], cfg["compare_model"]
    run, results = runs[model]
    targets = results["targets"]
    eval_md = sorted((run / "eval").glob("*.md"))
    per_class = eval_md[-1].read_text() if eval_md else ""
    rel = lambda p: Path(p).relative_to(out).as_posix()  # noqa: E731
    table = seed_table(cfg, ablation, recipe)
    pairs = comparisons(table)
    seeds = ", ".join(map(str, cfg["seeds"]))
    main_miou = {m: _miou_by_target(res) for m, (_, res) in runs.items()}
    models = [m for m in (model, compare_model) if m]
    # The main runs have one seed each: their difference is judged against the spread of the
    # ablation's full-method cell (same features, same head, fewer iterations) on that target.
    spread = {k: (table["ipkl-l2"]["targets"][k]["std"] if "ipkl-l2" in table else None) for k in (*TARGETS, "mean")}
    main_mean = {m: results_mean(v) for m, v in main_miou.items()}
    vs_rows = []
    for t in (*TARGETS, "mean"):
        values = {m: (main_mean[m] if t == "mean" else main_miou[m].get(t)) for m in models}
        cells = " | ".join(_pct(values[m]) for m in models)
        ratio = " | ".join(_xattn_cell(attention[m], t) for m in models)
        diff = ""
        if compare_model:
            c = main_compare(values[model], values[compare_model], spread[t])
            diff = f" | {_diff_text(c)}"
        vs_rows.append(f"| {t} | {cells}{diff} | {ratio} |")
    head_models = " | ".join(f"mIoU `{m}` (%)" for m in models)
    head_ratio = " | ".join(f"xattn in/out `{m}` (chance)" for m in models)
    lines = [
        "# diffseg demo report",
        "",
        f"The whole DIFF + IPKL method on the built-in procedural street-scene dataset, with features of "
        f"`{model}`"
        + (
            " (a small Stable Diffusion that `diffseg pretrain` trained on unlabelled demo-world images in five "
            "styles; pre-training never saw these evaluation images)"
            if model == "mini"
            else ""
        )
        + (
            f", and the same main run on the features of `{compare_model}` (SD 2.1's block structure, small "
            "widths, **random weights**) to show what trained features add."
            if compare_model
            else "."
        )
        + " This is a toy world on a CPU budget: the numbers say how the cells compare here, not what "
        "Stable Diffusion 2.1 does on GTAV.",
        "",
        "## Setup",
        "",
        f"- images {cfg['resolution']}x{cfg['resolution']} px; source `train` split: {cfg['train_images']} images "
        f"(conditional + unconditional branch); targets `val` (source style), `val-night`, `val-fog`: "
        f"{cfg['target_images']} images each. No setting was chosen by looking at the targets: the iterations "
        "are a time-budget choice, not tuned (tuning belongs on the `dev` split).",
        f"- stage one: model `{model}`"
        + (f" (and `{compare_model}` for the comparison)" if compare_model else "")
        + f", preset `{cfg['preset']}`"
        + (f", evaluated t = {cfg['steps']}" if cfg["steps"] else "")
        + (f", saved t = {cfg['save_steps']}" if cfg["save_steps"] else "")
        + f", kinds `{cfg['kinds']}`, `--uncond-prompt classes`",
        f"- stage two: fusion `{cfg['fusion']}`, batch {cfg['batch_size']}, lr {cfg['lr']}, warm-up "
        f"{cfg['warmup']}; main runs {cfg['iters']} iterations, seed 0 (one seed each); ablation cells "
        f"{cfg['ablation_iters']} iterations each, **seeds {seeds}** (mean +- std). The iterations are what the "
        f"demo's time budget allows (size `{cfg['size']}`), not a converged recipe.",
        f"- main run: `{rel(run)}` (a normal run directory: `diffseg eval --run {run} --cache ...`)",
        "",
        "## Trained vs random features (main run, unconditional branch, seed 0)",
        "",
        f"| target | {head_models}"
        + (f" | `{model}` - `{compare_model}`" if compare_model else "")
        + f" | {head_ratio} |",
        "|---|" + "---:|" * (len(models) * 2 + (1 if compare_model else 0)),
        *vs_rows,
        "",
        "mIoU in %. The main runs have one seed each; their difference is marked within noise when it is "
        "smaller than the spread over seeds of the ablation's `ipkl-l2` cell (the same method, fewer "
        "iterations) on that target. `xattn in/out`: the mean over present classes (>= 1 % of the image), "
        "images, `xattn` layers and saved steps of a class's cross-attention inside its mask divided by outside "
        "it, and in brackets its chance level: the same mean with each mask scored on the *other* present "
        "classes' maps. A map knows where its class is by as much as the first number beats the second "
        "(`diffseg.stages.runs.attention`).",
        "",
        "### Per-class IoU (%), main run",
        "",
        per_class.strip(),
        "",
        "## What the model learned",
        "",
        f"Samples generated by `{model}` (DDIM, 25 steps, guidance 3, one prompt per pre-training style) and its "
        "autoencoder's reconstructions of the demo target images shown below.",
        "",
        *[f"![{p.stem}]({rel(p)})" for p in pictures["model"]],
        "",
        "## Predictions per target domain",
        "",
        "Each column is one sample: image, prediction, ground truth (Cityscapes colours).",
        "",
        *[f"![predictions]({rel(p)})" for p in pictures["predictions"]],
        "",
        f"## Table IV with seeds ({seeds}), and the recipe cells",
        "",
        "| cell | description | paper GTAV->CS | " + " | ".join(TARGETS) + " | mean |",
        "|---|---|---:|" + "---:|" * (len(TARGETS) + 1),
        *[
            f"| {name} | {c['description']} | {_ref(c['reference'])} | "
            + " | ".join(_ms(c["targets"][k]) for k in (*TARGETS, "mean"))
            + " |"
            for name, c in table.items()
        ],
        "",
        "mIoU in %, mean +- sample std over the seeds (the mean column: the mean over targets per seed, then "
        "mean +- std). The recipe cells are the full method (`ipkl-l2`) with one training recipe "
        "choice changed (photometric views, views per image, rare-class sampling), on the same seeds.",
        "",
        "### Differences",
        "",
        f"Rule: {NOISE_RULE}.",
        "",
        "| cell | against | " + " | ".join(TARGETS) + " | mean |",
        "|---|---|" + "---:|" * (len(TARGETS) + 1),
        *[
            f"| {p['a']} | {p['b']} | " + " | ".join(_diff_text(p["targets"][k]) for k in (*TARGETS, "mean")) + " |"
            for p in pairs
        ],
        "",
        "Differences in mIoU points; bold: larger than the spread.",
        "",
        *[f"![ablation]({rel(p)})" for p in pictures["ablation"]],
        "",
        *features_section(cfg, out),
        "## What the cache holds",
        "",
        "PCA-to-RGB views of cached features (3 principal components per layer and saved step) and the "
        "cross-attention heat maps per class (the paper's Fig. 3), for training sample 0.",
        "",
        *[f"![{p.stem}]({rel(p)})" for p in pictures["features"]],
        "",
        "## Time",
        "",
        (
            f"Seconds per step, summed over its jobs: {cfg['jobs']} ran at once, each in its own process "
            "(`--jobs`; their logs are in `logs/`), so the steps add up to more than the wall time."
            if cfg.get("jobs", 1) > 1
            else "Seconds per step; the jobs ran one after another in one process (`--jobs 1`)."
        ),
        "",
        "| step | seconds |",
        "|---|---:|",
        *[f"| {k} | {v:.0f} |" for k, v in timings.items()],
        "",
        *(
            [
                f"Load average (1 min) at the start and the end: {load[0]:.1f}, {load[1]:.1f} (2 cores: above 2 "
                "the demo shared the machine and took longer than it would alone)."
            ]
            if load
            else []
        ),
        "",
    ]
    report = out / "report.md"
    report.write_text("\n".join(lines))
    summary = {
        "config": cfg,
        "model": model,
        "compare_model": compare_model,
        "run": str(run),
        "timings": timings,
        "load_average": load,
        "targets": [
            {
                "dataset": t["dataset"],
                "target": t["target"],
                "miou": t["miou"] if t["miou"] is not None else math.nan,
                "samples": t["samples"],
            }
            for t in targets
        ],
        "mean_miou": results.get("mean_miou"),
        "models": {m: {"run": str(runs[m][0]), "miou": main_miou[m], "mean_miou": main_mean[m]} for m in models},
        "xattn_ratio": {m: {t: attention[m][t]["ratio"] for t in TARGETS} for m in models},
        "xattn_chance": {m: {t: attention[m][t]["chance"] for t in TARGETS} for m in models},
        "noise_rule": NOISE_RULE,
        "seeds": list(cfg["seeds"]),
        "cells": table,
        "comparisons": pairs,
        "pictures": {k: [rel(p) for p in v] for k, v in pictures.items()},
    }
    (out / "results.json").write_text(json.dumps(summary, indent=2))
    return report


def _xattn_cell(attention: dict[str, dict], target: str) -> str:
    """ "ratio (chance)" of one model on a target, or their means over the targets ("mean")."""

    def pick(key: str) -> float:
        return attention[target][key] if target != "mean" else mean_over_targets([attention[k][key] for k in TARGETS])

    return f"{pick('ratio'):.2f} ({pick('chance'):.2f})"


def results_mean(miou: dict[str, float | None]) -> float | None:
    return mean_over_targets([miou.get(t) for t in TARGETS])


def main_compare(a: float | None, b: float | None, spread: float | None) -> dict:
    """One-seed main runs: their difference, within noise when smaller than `spread`."""
    if a is None or b is None:
        return {"diff": None, "within_noise": None}
    return {"diff": a - b, "within_noise": within_noise(a - b, spread, None)}  # no spread: ranked
