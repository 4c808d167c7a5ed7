"""The outputs of `diffseg ablate`: ablation.md (Markdown table), ablation.csv, ablation.png.

Rows in plan order (Table IV first). mIoU is shown in % in the Markdown table and the chart
(the paper's unit) and stored as fractions in the CSV (the project's JSON/CSV unit). A cell that
shares its training config with an earlier one repeats that cell's numbers and says so; a cell
the cache cannot express shows "n/a" and the reason.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from diffseg.core.stats import pct
from diffseg.stages.ablate.cells import Cell


def result_matrix(cells: list[Cell], targets: list[str], results: dict[str, dict]) -> np.ndarray:
    """[n_cells, n_targets] mIoU fractions (or their std over seeds); NaN where not applicable or missing."""
    out = np.full((len(cells), len(targets)), np.nan)
    for r, cell in enumerate(cells):
        found = results.get(cell.same_as or cell.name, {})
        for k, t in enumerate(targets):
            v = found.get(t)
            out[r, k] = np.nan if v is None else v
    return out


def row_mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size and np.isfinite(values).all() else math.nan


def describe(cell: Cell) -> str:
    if cell.not_applicable:
        return f"{cell.description}: not applicable, {cell.not_applicable}"
    if cell.same_as:
        return f"{cell.description} (same training config as {cell.same_as}: its result)"
    return cell.description


def _pct(v: float | None) -> str:
    return pct(v)


def _with_std(v: float, sd: float | None) -> str:
    return _pct(v) if sd is None or math.isnan(sd) else f"{_pct(v)} +- {_pct(sd)}"


def markdown(
    cells: list[Cell], targets: list[str], miou: np.ndarray, header: str, std: np.ndarray | None = None
) -> str:
    lines = [
        header.rstrip(),
        "",
        "| cell | description | paper GTAV->CS | " + " | ".join(targets) + " | mean |",
        "|---|---|---:|" + "---:|" * (len(targets) + 1),
    ]
    for r, (cell, row) in enumerate(zip(cells, miou)):
        ref = "" if cell.reference is None else f"{cell.reference:.2f}"
        sds = [None] * (len(targets) + 1) if std is None else [*std[r], None]
        values = " | ".join(_with_std(v, sd) for v, sd in zip([*row, row_mean(row)], sds))
        lines.append(f"| {cell.name} | {describe(cell)} | {ref} | {values} |")
    lines += [
        "",
        "mIoU in %, 19 classes. The paper column is Table IV of the paper (GTAV -> Cityscapes, "
        "SD 2.1, 40k iterations); the other columns are this run's targets."
        + (
            ""
            if std is None
            else " With several seeds: mean +- sample std over the seeds (the mean column: of the means)."
        ),
    ]
    return "\n".join(lines) + "\n"


def write_csv(
    path: Path, cells: list[Cell], targets: list[str], miou: np.ndarray, std: np.ndarray | None = None
) -> None:
    """One row per cell; with several seeds, `miou_std:<target>` columns (sample std over the seeds) follow."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        extra = [] if std is None else [f"miou_std:{t}" for t in targets]
        w.writerow(
            ["cell", "group", "description", "status", "paper_miou", *(f"miou:{t}" for t in targets), "miou:mean"]
            + extra
        )
        for r, (cell, row) in enumerate(zip(cells, miou)):
            status = "n/a" if cell.not_applicable else f"same_as:{cell.same_as}" if cell.same_as else "ran"
            ref = "" if cell.reference is None else f"{cell.reference / 100:.4f}"
            vals = ["" if math.isnan(v) else f"{v:.6f}" for v in [*row, row_mean(row)]]
            sds = [] if std is None else ["" if math.isnan(v) else f"{v:.6f}" for v in std[r]]
            w.writerow([cell.name, cell.group, describe(cell), status, ref, *vals, *sds])


def write_reports(
    out: Path,
    cells: list[Cell],
    targets: list[str],
    results: dict[str, dict[str, float | None]],
    header: str,
    spreads: dict[str, dict[str, float | None]] | None = None,
) -> np.ndarray:
    """Write ablation.md/.csv/.png under `out`; returns the [cells, targets] mIoU matrix. `spreads`:
    the std over seeds of each result (`ablate --seeds`)."""
    from diffseg.stages.viz import ablation_chart

    miou = result_matrix(cells, targets, results)
    std = None if spreads is None else result_matrix(cells, targets, spreads)
    (Path(out) / "ablation.md").write_text(markdown(cells, targets, miou, header, std))
    write_csv(Path(out) / "ablation.csv", cells, targets, miou, std)
    ablation_chart(
        Path(out) / "ablation.png",
        [c.name for c in cells],
        targets,
        100 * miou,
        reference={c.name: c.reference for c in cells if c.reference is not None},
        title="diffseg ablate: mIoU (%) per cell and target",
        split_after=sum(c.group == "table4" for c in cells),
    )
    return miou
