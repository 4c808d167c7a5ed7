"""`diffseg eval --run RUN --cache C [--cache C2 ...] [--json]`: score a run on evaluation caches.

Loads the run's recorded config and its final weights (else the newest checkpoint),
checks every cache against the run (same model fingerprint as the training cache, the
layers and saved steps the run uses), and scores the unconditional branch with the
trainer's own scoring (runs/record.py score_run, scoring.py). Prints the per-class IoU table in Markdown (or one
JSON object with --json) and writes both into <run>/eval/<targets>.{json,md}. A cache with
samples still pending is refused unless --allow-partial; its row then records the samples scored.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from diffseg.cache.fastread import keep_freed_memory
from diffseg.stages.device import resolve_device
from diffseg.stages.runs.files import write_json
from diffseg.stages.runs.record import read_run, score_run


def main(
    run: Path, caches: list[str] | list[Path], as_json: bool = False, device: str = "auto", allow_partial: bool = False
) -> dict:
    keep_freed_memory()  # cache/fastread.py: reused sample buffers instead of page faults on every read
    report, table, which = score_run(read_run(run), caches, resolve_device(device), allow_partial)
    report = {**report, "run": str(run), "weights": which}
    rows = report.get("targets", [report])
    folder = Path(run) / "eval"
    folder.mkdir(exist_ok=True)
    stem = "+".join(r["target"] for r in rows)
    write_json(folder / f"{stem}.json", report)
    (folder / f"{stem}.md").write_text(table)
    if as_json:
        print(json.dumps(report))
    else:
        print(f"{run} ({which} weights) on {', '.join(r['cache'] for r in rows)}:\n")
        print(table, end="")
        for r in rows:
            if "partial" in r:
                part = r["partial"]
                print(
                    f"\n{r['cache']}: partial, {part['used']} complete samples scored, {part['pending']} pending",
                    file=sys.stderr,
                )
        print(f"\nwritten: {folder / stem}.json, .md", file=sys.stderr)
    return report
