"""CI check of `diffseg demo --size small`: the report says what it should, numbers are finite.

- the trained `mini` model was used, and the same main run on random `tiny` features sits
  beside it (finite mIoU per target for both, and both cross-attention ratios);
- the Table IV cells (five) and the recipe cells were trained with at least 3 seeds and show
  mean +- std; every comparison says whether it is within noise, and the report states the rule;
- the pictures exist: the model's samples and reconstructions, predictions, heat maps.
"""

import json
import math
import sys
from pathlib import Path

RECIPE_CELLS = {"rcs-off", "photometric-off", "views-2"}


def finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def main(out: Path) -> None:
    report = out / "report.md"
    results = json.loads((out / "results.json").read_text())
    text = report.read_text() if report.is_file() else ""
    problems = []
    if "mIoU" not in text:
        problems.append(f"{report}: missing or without an mIoU table")
    if results.get("model") != "mini" or results.get("compare_model") != "tiny":
        problems.append(
            f"models: expected mini with tiny beside it, got {results.get('model')}, {results.get('compare_model')}"
        )
    for model in ("mini", "tiny"):
        miou = results.get("models", {}).get(model, {}).get("miou", {})
        ratio = results.get("xattn_ratio", {}).get(model, {})
        chance = results.get("xattn_chance", {}).get(model, {})
        for target in ("val", "val-night", "val-fog"):
            if not finite(miou.get(target)):
                problems.append(f"{model} main run, {target}: mIoU is {miou.get(target)}")
            if not finite(ratio.get(target)):
                problems.append(f"{model} xattn ratio, {target}: {ratio.get(target)}")
            if not finite(chance.get(target)):
                problems.append(f"{model} xattn chance level, {target}: {chance.get(target)}")
    if "`tiny`" not in text or "xattn in/out" not in text:
        problems.append(f"{report}: no tiny column or no cross-attention ratio")
    seeds = results.get("seeds", [])
    if len(seeds) < 3:
        problems.append(f"ablation: expected at least 3 seeds, got {seeds}")
    cells = results.get("cells", {})
    if len([c for c in cells.values() if c["group"] == "table4"]) != 5:
        problems.append("ablation: expected the five Table IV cells")
    if not set(cells) >= RECIPE_CELLS:
        problems.append(f"ablation: expected the recipe cells {sorted(RECIPE_CELLS)}, got {sorted(cells)}")
    for name, cell in cells.items():
        for target, s in cell["targets"].items():
            if len(s["seeds"]) != len(seeds) or not finite(s["mean"]) or not finite(s["std"]):
                problems.append(f"cell {name}, {target}: expected mean +- std over {len(seeds)} seeds, got {s}")
    if " +- " not in text:
        problems.append(f"{report}: no mean +- std")
    comparisons = results.get("comparisons", [])
    if not comparisons or any(
        not isinstance(c["within_noise"], bool) for p in comparisons for c in p["targets"].values()
    ):
        problems.append("comparisons: each must say whether it is within noise")
    if "within noise" not in text or results.get("noise_rule", "") not in text:
        problems.append(f"{report}: the within-noise marks or the rule are missing")
    wanted = ["pictures/samples.png", "pictures/reconstructions.png", "pictures/predictions.png"]
    for rel in wanted:
        if not (out / rel).is_file() or rel not in text:
            problems.append(f"{out / rel}: missing or not in the report")
    if not list(out.glob("pictures/*xattn*.png")):
        problems.append(f"{out}/pictures: no cross-attention heat map")
    pictures = sorted(out.glob("pictures/*.png"))
    if problems:
        sys.exit("demo check failed:\n  " + "\n  ".join(problems))
    print(
        f"demo check: report, {len(pictures)} pictures, models mini and tiny, {len(cells)} cells x {len(seeds)} seeds, "
        f"{len(comparisons)} comparisons: ok"
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
