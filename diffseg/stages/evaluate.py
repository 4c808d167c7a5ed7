"""`diffseg eval --run RUN (--cache C [--cache C2 ...] | --dataset NAME --split S) [--json]`: score a run.

Cached: loads the run's recorded config and its final weights (else the newest checkpoint),
checks every cache against the run (same model fingerprint as the training cache, the
layers and saved steps the run uses), and scores the unconditional branch with the
trainer's own scoring (runs/record.py score_run_each, scoring.py). An evaluation cache holds every image at one
fixed size; each row says how many of its scored images that squeezed (aspect ratio changed by over 1 %).
A cache with samples still pending is refused unless --allow-partial; its row then records the samples scored.
Online (predict/evaluate.py): the frozen model runs on the dataset's images now, keeping their aspect
ratio, whole or in sliding windows, optionally with flip and several scales.

Both report mIoU, aAcc, mAcc, per-class IoU and accuracy; they print the per-class IoU table in Markdown
(or one JSON object with --json) and write both into <run>/eval/<targets>.{json,md}, and each target's
confusion matrix (int64, ground-truth rows) as <run>/eval/<target>/confusion_matrix.npy with a
row-normalised picture beside it (confusion_matrix.png).
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np

from diffseg.cache.fastread import keep_freed_memory
from diffseg.core.atomic import atomic_write
from diffseg.stages.device import resolve_device
from diffseg.stages.runs.files import write_json
from diffseg.stages.runs.record import is_synthia, read_run, score_run_each
from diffseg.stages.runs.scoring import Scored, summarize

SQUEEZE_TOLERANCE = 0.01  # relative change of the aspect ratio counted as a squeeze


def squeezed(orig_hw: list[tuple[int, int]], resolution_wh: tuple[int, int]) -> int:
    """How many of the original (h, w) sizes change aspect ratio by over SQUEEZE_TOLERANCE at `resolution_wh`."""
    target = resolution_wh[0] / resolution_wh[1]
    return sum(abs((w / h) / target - 1) > SQUEEZE_TOLERANCE for h, w in orig_hw)


def cache_squeezed(row: dict) -> int:
    """squeezed() over the samples a cached target's row scored (its "partial" usage or every complete one)."""
    from diffseg.cache import CacheReader
    from diffseg.cache.schema import ORIG_SIZES

    reader = CacheReader(row["cache"])
    if not reader.is_eval:
        return 0  # a training cache as target: crops at the resolution, scored at it
    indices = row["partial"]["indices"] if "partial" in row else reader.complete_indices()
    sizes = [tuple(int(v) for v in reader.source(ORIG_SIZES).read(i)) for i in indices]
    return squeezed(sizes, reader.record.resolution)  # type: ignore[arg-type]


def main(
    run: Path, caches: list[str] | list[Path], as_json: bool = False, device: str = "auto", allow_partial: bool = False
) -> dict:
    keep_freed_memory()  # cache/fastread.py: reused sample buffers instead of page faults on every read
    record = read_run(run)
    scored, which = score_run_each(record, caches, resolve_device(device), allow_partial)
    scored = [Scored(matrix=s.matrix, row={**s.row, "squeezed": cache_squeezed(s.row)}) for s in scored]
    return publish(run, scored, which, synthia=is_synthia(record), as_json=as_json)


def main_online(
    run: Path,
    *,
    dataset: str,
    split: str,
    root: Path | None = None,
    protocol=None,
    resolution: tuple[int, int] | None = None,
    limit: int | None = None,
    as_json: bool = False,
    device: str = "auto",
) -> dict:
    from diffseg.stages.predict.evaluate import score_online
    from diffseg.stages.predict.online import Protocol

    record = read_run(run)
    scored, which = score_online(
        record,
        dataset=dataset,
        split=split,
        root=root,
        protocol=protocol or Protocol(),
        resolution=resolution,
        limit=limit,
        device=device,
    )
    return publish(run, [scored], which, synthia=is_synthia(record), as_json=as_json)


def publish(run: Path, scored: list[Scored], which: str, *, synthia: bool, as_json: bool) -> dict:
    """Write the report, the table and the confusion matrices under <run>/eval; print the report."""
    from diffseg.stages.viz import confusion_png

    report, table = summarize(scored, synthia=synthia)
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
        atomic_write(folder / name / "confusion_matrix.png", confusion_png(s.matrix, f"{run}: {name}"))
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
