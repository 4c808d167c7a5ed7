"""`diffseg eval --run RUN (--cache C [--cache C2 ...] | --dataset NAME --split S) [--json]`: score a run.

Cached: loads the run's recorded config and its final weights (else the newest checkpoint),
checks every cache against the run (same model fingerprint as the training cache, the
layers and saved steps the run uses), and scores the unconditional branch with the
trainer's own scoring (runs/record.py score_run_each, scoring.py). An evaluation cache holds every image at one
fixed size; each row says how many of its scored images that squeezed (aspect ratio changed by over 1 %).
A cache with samples still pending is refused unless --allow-partial; its row then records the samples scored.
`eval --dataset` (online, predict/evaluate.py) runs the frozen model on the dataset's images instead.
Both write and print their report with runs/reports.py publish.
"""

from __future__ import annotations

from pathlib import Path

from diffseg.cache.fastread import keep_freed_memory
from diffseg.stages.device import resolve_device
from diffseg.stages.runs.record import is_synthia, read_run, score_run_each
from diffseg.stages.runs.reports import publish
from diffseg.stages.runs.scoring import Scored

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
    names = record.class_table.names
    return publish(run, scored, which, synthia=is_synthia(record), as_json=as_json, class_names=names)
