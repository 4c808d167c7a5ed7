"""Several seeds of one training config: one normal run directory per seed, and a summary.

    <dir>/seed-<k>/     a normal run (eval, predict and --resume take it like any other)
    <dir>/seeds.json    {"seeds", "runs", "targets": {name: {"cache", "miou": {seed: v}, "mean", "std"}},
                         "mean_miou": {...} with several targets}
    <dir>/seeds.md      the same as a table: one row per target, one column per seed, mean +- std

std is the sample standard deviation over seeds (n - 1 in the denominator; 0 for one seed).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from diffseg.core.errors import DiffsegError
from diffseg.core.stats import pct
from diffseg.stages.runs.files import read_json, write_json
from diffseg.stages.runs.record import per_target_miou
from diffseg.stages.runs.scoring import target_names

SUMMARY_JSON, SUMMARY_MD = "seeds.json", "seeds.md"


def seed_dir(parent: Path, seed: int) -> Path:
    return Path(parent) / f"seed-{seed}"


def parse_seeds(text: str) -> tuple[int, ...]:
    """ "0,1,2" -> (0, 1, 2); refuses repeats, negatives and non-integers with one line."""
    try:
        seeds = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError as err:
        raise DiffsegError(f"--seeds takes comma-separated integers, got {text!r}") from err
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise DiffsegError(f"--seeds takes distinct non-negative integers, got {text!r}")
    return seeds


def mean_std(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    """(mean, sample std) of the values; (None, None) when one is missing (a target without labels)."""
    if not values or any(v is None for v in values):
        return None, None
    xs = [float(v) for v in values if v is not None]
    mean = sum(xs) / len(xs)
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0
    return mean, std


def summarize(parent: Path, seeds: Sequence[int]) -> dict:
    """The summary of the finished seed runs under `parent` (each with its eval.json)."""
    summary: dict = {"seeds": list(seeds), "runs": {str(s): seed_dir(parent, s).name for s in seeds}, "targets": {}}
    if not (seed_dir(parent, seeds[0]) / "eval.json").is_file():
        return summary  # trained without --eval-cache: nothing scored
    reports = {s: read_json(seed_dir(parent, s) / "eval.json") for s in seeds}
    first = per_target_miou(reports[seeds[0]])
    paths = list(first)
    names = target_names(paths)
    for name, path in zip(names, paths):
        values = {str(s): per_target_miou(reports[s]).get(path) for s in seeds}
        mean, std = mean_std(list(values.values()))
        summary["targets"][name] = {"cache": path, "miou": values, "mean": mean, "std": std}
    if len(paths) > 1:
        values = {str(s): reports[s].get("mean_miou") for s in seeds}
        mean, std = mean_std(list(values.values()))
        summary["mean_miou"] = {"miou": values, "mean": mean, "std": std}
    return summary


def _pct(v: float | None) -> str:
    return pct(v)


def markdown(summary: dict) -> str:
    seeds = summary["seeds"]
    if not summary["targets"]:
        return f"Seeds {', '.join(map(str, seeds))}: trained without --eval-cache, nothing scored.\n"
    rows = dict(summary["targets"])
    if "mean_miou" in summary:
        rows["mean over targets"] = summary["mean_miou"]
    lines = [
        "| target | " + " | ".join(f"seed {s}" for s in seeds) + " | mean +- std |",
        "|---|" + "---:|" * (len(seeds) + 1),
    ]
    for name, row in rows.items():
        spread = "n/a" if row["mean"] is None else f"{_pct(row['mean'])} +- {_pct(row['std'])}"
        lines.append(f"| {name} | " + " | ".join(_pct(row["miou"][str(s)]) for s in seeds) + f" | {spread} |")
    return "mIoU in %, one run per seed; std over seeds (n - 1).\n\n" + "\n".join(lines) + "\n"


def write_summary(parent: Path, seeds: Sequence[int]) -> dict:
    summary = summarize(parent, seeds)
    write_json(Path(parent) / SUMMARY_JSON, summary)
    (Path(parent) / SUMMARY_MD).write_text(markdown(summary))
    return summary
