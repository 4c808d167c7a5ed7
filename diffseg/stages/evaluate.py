"""`diffseg eval --run RUN --cache C [--cache C2 ...] [--json]`: score a run on evaluation caches.

Loads the run's recorded config and its final weights (else the newest checkpoint),
checks every cache against the run (same model fingerprint as the training cache, the
layers and saved steps the run uses), and scores the unconditional branch with the
trainer's own scoring (scoring.py). Prints the per-class IoU table in Markdown (or one
JSON object with --json) and writes both into <run>/eval/<targets>.{json,md}.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from diffseg.stages.device import autocast_dtype, resolve_device
from diffseg.stages.runs.files import write_json
from diffseg.stages.runs.model import eval_targets
from diffseg.stages.runs.record import load_segmentor, read_run, train_extract
from diffseg.stages.runs.scoring import score_targets


def main(run: Path, caches: list[Path], as_json: bool = False, device: str = "auto") -> dict:
    record = read_run(run)
    cfg = record.cfg
    targets = eval_targets(
        [str(c) for c in caches],
        fingerprint=record.train_cache["model_fingerprint"],
        train_cache=cfg.cache,
        train_extract=train_extract(record),
        layers=cfg.layers,
        layer_specs=record.layer_specs,
        save_steps=cfg.save_steps,
    )
    dev = resolve_device(device)
    model, which = load_segmentor(record, dev)
    synthia = record.train_cache.get("dataset") == "synthia"
    report, table = score_targets(model, targets, dev, synthia=synthia, autocast_dtype=autocast_dtype(dev))
    report = {**report, "run": str(run), "weights": which}
    folder = Path(run) / "eval"
    folder.mkdir(exist_ok=True)
    stem = "+".join(t.name for t in targets)
    write_json(folder / f"{stem}.json", report)
    (folder / f"{stem}.md").write_text(table)
    if as_json:
        print(json.dumps(report))
    else:
        print(f"{run} ({which} weights) on {', '.join(t.path for t in targets)}:\n")
        print(table, end="")
        print(f"\nwritten: {folder / stem}.json, .md", file=sys.stderr)
    return report
