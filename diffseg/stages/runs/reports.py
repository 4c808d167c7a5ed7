"""How `diffseg eval` hands back its scores, cached or online: the report printed (Markdown table and each
target's aAcc/mAcc, or one JSON object with --json) and written as <run>/eval/<targets>.{json,md}, and each
target's confusion matrix (int64, ground-truth rows, prediction columns) as
<run>/eval/<target>/confusion_matrix.npy with a row-normalised picture beside it (confusion_matrix.png).
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from diffseg.core.atomic import atomic_write
from diffseg.core.classes import CLASS_NAMES
from diffseg.stages.runs.files import write_json
from diffseg.stages.runs.scoring import Scored, summarize


def publish(
    run: Path,
    scored: list[Scored],
    which: str,
    *,
    synthia: bool,
    as_json: bool,
    class_names: Sequence[str] = CLASS_NAMES,
) -> dict:
    """Write the report, the table and the confusion matrices under <run>/eval; print the report."""
    from diffseg.stages.viz import confusion_png

    report, table = summarize(scored, synthia=synthia, class_names=class_names)
    report = {**report, "run": str(run), "weights": which}
    rows = report.get("targets", [report])
    folder = Path(run) / "eval"
    folder.mkdir(exist_ok=True)
    stem = "+".join(r["target"] for r in rows)
    write_json(folder / f"{stem}.json", report)
    atomic_write(folder / f"{stem}.md", table)
    for s in scored:
        name = s.row["target"]
        (folder / name).mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        np.save(buf, s.matrix)
        atomic_write(folder / name / "confusion_matrix.npy", buf.getvalue())
        atomic_write(folder / name / "confusion_matrix.png", confusion_png(s.matrix, f"{run}: {name}", class_names))
    if as_json:
        print(json.dumps(report))
        return report
    print(f"{run} ({which} weights) on {', '.join(r.get('cache', r['target']) for r in rows)}:\n")
    print(table, end="")
    for r in rows:
        print(f"\n{r['target']}: aAcc {_pct(r['aAcc'])}, mAcc {_pct(r['mAcc'])}", end="")
        if r.get("squeezed"):
            print(f", {r['squeezed']} of {r['samples']} images squeezed to the cache's fixed size", end="")
    print()
    for r in rows:
        if "partial" in r:
            part = r["partial"]
            print(
                f"\n{r['cache']}: partial, {part['used']} complete samples scored, {part['pending']} pending",
                file=sys.stderr,
            )
    print(f"\nwritten: {folder / stem}.json, .md; {folder}/<target>/confusion_matrix.npy, .png", file=sys.stderr)
    return report


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.2f}"
