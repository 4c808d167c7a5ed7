"""The demo's pictures and `report.md` / `results.json`.

Pictures: a prediction grid (rows = target domains; image over prediction over ground
truth), PCA-to-RGB views of the cached features per layer and step, the cross-attention
heat maps of the paper's Fig. 3 (both from `diffseg cache show`'s code), and the
ablation bar chart.
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

from diffseg.stages.demo.config import TARGETS


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


def pictures(cfg, out: Path, run: Path, caches: dict[str, Path], ablation: Path, device: str) -> dict[str, list[Path]]:
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
    chart = folder / "ablation.png"
    shutil.copyfile(ablation / "ablation.png", chart)
    return {"predictions": [grid], "features": flat, "ablation": [chart]}


def _ablation_rows(ablation: Path) -> list[dict]:
    rows = []
    with open(ablation / "ablation.csv", newline="") as f:
        for r in csv.DictReader(f):
            mean = r["miou:mean"]
            rows.append(
                {
                    "cell": r["cell"],
                    "group": r["group"],
                    "table_iv": r["group"] == "table4",
                    "applicable": r["status"] != "n/a",
                    "mean": float(mean) if mean else math.nan,
                    "targets": {
                        k[5:]: (float(v) if v else None)
                        for k, v in r.items()
                        if k.startswith("miou:") and k != "miou:mean"
                    },
                }
            )
    return rows


def _pct(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"


def write_report(
    *,
    cfg: dict,
    out: Path,
    run: Path,
    caches: dict[str, Path],
    results: dict,
    ablation: Path,
    pictures: dict[str, list[Path]],
    timings: dict[str, float],
) -> Path:
    out = Path(out)
    targets = results["targets"]
    eval_md = sorted((run / "eval").glob("*.md"))
    per_class = eval_md[-1].read_text() if eval_md else ""
    rel = lambda p: Path(p).relative_to(out).as_posix()  # noqa: E731
    lines = [
        "# diffseg demo report",
        "",
        "The whole DIFF + IPKL method on the built-in `tiny` model (SD 2.1's block structure, small "
        "widths, **random weights**) and the built-in procedural street-scene dataset. Numbers show that "
        "the pipeline works end to end and how the cells compare on this toy problem; they say nothing "
        "about Stable Diffusion's features (use `--model` with real SD 2.1 weights for that).",
        "",
        "## Setup",
        "",
        f"- images {cfg['resolution']}x{cfg['resolution']} px; source `train` split: {cfg['train_images']} images "
        f"(conditional + unconditional branch); targets `val` (source style), `val-night`, `val-fog`: "
        f"{cfg['target_images']} images each",
        f"- stage one: preset `{cfg['preset']}`"
        + (f", evaluated t = {cfg['steps']}" if cfg["steps"] else "")
        + (f", saved t = {cfg['save_steps']}" if cfg["save_steps"] else "")
        + f", kinds `{cfg['kinds']}`, `--uncond-prompt classes`",
        f"- stage two: fusion `{cfg['fusion']}`, {cfg['iters']} iterations (ablation cells: "
        f"{cfg['ablation_iters']}), batch {cfg['batch_size']}, lr {cfg['lr']}, warm-up {cfg['warmup']}",
        f"- main run: `{rel(run)}` (a normal run directory: `diffseg eval --run {run} --cache ...`)",
        "",
        "## Results (main run, unconditional branch)",
        "",
        "| target | mIoU (%) | samples |",
        "|---|---:|---:|",
        *[f"| {t['target']} | {_pct(t['miou'])} | {t['samples']} |" for t in targets],
        f"| **mean** | **{_pct(results.get('mean_miou'))}** | |",
        "",
        "### Per-class IoU (%)",
        "",
        per_class.strip(),
        "",
        "## Predictions per target domain",
        "",
        "Each column is one sample: image, prediction, ground truth (Cityscapes colours).",
        "",
        *[f"![predictions]({rel(p)})" for p in pictures["predictions"]],
        "",
        "## Ablation (the paper's Table IV, and the feature-selection axis)",
        "",
        (ablation / "ablation.md").read_text().split("\n", 1)[1].strip(),
        "",
        *[f"![ablation]({rel(p)})" for p in pictures["ablation"]],
        "",
        "## What the cache holds",
        "",
        "PCA-to-RGB views of cached features (3 principal components per layer and saved step) and the "
        "cross-attention heat maps per class (the paper's Fig. 3), for training sample 0.",
        "",
        *[f"![{p.stem}]({rel(p)})" for p in pictures["features"]],
        "",
        "## Time",
        "",
        "| step | seconds |",
        "|---|---:|",
        *[f"| {k} | {v:.0f} |" for k, v in timings.items()],
        "",
    ]
    report = out / "report.md"
    report.write_text("\n".join(lines))
    summary = {
        "config": cfg,
        "run": str(run),
        "timings": timings,
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
        "ablation": _ablation_rows(ablation),
    }
    (out / "results.json").write_text(json.dumps(summary, indent=2))
    return report
