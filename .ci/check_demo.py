"""CI check of `diffseg demo --size small`: the report and its pictures exist, numbers are finite."""

import json
import math
import sys
from pathlib import Path


def main(out: Path) -> None:
    report = out / "report.md"
    results = json.loads((out / "results.json").read_text())
    problems = []
    if not report.is_file() or "mIoU" not in report.read_text():
        problems.append(f"{report}: missing or without an mIoU table")
    for target in results["targets"]:
        if not math.isfinite(target["miou"]):
            problems.append(f"{target['dataset']}: mIoU is {target['miou']}")
    rows = results["ablation"]
    if len([r for r in rows if r.get("table_iv")]) != 5:
        problems.append("ablation: expected the five Table IV rows")
    for row in rows:
        if row.get("applicable", True) and not math.isfinite(row["mean"]):
            problems.append(f"ablation cell {row['cell']}: mean mIoU is {row['mean']}")
    pictures = sorted(out.glob("pictures/*.png"))
    if len(pictures) < 3:
        problems.append(f"{out}/pictures: expected prediction grids, heat maps and PCA views, found {len(pictures)}")
    if problems:
        sys.exit("demo check failed:\n  " + "\n  ".join(problems))
    print(
        f"demo check: report, {len(pictures)} pictures, {len(results['targets'])} targets, {len(rows)} ablation cells: ok"
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
