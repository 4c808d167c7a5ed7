"""`diffseg data check`: count samples, histogram the classes, list every problem with its file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from diffseg.core.errors import DataError
from diffseg.data import IGNORE, open_dataset


def scan(ds, limit: int | None = None) -> dict:
    """Decode the first `limit` samples: class pixel counts and problems ("path: problem")."""
    n = len(ds) if limit is None else min(limit, len(ds))
    counts = np.zeros(256, np.int64)
    problems: list[str] = []
    bad: list[str] = []
    bar = tqdm(
        range(n),
        desc=f"checking {ds.name} {ds.split}",
        unit="img",
        file=sys.stderr,
        disable=not sys.stderr.isatty() or n < 50,
    )
    for i in bar:
        try:
            sample = ds.load(i)
        except DataError as err:
            found = ds.check(i) or [str(err)]  # check lists image and label problems separately
            problems += found
            bad.append(ds.ids[i])
            continue
        counts += np.bincount(sample.label.ravel(), minlength=256)
    return {"checked": n, "counts": counts, "problems": problems, "bad_ids": bad}


def report(ds, result: dict) -> dict:
    counts = result["counts"]
    return {
        "dataset": ds.name,
        "split": ds.split,
        "root": None if ds.root is None else str(ds.root),
        "info": ds.info,
        "samples": len(ds),
        "checked": result["checked"],
        "problems": result["problems"],
        "bad_samples": result["bad_ids"],
        "histogram": {name: int(counts[c]) for c, name in enumerate(ds.classes.names)},
        "ignore_pixels": int(counts[IGNORE]),
    }


def format_text(rep: dict) -> str:
    where = f" at {rep['root']}" if rep["root"] else ""
    lines = [f"{rep['dataset']} {rep['split']}{where}: {rep['samples']} samples, {rep['checked']} checked"]
    labelled = sum(rep["histogram"].values())
    lines.append(f"{'class':<15} {'pixels':>14} {'share':>7}")
    for name, pixels in rep["histogram"].items():
        share = pixels / labelled if labelled else 0.0
        lines.append(f"{name:<15} {pixels:>14,d} {share:>7.2%}")
    lines.append(f"{'(ignore)':<15} {rep['ignore_pixels']:>14,d}")
    for problem in rep["problems"]:
        lines.append(f"problem: {problem}")
    n = len(rep["problems"])
    lines.append(f"{n} problem(s) in {len(rep['bad_samples'])} sample(s)" if n else "no problems")
    return "\n".join(lines)


def main(
    dataset: str,
    root: Path | None = None,
    split: str = "train",
    split_file: Path | None = None,
    mapillary_map: str = "A",
    conditions: tuple[str, ...] | None = None,
    limit: int | None = None,
    as_json: bool = False,
) -> int:
    """Check a dataset; returns the exit code (1 when problems were found)."""
    ds = open_dataset(
        dataset, root=root, split=split, split_file=split_file, mapillary_map=mapillary_map, conditions=conditions
    )
    rep = report(ds, scan(ds, limit))
    print(json.dumps(rep) if as_json else format_text(rep))
    return 1 if rep["problems"] else 0
